"""Engine at scale: per-stage task counters, partial claim indexes, event retention.

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _where(status: str) -> dict[str, Any]:
    clause = sa.text(f"status = '{status}'")
    return {"sqlite_where": clause, "postgresql_where": clause}


def upgrade() -> None:
    op.create_table(
        "job_stages",
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.job_id"), primary_key=True),
        sa.Column("stage_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("queue", sa.String(50), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("queued", sa.Integer, nullable=False),
        sa.Column("running", sa.Integer, nullable=False, server_default="0"),
        sa.Column("succeeded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancelled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    # Counters of the stages that exist, from their tasks (the last full count).
    op.execute(
        """
        INSERT INTO job_stages (job_id, stage_index, stage, queue, total, queued, running,
                                succeeded, failed, cancelled, attempts)
        SELECT job_id, stage_index, MIN(stage), MIN(queue), COUNT(*),
               SUM(CASE WHEN status IN ('queued', 'pending') THEN 1 ELSE 0 END),
               SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END),
               SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END),
               SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
               SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END),
               SUM(attempt)
        FROM tasks GROUP BY job_id, stage_index
        """
    )
    op.drop_index("ix_tasks_claim", "tasks")
    op.drop_index("ix_tasks_job_id", "tasks")  # ix_tasks_job_stage starts with job_id
    op.create_index("ix_tasks_queued", "tasks", ["available_at"], **_where("queued"))
    op.create_index("ix_tasks_job_queued", "tasks", ["job_id", "available_at"], **_where("queued"))
    op.create_index("ix_tasks_running", "tasks", ["job_id"], **_where("running"))
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", "jobs")
    op.drop_index("ix_tasks_running", "tasks")
    op.drop_index("ix_tasks_job_queued", "tasks")
    op.drop_index("ix_tasks_queued", "tasks")
    op.create_index("ix_tasks_job_id", "tasks", ["job_id"])
    op.create_index("ix_tasks_claim", "tasks", ["status", "available_at"])
    op.drop_table("job_stages")
