"""Tables of the trust boundary (SQLAlchemy Core), migrated with the job store."""

from __future__ import annotations

import sqlalchemy as sa

from geoetl.engine.schema import Time, metadata

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    # SHA-256 of the secret: the secret itself is shown once and never stored.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("clearance", sa.String(20), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=True),
    sa.Column("last_used_at", Time, nullable=True),
)

upload_owners = sa.Table(
    "upload_owners",
    metadata,
    # A bronze key and a principal who uploaded it: only they (and admins) may publish it.
    sa.Column("source", sa.String(1000), primary_key=True),
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("created_at", Time, nullable=False),
)
