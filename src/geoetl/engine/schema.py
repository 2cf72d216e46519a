"""The job store's tables (SQLAlchemy Core), identical on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

Json = sa.JSON().with_variant(JSONB(), "postgresql")
JsonOrNull = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.Float  # seconds since the epoch, UTC: cheap to compare, same on both backends


def _where(status: str) -> dict[str, Any]:
    """Keyword arguments making an index partial: only tasks with ``status``."""
    clause = sa.text(f"status = '{status}'")
    return {"sqlite_where": clause, "postgresql_where": clause}


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    # The job's number, what its tasks and events refer to: 8 bytes instead of the
    # 64-character id in every task row, event row and their index entries (PostgreSQL:
    # an identity column; SQLite: the store assigns the next number under its write lock).
    sa.Column("job_key", BigId, sa.Identity(), nullable=False, unique=True),
    sa.Column("base_id", sa.String(64), nullable=False, index=True),
    sa.Column("run", sa.Integer, nullable=False, default=1),
    sa.Column("workflow", sa.String(100), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("params", Json, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("stage_index", sa.Integer, nullable=False, default=0),
    sa.Column("stage", sa.String(100), nullable=True),
    # Tasks of the current stage, set when it starts (progress is counted in job_stages,
    # whose row also decides when the stage ends).
    sa.Column("remaining", sa.Integer, nullable=False, default=0),
    sa.Column("result", Json, nullable=True),
    sa.Column("error", Json, nullable=True),
    sa.Column("created_at", Time, nullable=False, index=True),
    sa.Column("started_at", Time, nullable=True),
    sa.Column("finished_at", Time, nullable=True, index=True),  # the janitor's event retention
    sa.Column("updated_at", Time, nullable=False),
    # Who submitted the job and the access level of what it publishes: readers see a job
    # only when they may see that level (the engine stores both and filters on request).
    sa.Column("submitted_by", sa.String(200), nullable=True, index=True),
    sa.Column("access_level", sa.String(20), nullable=False, server_default="public"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_id", sa.String(200), primary_key=True),
    # The job's key (jobs.job_key), indexed as the prefix of ix_tasks_job_stage: every
    # version of a task row carries it, and so does every entry of the job indexes.
    sa.Column("job_key", BigId, sa.ForeignKey("jobs.job_key"), nullable=False),
    sa.Column("stage_index", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(100), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("queue", sa.String(50), nullable=False, default="default"),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=3),
    sa.Column("lease_seconds", sa.Float, nullable=False),
    sa.Column("lease_until", Time, nullable=True),
    sa.Column("available_at", Time, nullable=False),
    sa.Column("worker_id", sa.String(200), nullable=True),
    sa.Column("item", Json, nullable=True),
    sa.Column("result", Json, nullable=True),
    sa.Column("error", Json, nullable=True),
    sa.Column("checkpoints", Json, nullable=True),
    sa.Column("progress", Json, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("started_at", Time, nullable=True),
    sa.Column("finished_at", Time, nullable=True),
    sa.Index("ix_tasks_job_stage", "job_key", "stage_index", "idx"),
    # Partial indexes hold only the open tasks, so a claim, a lease check or a progress
    # read costs the same whatever the number of finished tasks. Their keys repeat within
    # a stage (one available_at for all its tasks), which PostgreSQL's B-tree
    # deduplication stores in a few bytes per task. Queries must name the status as a
    # literal (see store.QUEUED): SQLite uses a partial index only when the WHERE clause
    # visibly implies its predicate.
    sa.Index("ix_tasks_queued", "available_at", **_where("queued")),
    sa.Index("ix_tasks_job_queued", "job_key", "available_at", **_where("queued")),
    sa.Index("ix_tasks_running", "job_key", **_where("running")),
)

job_stages = sa.Table(
    "job_stages",
    metadata,
    # Task counts per stage, changed in the same transactions that change task states:
    # a job's progress is read from here, never counted from the tasks table.
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

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_key", BigId, nullable=False),  # jobs.job_key
    sa.Column("task_id", sa.String(200), nullable=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    # None is stored as SQL NULL, not JSON null: most events carry no data.
    sa.Column("data", JsonOrNull, nullable=True),
    sa.Index("ix_job_events_job", "job_key", "id"),
)

meta = sa.Table(
    "engine_meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", Json, nullable=True),
    sa.Column("updated_at", Time, nullable=False),
)
