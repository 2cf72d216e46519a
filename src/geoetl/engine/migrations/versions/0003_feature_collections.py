"""Feature collections: which published table answers which OGC API collection.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "feature_collections",
        sa.Column("collection_id", sa.String(200), primary_key=True),
        sa.Column("dataset_id", sa.String(200), nullable=False, index=True),
        sa.Column("table_name", sa.String(200), nullable=False),
        sa.Column("family", sa.String(20), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("feature_count", sa.Integer, nullable=False),
        sa.Column("bbox", Json, nullable=True),
        sa.Column("fields", Json, nullable=False),
        sa.Column("column_map", Json, nullable=False),
        sa.Column("access_level", sa.String(20), nullable=False),
        sa.Column("stac_collection", sa.String(200), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feature_collections")
