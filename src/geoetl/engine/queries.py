"""Read side of the job store: job, task and event views for the API and CLI."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoetl.engine.models import (
    EventView,
    JobError,
    JobStatus,
    JobView,
    Page,
    Progress,
    StageProgress,
    TaskStatus,
    TaskView,
    iso,
)
from geoetl.engine.schema import job_events, job_stages, jobs, tasks
from geoetl.engine.store import RUNNING, JobStore, key_of
from geoetl.errors import NotFound

MAX_PAGE = 1000


class JobQueries:
    """Views over a :class:`JobStore`'s tables."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def job(self, job_id: str, access_levels: Sequence[str] | None = None) -> JobView:
        """One job with per-stage progress; NotFound if there is none.

        ``access_levels`` (None: all) are the levels the reader may see; a job labelled
        with any other level is NotFound too, so its existence does not leak.
        """
        with self.store.read() as conn:
            query = sa.select(jobs).where(jobs.c.job_id == job_id)
            if access_levels is not None:
                query = query.where(jobs.c.access_level.in_(list(access_levels)))
            row = conn.execute(query).first()
            if row is None:
                raise NotFound(f"no job {job_id!r}")
            return self._views(conn, [row])[0]

    def jobs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        submitted_by: str | None = None,
        access_levels: Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[JobView]:
        """Jobs, newest first, filtered by status, workflow, submitter and visible levels."""
        limit = max(1, min(limit, MAX_PAGE))
        where = []
        if status:
            where.append(jobs.c.status == status)
        if workflow:
            where.append(jobs.c.workflow == workflow)
        if submitted_by:
            where.append(jobs.c.submitted_by == submitted_by)
        if access_levels is not None:
            where.append(jobs.c.access_level.in_(list(access_levels)))
        with self.store.read() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(*where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(jobs)
                .where(*where)
                .order_by(jobs.c.created_at.desc(), jobs.c.job_id)
                .limit(limit)
                .offset(offset)
            ).all()
            items = self._views(conn, rows)
        return Page[JobView](items=items, total=total, limit=limit, offset=offset)

    def tasks(
        self,
        job_id: str,
        *,
        stage: str | None = None,
        status: str | None = None,
        access_levels: Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[TaskView]:
        """A job's tasks in stage and index order."""
        limit = max(1, min(limit, MAX_PAGE))
        where = [tasks.c.job_key == key_of(job_id)]
        if stage:
            where.append(tasks.c.stage == stage)
        if status:
            where.append(tasks.c.status == status)
        with self.store.read() as conn:
            self._require(conn, job_id, access_levels)
            total = conn.execute(
                sa.select(sa.func.count()).select_from(tasks).where(*where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(tasks)
                .where(*where)
                .order_by(tasks.c.stage_index, tasks.c.idx)
                .limit(limit)
                .offset(offset)
            ).all()
        return Page[TaskView](
            items=[_task_view(job_id, r) for r in rows], total=total, limit=limit, offset=offset
        )

    def events(
        self,
        job_id: str,
        *,
        after: int = 0,
        limit: int = 500,
        access_levels: Sequence[str] | None = None,
    ) -> list[EventView]:
        """A job's events in order, after event id ``after``."""
        limit = max(1, min(limit, MAX_PAGE * 10))
        with self.store.read() as conn:
            self._require(conn, job_id, access_levels)
            rows = conn.execute(
                sa.select(job_events)
                .where(job_events.c.job_key == key_of(job_id), job_events.c.id > after)
                .order_by(job_events.c.id)
                .limit(limit)
            ).all()
        return [
            EventView(
                id=r.id,
                job_id=job_id,
                task_id=r.task_id,
                at=iso(r.at),
                kind=r.kind,
                message=r.message,
                data=r.data,
            )
            for r in rows
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Jobs by status and open tasks by queue: the queue depths ``/health`` shows."""
        s = job_stages.c
        with self.store.read() as conn:
            job_counts = {
                r.status: r.n
                for r in conn.execute(
                    sa.select(jobs.c.status, sa.func.count().label("n")).group_by(jobs.c.status)
                )
            }
            # From the stage counters: a million queued tasks are one row here.
            open_stages = conn.execute(
                sa.select(s.queue, s.queued, s.running).where((s.queued > 0) | (s.running > 0))
            ).all()
        queued: dict[str, int] = defaultdict(int)
        for r in open_stages:
            if r.queued:
                queued[r.queue] += r.queued
        running = sum(r.running for r in open_stages)
        return {
            "jobs": job_counts,
            "queued_tasks": dict(queued),
            "running_tasks": {"all": running},
        }

    def param_values(self, name: str) -> set[str]:
        """Every distinct text value jobs hold in param ``name`` (the janitor's sources).

        One scan of ``jobs`` that the database de-duplicates (``params->>name`` on
        PostgreSQL, ``json_extract`` on SQLite): a thousand jobs of one file are one row.
        """
        value = jobs.c.params[name].as_string()
        with self.store.read() as conn:
            found = conn.execute(sa.select(value).where(value.is_not(None)).distinct()).scalars()
            return {str(v) for v in found}

    # -- internals ------------------------------------------------------------------------

    def active_jobs(self, submitted_by: str) -> int:
        """How many queued or running jobs ``submitted_by`` has."""
        with self.store.read() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(jobs)
                    .where(
                        jobs.c.submitted_by == submitted_by,
                        jobs.c.status.in_([JobStatus.queued, JobStatus.running]),
                    )
                ).scalar_one()
            )

    def _require(
        self, conn: Connection, job_id: str, access_levels: Sequence[str] | None = None
    ) -> None:
        query = sa.select(jobs.c.job_id).where(jobs.c.job_id == job_id)
        if access_levels is not None:
            query = query.where(jobs.c.access_level.in_(list(access_levels)))
        found = conn.execute(query).first()
        if found is None:
            raise NotFound(f"no job {job_id!r}")

    def _views(self, conn: Connection, rows: Sequence[sa.Row[Any]]) -> list[JobView]:
        if not rows:
            return []
        ids = [r.job_id for r in rows]
        counts: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
        attempts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        busy: list[int] = []
        job_ids = {r.job_key: r.job_id for r in rows}
        job_keys = {r.job_id: r.job_key for r in rows}
        # The stage counters the store keeps in step with task states: no task is counted.
        for r in conn.execute(sa.select(job_stages).where(job_stages.c.job_id.in_(ids))):
            counts[r.job_id][r.stage_index] = {
                status: getattr(r, status)
                for status in ("queued", "running", "succeeded", "failed", "cancelled")
            }
            attempts[r.job_id][r.stage_index] = r.attempts
            if r.running:
                busy.append(job_keys[r.job_id])
        running: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        if busy:
            # Through the partial index of running tasks: as many rows as tasks running.
            for r in conn.execute(
                sa.select(tasks.c.job_key, tasks.c.stage_index, tasks.c.progress).where(
                    tasks.c.job_key.in_(busy), RUNNING, tasks.c.progress.is_not(None)
                )
            ):
                running[job_ids[r.job_key]][r.stage_index].append(r.progress)
        return [
            self._view(row, counts[row.job_id], attempts[row.job_id], running[row.job_id])
            for row in rows
        ]

    def _view(
        self,
        row: sa.Row[Any],
        counts: dict[int, dict[str, int]],
        attempts: dict[int, int],
        running: dict[int, list[dict[str, Any]]],
    ) -> JobView:
        try:
            names = self.store.workflows.get(row.workflow).stage_names()
        except NotFound:
            names = []
        for index in counts:
            while len(names) <= index:
                names.append(f"stage-{len(names)}")
        stages = [
            _stage_progress(i, name, counts.get(i, {}), attempts.get(i, 0), running.get(i, []))
            for i, name in enumerate(names)
        ]
        for s in stages:
            # A fan-out whose plan returned nothing: the job went past it with no tasks.
            if s.total == 0 and s.index < row.stage_index:
                s.status = "skipped"
        finished = sum(1 for s in stages if s.status in ("succeeded", "skipped"))
        current = next((s for s in stages if s.status == "running"), None)
        fraction = (current.succeeded / current.total) if current and current.total else 0.0
        message = f"{current.name}: {current.succeeded}/{current.total} tasks" if current else None
        status = JobStatus(row.status)
        if status == JobStatus.succeeded:
            finished, fraction, message = len(stages), 0.0, "done"
        duration = None
        if row.started_at is not None:
            # A job still going has been running until now (updated_at moves only when a
            # stage ends, so it says nothing about a long task that is still running).
            end = row.finished_at if row.finished_at is not None else time.time()
            duration = max(0.0, end - row.started_at)
        return JobView(
            job_id=row.job_id,
            workflow=row.workflow,
            version=row.version,
            run=row.run,
            base_id=row.base_id,
            status=status,
            stage=row.stage,
            stages=stages,
            progress=Progress(done=finished + fraction, total=len(stages), message=message),
            attempts=sum(attempts.values()),
            params=row.params,
            result=row.result,
            error=JobError.model_validate(row.error) if row.error else None,
            created_at=iso(row.created_at),
            started_at=iso(row.started_at),
            finished_at=iso(row.finished_at),
            updated_at=iso(row.updated_at),
            duration_seconds=duration,
            submitted_by=row.submitted_by,
            access_level=row.access_level,
        )


def _stage_progress(
    index: int,
    name: str,
    counts: dict[str, int],
    attempts: int,
    running: list[dict[str, Any]],
) -> StageProgress:
    total = sum(counts.values())
    view = StageProgress(
        name=name,
        index=index,
        status="pending",
        total=total,
        queued=counts.get(TaskStatus.queued, 0) + counts.get(TaskStatus.pending, 0),
        running=counts.get(TaskStatus.running, 0),
        succeeded=counts.get(TaskStatus.succeeded, 0),
        failed=counts.get(TaskStatus.failed, 0),
        cancelled=counts.get(TaskStatus.cancelled, 0),
        attempts=attempts,
    )
    if total == 0:
        view.status = "pending"
    elif view.failed:
        view.status = "failed"
    elif view.succeeded == total:
        view.status = "succeeded"
    elif view.queued or view.running:
        view.status = "running"
    else:
        view.status = "cancelled"
    if running:
        reports = [Progress.model_validate(p) for p in running]
        totals = [p.total for p in reports if p.total is not None]
        view.progress = Progress(
            done=sum(p.done for p in reports),
            total=sum(totals) if totals else None,
            message=reports[0].message if len(reports) == 1 else None,
        )
    return view


def _task_view(job_id: str, r: sa.Row[Any]) -> TaskView:
    return TaskView(
        task_id=r.task_id,
        job_id=job_id,
        stage=r.stage,
        stage_index=r.stage_index,
        index=r.idx,
        status=TaskStatus(r.status),
        queue=r.queue,
        attempt=r.attempt,
        max_attempts=r.max_attempts,
        worker_id=r.worker_id,
        lease_until=iso(r.lease_until),
        item=r.item,
        result=r.result,
        error=r.error,
        progress=Progress.model_validate(r.progress) if r.progress else None,
        checkpoints=sorted((r.checkpoints or {}).keys()),
        created_at=iso(r.created_at),
        started_at=iso(r.started_at),
        finished_at=iso(r.finished_at),
    )


def resolve_job_id(queries: JobQueries, ref: str) -> str:
    """A full job id from ``ref``: the id itself or a unique prefix of it."""
    ref = ref.strip().lower()
    if len(ref) == 64:
        return ref
    if not all(c in "0123456789abcdef" for c in ref):
        raise NotFound(f"{ref!r} is not a job id (64 hexadecimal characters)")
    if len(ref) < 6:
        raise NotFound(f"job id prefix {ref!r} is too short; give at least 6 characters")
    with queries.store.read() as conn:
        found = list(
            conn.execute(
                sa.select(jobs.c.job_id).where(jobs.c.job_id.like(f"{ref}%")).limit(2)
            ).scalars()
        )
    if not found:
        raise NotFound(f"no job whose id starts with {ref!r}")
    if len(found) > 1:
        raise NotFound(f"job id prefix {ref!r} is ambiguous; give more characters")
    return str(found[0])
