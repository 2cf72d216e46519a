"""Lineage: each version records the workflow (and its version) that made it, and a batch.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("workflow", sa.String(100), nullable=True))
        batch.add_column(sa.Column("workflow_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("batch_id", sa.String(100), nullable=True))
    op.create_index("ix_dataset_versions_source_sha", "dataset_versions", ["source_sha"])
    op.create_index("ix_dataset_versions_batch_id", "dataset_versions", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_dataset_versions_batch_id", "dataset_versions")
    op.drop_index("ix_dataset_versions_source_sha", "dataset_versions")
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("batch_id")
        batch.drop_column("workflow_version")
        batch.drop_column("workflow")
