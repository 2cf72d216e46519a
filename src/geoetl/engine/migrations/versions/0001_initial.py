"""Job store: jobs, tasks, job events, engine metadata.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("base_id", sa.String(64), nullable=False, index=True),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("workflow", sa.String(100), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("stage_index", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(100), nullable=True),
        sa.Column("remaining", sa.Integer, nullable=False),
        sa.Column("result", Json, nullable=True),
        sa.Column("error", Json, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column(
            "job_id", sa.String(64), sa.ForeignKey("jobs.job_id"), nullable=False, index=True
        ),
        sa.Column("stage_index", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("queue", sa.String(50), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("lease_seconds", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("available_at", sa.Float, nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("item", Json, nullable=True),
        sa.Column("result", Json, nullable=True),
        sa.Column("error", Json, nullable=True),
        sa.Column("checkpoints", Json, nullable=True),
        sa.Column("progress", Json, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_index("ix_tasks_claim", "tasks", ["status", "available_at"])
    op.create_index("ix_tasks_job_stage", "tasks", ["job_id", "stage_index", "idx"])
    op.create_table(
        "job_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", Json, nullable=True),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])
    op.create_table(
        "engine_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", Json, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_meta")
    op.drop_table("job_events")
    op.drop_table("tasks")
    op.drop_table("jobs")
