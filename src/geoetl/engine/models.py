"""What the job store hands out: job, task and event views, claims and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    """States of a job."""

    queued = "queued"
    running = "running"
    awaiting_approval = "awaiting_approval"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class TaskStatus(StrEnum):
    """States of a task."""

    pending = "pending"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_JOB = (JobStatus.queued, JobStatus.running, JobStatus.awaiting_approval)
OPEN_TASK = (TaskStatus.pending, TaskStatus.queued, TaskStatus.running)


def iso(ts: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


class Progress(BaseModel):
    """Work reported by running tasks."""

    done: float = 0
    total: float | None = None
    message: str | None = None


class StageProgress(BaseModel):
    """Task counts of one stage, and the progress its running tasks report."""

    name: str
    index: int
    status: str = Field(
        description="pending, running, succeeded, failed, cancelled or skipped (empty fan-out)"
    )
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    attempts: int = 0
    progress: Progress | None = None


class JobError(BaseModel):
    """Why a job failed: the failing stage and task, and a readable message."""

    message: str
    kind: str
    stage: str | None = None
    task_id: str | None = None
    attempt: int | None = None


class JobView(BaseModel):
    """A job as the API and CLI show it."""

    job_id: str
    workflow: str
    version: int
    run: int
    base_id: str
    status: JobStatus
    stage: str | None
    stages: list[StageProgress]
    progress: Progress
    attempts: int = Field(description="Task attempts made so far, over all stages.")
    params: dict[str, Any]
    result: Any | None = None
    error: JobError | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    duration_seconds: float | None
    submitted_by: str | None = Field(default=None, description="Who submitted the job.")
    access_level: str = Field(
        default="public", description="Access level of what the job publishes."
    )
    idempotent: bool | None = Field(
        default=None, description="On submit: true when an identical job already existed."
    )
    links: list[dict[str, str]] = Field(default_factory=list)


class TaskView(BaseModel):
    """One task of a job."""

    task_id: str
    job_id: str
    stage: str
    stage_index: int
    index: int
    status: TaskStatus
    queue: str
    attempt: int
    max_attempts: int
    worker_id: str | None
    lease_until: datetime | None
    item: Any | None
    result: Any | None
    error: Any | None
    progress: Progress | None
    checkpoints: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EventView(BaseModel):
    """One entry of a job's append-only event log."""

    id: int
    job_id: str
    task_id: str | None
    at: datetime
    kind: str
    message: str
    data: Any | None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a listing."""

    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass
class ClaimedTask:
    """A task this worker now holds, for exactly one attempt."""

    task_id: str
    job_id: str
    stage_index: int
    stage: str
    index: int
    attempt: int
    lease_seconds: float
    item: Any
    checkpoints: dict[str, Any] = field(default_factory=dict)


@dataclass
class Completion:
    """A finished attempt's result, to be recorded.

    ``stage``: the job id and stage index of the task, when the caller knows them (a
    runner does, from the claim); a batch of one stage then fans in with the statement
    that records it (PostgreSQL).
    """

    task_id: str
    attempt: int
    result: Any
    stage: tuple[str, int] | None = None


class JanitorReport(BaseModel):
    """What one janitor pass did."""

    requeued: list[str] = Field(default_factory=list, description="Expired leases re-queued.")
    failed: list[str] = Field(default_factory=list, description="Expired leases out of attempts.")
    redispatched: list[str] = Field(
        default_factory=list, description="Queued tasks nobody picked up, dispatched again."
    )
    events_pruned: int = Field(
        default=0, description="Events deleted from the logs of jobs past the retention period."
    )
    at: datetime | None = None

    @property
    def touched(self) -> int:
        """How many tasks the pass acted on."""
        return len(self.requeued) + len(self.failed) + len(self.redispatched)
