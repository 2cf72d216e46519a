"""Catalog tables (SQLAlchemy Core), migrated with the job store by Alembic."""

from __future__ import annotations

import sqlalchemy as sa

from geoetl.engine.schema import Json, Time, metadata

stac_collections = sa.Table(
    "stac_collections",
    metadata,
    sa.Column("collection_id", sa.String(200), primary_key=True),
    sa.Column("data", Json, nullable=False),
    sa.Column("access_level", sa.String(20), nullable=False),
    sa.Column("system", sa.Boolean, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

stac_items = sa.Table(
    "stac_items",
    metadata,
    sa.Column("rid", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "collection_id",
        sa.String(200),
        sa.ForeignKey("stac_collections.collection_id"),
        nullable=False,
    ),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("datetime", Time, nullable=True),
    sa.Column("end_datetime", Time, nullable=True),
    sa.Column("minx", sa.Float, nullable=False),
    sa.Column("miny", sa.Float, nullable=False),
    sa.Column("maxx", sa.Float, nullable=False),
    sa.Column("maxy", sa.Float, nullable=False),
    sa.Column("access_level", sa.String(20), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("collection_id", "item_id", name="uq_stac_items_collection_item"),
)

# The schema PostGIS is installed in (its functions are called qualified by it).
POSTGIS_SCHEMA = sa.text(
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
    "ON n.oid = e.extnamespace WHERE e.extname = 'postgis'"
)
