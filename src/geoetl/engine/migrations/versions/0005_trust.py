"""Trust boundary: job labels (submitter, access level), API tokens, upload owners.

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("submitted_by", sa.String(200), nullable=True))
        batch.add_column(
            sa.Column("access_level", sa.String(20), nullable=False, server_default="public")
        )
    op.create_index("ix_jobs_submitted_by", "jobs", ["submitted_by"])
    # Jobs published before labels existed carry their level in their params.
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT job_id, params FROM jobs")).fetchall()
    for job_id, params in rows:
        doc = json.loads(params) if isinstance(params, str) else params
        level = doc.get("access_level") if isinstance(doc, dict) else None
        if level in ("public", "ouo", "restricted") and level != "public":
            bind.execute(
                sa.text("UPDATE jobs SET access_level = :level WHERE job_id = :job_id"),
                {"level": level, "job_id": job_id},
            )
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("clearance", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
    )
    op.create_table(
        "upload_owners",
        sa.Column("source", sa.String(1000), primary_key=True),
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("upload_owners")
    op.drop_table("api_tokens")
    op.drop_index("ix_jobs_submitted_by", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("access_level")
        batch.drop_column("submitted_by")
