"""Landing-zone batches: each manifest picked up once, with its files and their jobs.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JsonOrNull = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(100), primary_key=True),
        sa.Column("manifest_key", sa.String(1000), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("uploader", sa.String(200), nullable=True),
        sa.Column("access_level", sa.String(20), nullable=True),
        sa.Column("intent", sa.String(100), nullable=True),
        sa.Column("manifest", JsonOrNull, nullable=True),
        sa.Column("errors", JsonOrNull, nullable=True),
        sa.Column("picked_by", sa.String(200), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_files",
        sa.Column("batch_id", sa.String(100), primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=True),
        sa.Column("source_key", sa.String(1000), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_batch_files_job_id", "batch_files", ["job_id"])


def downgrade() -> None:
    op.drop_table("batch_files")
    op.drop_table("batches")
