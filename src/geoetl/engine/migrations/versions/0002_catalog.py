"""STAC catalog: collections and items, with an R-tree on item bboxes (SQLite).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "stac_collections",
        sa.Column("collection_id", sa.String(200), primary_key=True),
        sa.Column("data", Json, nullable=False),
        sa.Column("access_level", sa.String(20), nullable=False),
        sa.Column("system", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "stac_items",
        sa.Column("rid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            sa.String(200),
            sa.ForeignKey("stac_collections.collection_id"),
            nullable=False,
        ),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("datetime", sa.Float, nullable=True),
        sa.Column("minx", sa.Float, nullable=False),
        sa.Column("miny", sa.Float, nullable=False),
        sa.Column("maxx", sa.Float, nullable=False),
        sa.Column("maxy", sa.Float, nullable=False),
        sa.Column("access_level", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("collection_id", "item_id", name="uq_stac_items_collection_item"),
    )
    op.create_index("ix_stac_items_datetime", "stac_items", ["datetime"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE stac_items_rtree USING rtree(rid, minx, maxx, miny, maxy)")
        op.execute(
            "CREATE TRIGGER stac_items_ai AFTER INSERT ON stac_items BEGIN "
            "INSERT INTO stac_items_rtree VALUES (new.rid, new.minx, new.maxx, new.miny, new.maxy);"
            " END"
        )
        op.execute(
            "CREATE TRIGGER stac_items_au AFTER UPDATE ON stac_items BEGIN "
            "UPDATE stac_items_rtree SET minx=new.minx, maxx=new.maxx, miny=new.miny, "
            "maxy=new.maxy WHERE rid=new.rid; END"
        )
        op.execute(
            "CREATE TRIGGER stac_items_ad AFTER DELETE ON stac_items BEGIN "
            "DELETE FROM stac_items_rtree WHERE rid=old.rid; END"
        )
    else:
        op.create_index("ix_stac_items_bbox", "stac_items", ["minx", "miny", "maxx", "maxy"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS stac_items_rtree")
    op.drop_table("stac_items")
    op.drop_table("stac_collections")
