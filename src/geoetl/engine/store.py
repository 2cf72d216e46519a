"""The job store: every state change of jobs and tasks, each in one transaction.

The same SQLAlchemy Core code runs on SQLite (``BEGIN IMMEDIATE`` serializes
writers) and PostgreSQL (row locks, ``FOR UPDATE SKIP LOCKED`` for claims).
Completing a task, the stage's fan-in and the next stage's creation commit
together, so a job can never be lost between stages.

Every transaction that changes task states also moves the stage's counters in
``job_stages`` (progress is read there, never counted from ``tasks``). Row locks are
taken in one order, tasks, then the job, then its stage counters, so two
transactions never wait on each other in a cycle over them.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from geoetl.engine import ids
from geoetl.engine.db import SYNCHRONOUS_COMMIT, is_postgres
from geoetl.engine.dispatch import (
    Dispatcher,
    NotifyDispatcher,
    PollingDispatcher,
    Runnable,
    wants_ids,
)
from geoetl.engine.models import (
    ACTIVE_JOB,
    OPEN_TASK,
    ClaimedTask,
    Completion,
    JobError,
    JobStatus,
    TaskStatus,
)
from geoetl.engine.schema import job_events, job_stages, jobs, meta, tasks
from geoetl.engine.workflow import Registry, StageResults, Workflow, to_json, validate_params
from geoetl.errors import Conflict, GeoEtlError, InputError, NotFound, StaleAttempt

log = logging.getLogger(__name__)

PRUNE_META_KEY = "events_pruned_until"

# Statuses as SQL literals: SQLite uses a partial index (schema: ix_tasks_queued, ...)
# only when the query's WHERE clause names its predicate, not a bound parameter.
QUEUED = tasks.c.status == sa.literal_column("'queued'")
RUNNING = tasks.c.status == sa.literal_column("'running'")
# Rows per multi-row INSERT on SQLite (14 columns; SQLite allows 32,766 parameters).
SQLITE_INSERT_ROWS = 2000
# PostgreSQL: a stage of up to this many tasks is inserted with the transaction's last
# statement (see JobStore._record); a larger one is copied (COPY) at once.
PG_DEFERRED_ROWS = 200
_TASK_COLUMNS = (
    "task_id",
    "job_key",
    "stage_index",
    "stage",
    "idx",
    "status",
    "queue",
    "attempt",
    "max_attempts",
    "lease_seconds",
    "available_at",
    "item",
    "created_at",
)
_EVENT_COLUMNS = ("job_key", "task_id", "at", "kind", "message", "data")
_EVENT_VARYING = ("job_key", "task_id", "kind", "message", "data")  # ``at``: one time
_DONE = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)

Event = dict[str, Any]
Template = tuple[str, ...]
"""Names a parameterized write (:func:`_template`): its kind, then what shapes it."""
Write = tuple[Template, dict[str, Any]]
"""A write to run: its template and the values of its parameters."""
# Job ids by job key and back, in this process: a job's key never changes (jobs are
# never deleted), so it is looked up once. Cleared when it grows past this.
KEY_CACHE_SIZE = 10_000


def key_of(job_id: str) -> sa.ScalarSelect[Any]:
    """The job key of ``job_id``, as a subquery (one primary-key lookup in the statement)."""
    return sa.select(jobs.c.job_key).where(jobs.c.job_id == job_id).scalar_subquery()


class Changes:
    """What one write transaction records besides its row updates.

    Events, and moves of tasks between the per-stage counters; both are written at
    the end of the transaction (counters after the job row, the lock order above).
    ``runnable``: the tasks it made claimable, for the dispatcher once it commits
    (with ``ids`` False, one per queue is enough and the rest are not collected).
    """

    def __init__(self, *, ids: bool = True) -> None:
        self.events: list[Event] = []
        self.moves: defaultdict[tuple[str, int], Counter[str]] = defaultdict(Counter)
        self.runnable: list[Runnable] = []
        # PostgreSQL: writes sent with the transaction's last statement, as its WITH
        # queries (JobStore._execute): one round trip for them all.
        self.deferred: list[Write] = []
        self.ids = ids
        self._queues: set[str] = set()

    def runs(self, task_id: str, queue: str, available_at: float) -> None:
        """Record that a task became claimable at ``available_at``."""
        if self.ids or queue not in self._queues:
            self._queues.add(queue)
            self.runnable.append(Runnable(task_id, queue, available_at))

    def event(
        self,
        job_id: str,
        kind: str,
        message: str,
        task_id: str | None = None,
        *,
        data: Any = None,
    ) -> None:
        """Record an event of the job."""
        self.events.append(
            {"job_id": job_id, "task_id": task_id, "kind": kind, "message": message, "data": data}
        )

    def move(self, job_id: str, stage_index: int, src: str, dst: str, n: int = 1) -> None:
        """Record ``n`` tasks of a stage going from status ``src`` to ``dst``."""
        counts = self.moves[(job_id, stage_index)]
        counts[src] -= n
        counts[dst] += n


class JobStore:
    """Jobs, tasks and their events in a SQL database."""

    def __init__(
        self,
        engine: Engine,
        workflows: Registry,
        *,
        lease_seconds: float = 30.0,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.engine = engine
        self.workflows = workflows
        self.lease_seconds = lease_seconds
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.postgres = is_postgres(engine)
        if dispatcher is None:
            dispatcher = NotifyDispatcher(engine) if self.postgres else PollingDispatcher()
        self.dispatcher: Dispatcher = dispatcher
        self._ids: dict[int, str] = {}  # job key -> job id
        self._keys: dict[str, int] = {}  # job id -> job key

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def write(self, *, lease: bool = False) -> Iterator[Connection]:
        """A write transaction (SQLite: the write lock is taken at BEGIN).

        ``lease``: the transaction only moves a task between workers (claim, heartbeat,
        completion). On PostgreSQL its commit then does not wait for the WAL to reach the
        disk (``synchronous_commit = off``, about 2 ms a commit): a server crash can
        lose the last such commits, never part of one, and the engine is at-least-once
        anyway; the task runs again. Submits, cancels and failures stay durable.
        """
        sync = "off" if lease else "on"
        with (
            self.engine.connect().execution_options(**{SYNCHRONOUS_COMMIT: sync}) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction that does not block writers."""
        options = {"sqlite_begin": "DEFERRED", SYNCHRONOUS_COMMIT: "any"}
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            yield conn

    def changes(self) -> Changes:
        """A fresh record for one write transaction, suited to the dispatcher."""
        return Changes(ids=wants_ids(self.dispatcher))

    def dispatch(self, changes: Changes) -> None:
        """After commit: tell the dispatcher about the tasks ``changes`` made runnable.

        Never raises: the transaction is committed, and a task whose message was lost
        is re-dispatched by the janitor (idle local workers poll as well).
        """
        if not changes.runnable:
            return
        try:
            self.dispatcher.dispatch(changes.runnable)
        except Exception:
            log.exception(
                "dispatching %d runnable task(s) failed; the janitor re-dispatches them",
                len(changes.runnable),
            )

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- submit, resubmit, cancel ---------------------------------------------------------

    def submit(
        self,
        workflow: str,
        params: Any,
        *,
        submitted_by: str | None = None,
        access_level: str = "public",
    ) -> tuple[str, bool]:
        """Create the job for (workflow, params), or find it: ``(job_id, idempotent)``.

        ``submitted_by`` and ``access_level`` label the job for the readers' filters
        (:meth:`geoetl.engine.queries.JobQueries.jobs`); they do not change its id.
        """
        wf = self.workflows.get(workflow)
        canonical = validate_params(wf, params).model_dump(mode="json")
        jid = ids.job_id(wf.name, wf.version, canonical)
        changes = self.changes()
        try:
            with self.write() as conn:
                existing = self._latest_run(conn, jid)
                if existing is not None:
                    return existing, True
                self._create_job(
                    conn,
                    wf,
                    jid,
                    jid,
                    1,
                    canonical,
                    "job_submitted",
                    changes,
                    labels={"submitted_by": submitted_by, "access_level": access_level},
                )
        except IntegrityError:
            # Another process created the same job between our check and insert.
            with self.read() as conn:
                existing = self._latest_run(conn, jid)
            if existing is None:
                raise
            return existing, True
        self.dispatch(changes)
        log.info("submitted job %s (%s)", jid, wf.name, extra={"job_id": jid})
        return jid, False

    def resubmit(self, job_id: str, *, submitted_by: str | None = None) -> str:
        """Run a job again as its next run; an active run is cancelled first.

        The new run keeps the job's access level; ``submitted_by`` (default: the
        original submitter) is who asked for it.
        """
        with self.write() as conn:
            job = self._job_row(conn, job_id)
            wf = self.workflows.get(job.workflow)
            canonical = validate_params(wf, job.params).model_dump(mode="json")
            changes = self.changes()
            if job.status in ACTIVE_JOB:
                self._cancel(conn, job_id, "cancelled by resubmit", time.time(), changes)
            last = conn.execute(
                sa.select(sa.func.max(jobs.c.run)).where(jobs.c.base_id == job.base_id)
            ).scalar_one()
            run = int(last) + 1
            new_id = ids.job_id(wf.name, wf.version, canonical, run=run)
            changes.event(job_id, "job_resubmitted", f"resubmitted as run {run}: {new_id}")
            self._record(conn, changes)
            labels = {
                "submitted_by": submitted_by or job.submitted_by,
                "access_level": job.access_level,
            }
            self._create_job(
                conn,
                wf,
                new_id,
                job.base_id,
                run,
                canonical,
                "job_submitted",
                changes,
                labels=labels,
            )
        self.dispatch(changes)
        return new_id

    def cancel(self, job_id: str) -> JobStatus:
        """Cancel an active job: its open tasks are cancelled, running ones lose their lease."""
        with self.write() as conn:
            job = self._job_row(conn, job_id)
            if job.status not in ACTIVE_JOB:
                raise Conflict(f"job {job_id} is already {job.status}; nothing to cancel")
            changes = Changes()
            self._cancel(conn, job_id, "cancelled on request", time.time(), changes)
            self._record(conn, changes)
        return JobStatus.cancelled

    def approve(self, job_id: str, *, by: str, note: str | None = None) -> None:
        """Let a job waiting for approval go on: the held stage's tasks are created."""
        with self.write() as conn:
            job = self._job_row(conn, job_id)
            if job.status != JobStatus.awaiting_approval:
                raise Conflict(f"job {job_id} is {job.status}, not awaiting approval")
            now = time.time()
            changes = self.changes()
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_id == job_id)
                .values(status=JobStatus.running, updated_at=now)
            )
            changes.event(
                job_id, "job_approved", f"approved by {by}" + (f": {note}" if note else "")
            )
            self._start_stage(conn, job_id, job.stage_index, now, changes, approved=True)
            self._record(conn, changes)
        self.dispatch(changes)

    def reject(self, job_id: str, *, by: str, note: str | None = None) -> None:
        """End a job waiting for approval: cancelled, with ``rejected`` as its error."""
        with self.write() as conn:
            job = self._job_row(conn, job_id)
            if job.status != JobStatus.awaiting_approval:
                raise Conflict(f"job {job_id} is {job.status}, not awaiting approval")
            now = time.time()
            message = f"rejected by {by}" + (f": {note}" if note else "")
            error = JobError(message=message, kind="rejected", stage=job.stage)
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_id == job_id)
                .values(
                    status=JobStatus.cancelled,
                    error=error.model_dump(mode="json"),
                    finished_at=now,
                    updated_at=now,
                )
            )
            changes = Changes()
            changes.event(job_id, "job_rejected", message)
            self._record(conn, changes)

    # -- workers: claim, heartbeat, checkpoint, complete, fail ----------------------------

    def claim_statement(
        self,
        worker_id: str,
        limit: int,
        now: float,
        *,
        queues: Sequence[str] | None = None,
        job_id: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> sa.Update:
        """The UPDATE ... RETURNING that :meth:`claim` runs (tests EXPLAIN it)."""
        # A message names its tasks: look them up by primary key. Spelled so that the
        # queued partial index cannot match (PostgreSQL prefers it on a freshly inserted
        # stage whose statistics are stale, and then reads every queued row: 4.8 ms a
        # claim at 20,000 queued, against 0.14 ms by key).
        status_ok = (
            QUEUED if task_ids is None else tasks.c.status.op("||")(sa.literal("")) == "queued"
        )
        pick = (
            sa.select(tasks.c.task_id)
            .where(status_ok, tasks.c.available_at <= now)
            .order_by(tasks.c.available_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if queues:
            pick = pick.where(tasks.c.queue.in_(list(queues)))
        if job_id:
            # The key as a value, not a subquery: the planner then knows which job it is
            # (and so that ix_tasks_job_queued holds few of the queued tasks).
            pick = pick.where(tasks.c.job_key == self.job_key(job_id))
        if task_ids is not None:
            pick = pick.where(tasks.c.task_id.in_(list(task_ids)))
        # MATERIALIZED: evaluated once. A plain IN (subquery ... LIMIT n SKIP LOCKED) may be
        # re-run by PostgreSQL's planner and claim far more than n rows.
        picked = pick.cte("picked").prefix_with("MATERIALIZED")
        return (
            sa.update(tasks)
            .add_cte(picked)
            .where(tasks.c.task_id.in_(sa.select(picked.c.task_id)))
            .where(QUEUED)
            .values(
                status=TaskStatus.running,
                attempt=tasks.c.attempt + 1,
                lease_until=now + tasks.c.lease_seconds,
                worker_id=worker_id,
                started_at=now,
            )
            .returning(
                tasks.c.task_id,
                tasks.c.job_key,
                tasks.c.stage_index,
                tasks.c.stage,
                tasks.c.idx,
                tasks.c.attempt,
                tasks.c.lease_seconds,
                tasks.c.item,
                tasks.c.checkpoints,
            )
        )

    def claim(
        self,
        worker_id: str,
        limit: int = 1,
        *,
        queues: Sequence[str] | None = None,
        job_id: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> list[ClaimedTask]:
        """Take up to ``limit`` runnable tasks: each gets a new attempt number and a lease.

        The pick walks a partial index of queued tasks in ``available_at`` order (ties in
        creation order) and stops after ``limit`` rows, so its cost does not grow with
        the queue; ``job_id`` has an index of its own (ix_tasks_job_queued).

        ``task_ids``: only these tasks (a dispatcher's message named them), each one
        that is still queued and available now, however small ``limit``; a task that
        ran meanwhile, or was cancelled, yields nothing.
        """
        if task_ids is not None:
            if not task_ids:
                return []
            limit = max(limit, len(task_ids))
        now = time.time()
        claim = self.claim_statement(
            worker_id, limit, now, queues=queues, job_id=job_id, task_ids=task_ids
        )
        with self.write(lease=True) as conn:
            rows = list(conn.execute(claim).all())
            if not rows:
                return []
            job_ids = self._job_ids(conn, {r.job_key for r in rows})
            changes = Changes()
            # A job's first claim starts it (a job that runs already is not locked here).
            started = conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_key.in_(sorted(job_ids)))
                .where(jobs.c.status == JobStatus.queued)
                .values(status=JobStatus.running, started_at=now, updated_at=now)
                .returning(jobs.c.job_id)
            ).all()
            for j in started:
                changes.event(j.job_id, "job_started", "first task started")
            per_job: dict[str, list[Any]] = defaultdict(list)
            for r in rows:
                jid = job_ids[r.job_key]
                per_job[jid].append(r)
                changes.move(jid, r.stage_index, TaskStatus.queued, TaskStatus.running)
                changes.moves[(jid, r.stage_index)]["attempts"] += 1
            for jid, mine in per_job.items():
                changes.event(jid, "task_started", *_started(mine, worker_id))
            self._record(conn, changes)
        rows.sort(key=lambda r: (r.stage_index, r.idx))
        return [
            ClaimedTask(
                task_id=r.task_id,
                job_id=job_ids[r.job_key],
                stage_index=r.stage_index,
                stage=r.stage,
                index=r.idx,
                attempt=r.attempt,
                lease_seconds=r.lease_seconds,
                item=r.item,
                checkpoints=dict(r.checkpoints or {}),
            )
            for r in rows
        ]

    def heartbeat(
        self,
        held: Sequence[tuple[str, int]],
        progress: dict[tuple[str, int], dict[str, Any]] | None = None,
        finishing: Sequence[tuple[str, int]] = (),
    ) -> set[tuple[str, int]]:
        """Renew the leases of ``held`` (task_id, attempt) pairs; returns the ones lost.

        ``finishing``: tasks whose end the caller is recording. Their leases are renewed
        where their rows are not locked, and never reported lost: the caller's own
        completion may hold them, in another transaction, and waiting for it there (or
        taking the rows in an order of its own) could deadlock the two.
        """
        if not (held or finishing):
            return set()
        now = time.time()
        alive: set[tuple[str, int]] = set()
        lease = {"lease_until": now + tasks.c.lease_seconds}
        with self.write(lease=True) as conn:
            if held:
                renewed = conn.execute(
                    sa.update(tasks)
                    .where(sa.tuple_(tasks.c.task_id, tasks.c.attempt).in_(list(held)))
                    .where(RUNNING)
                    .values(lease)
                    .returning(tasks.c.task_id, tasks.c.attempt)
                ).all()
                alive = {(r.task_id, r.attempt) for r in renewed}
            if finishing:
                free = (
                    sa.select(tasks.c.task_id)
                    .where(sa.tuple_(tasks.c.task_id, tasks.c.attempt).in_(list(finishing)))
                    .where(RUNNING)
                    .with_for_update(skip_locked=True)
                )
                conn.execute(sa.update(tasks).where(tasks.c.task_id.in_(free)).values(lease))
            for key, value in (progress or {}).items():
                if key in alive:
                    conn.execute(
                        sa.update(tasks)
                        .where(tasks.c.task_id == key[0], tasks.c.attempt == key[1])
                        .values(progress=value)
                    )
        return set(held) - alive

    def give_back(self, worker_id: str, keys: Sequence[tuple[str, int]]) -> list[str]:
        """Put claimed tasks that never started back in the queue, as before the claim.

        A runner claims tasks in batches while they run fast; when a batch turns out to
        hold tasks of a slow stage, it gives back those it has not started so that other
        workers take them now instead of after the first one. No attempt was used: the
        attempt number goes back to the one before the claim. Returns the ids given
        back; a task whose lease ``worker_id`` no longer holds is left as it is.
        """
        if not keys:
            return []
        with self.write() as conn:
            rows = conn.execute(
                sa.update(tasks)
                .where(sa.tuple_(tasks.c.task_id, tasks.c.attempt).in_(list(keys)))
                .where(RUNNING, tasks.c.worker_id == worker_id)
                .values(
                    status=TaskStatus.queued,
                    attempt=tasks.c.attempt - 1,
                    lease_until=None,
                    worker_id=None,
                )
                .returning(
                    tasks.c.task_id,
                    tasks.c.job_key,
                    tasks.c.stage_index,
                    tasks.c.stage,
                    tasks.c.queue,
                    tasks.c.available_at,
                )
            ).all()
            if not rows:
                return []
            job_ids = self._job_ids(conn, {r.job_key for r in rows})
            changes = self.changes()
            per_job: dict[str, list[Any]] = defaultdict(list)
            for r in rows:
                jid = job_ids[r.job_key]
                per_job[jid].append(r)
                changes.move(jid, r.stage_index, TaskStatus.running, TaskStatus.queued)
                changes.moves[(jid, r.stage_index)]["attempts"] -= 1
                changes.runs(r.task_id, r.queue, r.available_at)
            for jid, mine in per_job.items():
                changes.event(
                    jid,
                    "tasks_returned",
                    f"{len(mine)} unstarted task(s) of {mine[0].stage} given back by "
                    f"{worker_id} for other workers (the stage runs slowly)",
                )
            self._record(conn, changes)
        self.dispatch(changes)
        return sorted(r.task_id for r in rows)

    def checkpoint(self, task_id: str, attempt: int, name: str, data: Any) -> None:
        """Record a named checkpoint that later attempts of the task will see."""
        with self.write() as conn:
            current = conn.execute(
                sa.select(tasks.c.checkpoints, tasks.c.job_key).where(
                    tasks.c.task_id == task_id,
                    tasks.c.attempt == attempt,
                    tasks.c.status == TaskStatus.running,
                )
            ).first()
            if current is None:
                raise StaleAttempt(f"task {task_id} attempt {attempt} no longer holds its lease")
            merged = {**(current.checkpoints or {}), name: to_json(data)}
            conn.execute(
                sa.update(tasks)
                .where(tasks.c.task_id == task_id, tasks.c.attempt == attempt)
                .values(checkpoints=merged)
            )
            changes = Changes()
            job_id = self._job_ids(conn, {current.job_key})[current.job_key]
            changes.event(job_id, "checkpoint", name, task_id=task_id)
            self._record(conn, changes)

    def complete(self, completions: Sequence[Completion]) -> list[str]:
        """Record successful attempts, with fan-in; returns task ids rejected as stale.

        The whole batch is one transaction: tasks marked succeeded, each job's
        remaining-task counter decremented, and a stage that reached zero followed
        by the next stage's tasks (or the job's end).
        """
        if not completions:
            return []
        now = time.time()
        stages = {c.stage for c in completions}
        # PostgreSQL, a batch of one stage (the usual case): its fan-in is part of the
        # statement that records it, the job's row returned with each accepted task.
        fast = next(iter(stages)) if self.postgres and len(stages) == 1 else None
        with self.write(lease=True) as conn:
            # One statement marks the batch succeeded and says which attempts were still
            # current (the others were taken over or cancelled: stale, left untouched).
            current = conn.exec_driver_sql(*self._complete_statement(completions, now, fast)).all()
            fanned = {}
            if fast is not None and current and current[0].total is not None:
                fanned[fast] = current[0]
            job_ids = self._job_ids(conn, {r.job_key for r in current})
            per_stage: Counter[tuple[str, int]] = Counter()
            # What the batch finished, by job and stage: a single-task stage's result is
            # then at hand for the next stage's plan, without reading it back.
            results = {c.task_id: c.result for c in completions}
            finished: dict[str, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
            changes = self.changes()
            for r in current:
                jid = job_ids[r.job_key]
                finished[jid][r.stage_index].append(results[r.task_id])
                per_stage[(jid, r.stage_index)] += 1
                changes.event(jid, "task_succeeded", f"attempt {r.attempt}", r.task_id)
            for (job_id, stage_index), n in sorted(per_stage.items()):
                # The fan-in: the stage's counters, under their row lock, say whether this
                # batch finished it (the job row is written only when a stage ends).
                stage = (
                    fanned.get((job_id, stage_index))
                    or conn.execute(
                        _FAN_IN_JOB if self.postgres else _FAN_IN,
                        {"v_job_id": job_id, "v_stage_index": stage_index, "v_n": n},
                    ).one()
                )
                if stage.succeeded < stage.total:
                    continue
                # PostgreSQL's fan-in returned the job's row (its stage as ``job_stage``).
                job = stage if self.postgres else self._job_row(conn, job_id)
                current_stage = job.job_stage if self.postgres else job.stage_index
                if job.status == JobStatus.running and current_stage == stage_index:
                    known = {i: v[0] for i, v in finished[job_id].items() if len(v) == 1}
                    self._start_stage(
                        conn, job_id, stage_index + 1, now, changes, job=job, known=known
                    )
            self._record(conn, changes)
        self.dispatch(changes)
        accepted = {r.task_id for r in current}
        rejected = [c.task_id for c in completions if c.task_id not in accepted]
        for task_id in rejected:
            log.info("dropped completion of %s: attempt no longer current", task_id)
        return rejected

    def _complete_statement(
        self, completions: Sequence[Completion], now: float, stage: tuple[str, int] | None = None
    ) -> tuple[str, tuple[Any, ...]]:
        """``UPDATE tasks ... FROM (VALUES ...) RETURNING``: a batch's successes in one statement.

        Only attempts still running match (the fencing); the rows it returns are the
        accepted ones. Written as driver SQL: both backends name the columns of a
        ``VALUES`` list ``column1``, ``column2``..., where SQLAlchemy would render an
        alias list SQLite rejects. Results go in as JSON text (JSON ``null`` for None,
        as the result column stores it).

        ``stage`` (PostgreSQL): the (job id, stage index) of the batch. The statement
        then also moves that stage's counters by the accepted tasks of that stage (the
        task rows are locked first, then the stage's, as everywhere), and each returned
        row carries the stage's counters (``total``, ``succeeded``) and what the fan-in
        needs of the job's row (``workflow``, ``params``, ``status``, and ``job_stage``,
        the job's current stage), as :data:`_FAN_IN_JOB` returns them; no row for the
        counters (``total`` NULL) leaves the fan-in to that statement.
        """
        p = "%s" if self.postgres else "?"
        row = (
            f"(CAST({p} AS VARCHAR), CAST({p} AS INTEGER), CAST({p} AS JSONB))"
            if self.postgres
            else f"({p}, {p}, {p})"
        )
        params: list[Any] = [TaskStatus.succeeded.value, now]
        for c in completions:
            params += [c.task_id, c.attempt, json.dumps(c.result)]
        sql = (
            f"UPDATE {tasks.name} SET status = {p}, result = v.column3, finished_at = {p}, "
            f"lease_until = NULL FROM (VALUES {', '.join([row] * len(completions))}) AS v "
            f"WHERE {tasks.name}.task_id = v.column1 AND {tasks.name}.attempt = v.column2 "
            f"AND {tasks.name}.status = 'running' "
            f"RETURNING {tasks.name}.task_id, {tasks.name}.attempt, {tasks.name}.job_key, "
            f"{tasks.name}.stage_index"
        )
        if stage is None:
            return sql, tuple(params)
        return _FAN_IN_WITH.format(done=sql), (*params, *stage, *stage)

    def fail(self, task_id: str, attempt: int, error: dict[str, Any], *, retryable: bool) -> str:
        """Record a failed attempt: re-queued with backoff, or failed with its job.

        Returns the task's new status, or ``"stale"`` when the attempt was not current.
        """
        now = time.time()
        with self.write() as conn:
            row = conn.execute(
                _with_job_id(sa.select(tasks))
                .where(tasks.c.task_id == task_id, tasks.c.attempt == attempt, RUNNING)
                .with_for_update(of=tasks)
            ).first()
            if row is None:
                return "stale"
            changes = self.changes()
            status = self._retry_or_fail(conn, row, error, retryable, now, changes)
            self._record(conn, changes)
        self.dispatch(changes)
        return status

    # -- janitor --------------------------------------------------------------------------

    def expire_leases(self, limit: int = 500) -> tuple[list[str], list[str]]:
        """Re-queue (or fail, when out of attempts) running tasks whose lease ran out."""
        return self._take_back(
            tasks.c.lease_until < time.time(),
            limit,
            "lease_expired",
            lambda row: (
                f"worker {row.worker_id} stopped renewing the lease of attempt "
                f"{row.attempt} (crashed or stalled)"
            ),
        )

    def release_worker(self, worker_id: str, reason: str) -> tuple[list[str], list[str]]:
        """Re-queue (or fail) the running tasks of a worker known to be gone, at once.

        For a process whose parent saw it exit (``reason`` says how): its tasks need not
        wait for their leases to run out. Its attempts are fenced as after an expiry.
        """
        return self._take_back(
            tasks.c.worker_id == worker_id,
            10_000,
            "worker_exited",
            lambda row: f"worker {worker_id} {reason} while running attempt {row.attempt}",
        )

    def _take_back(
        self,
        which: sa.ColumnElement[bool],
        limit: int,
        kind: str,
        message: Callable[[Any], str],
    ) -> tuple[list[str], list[str]]:
        """Re-queue (or fail) running tasks ``which`` selects: the (re-queued, failed) ids."""
        now = time.time()
        requeued: list[str] = []
        failed: list[str] = []
        with self.write() as conn:
            rows = conn.execute(
                _with_job_id(sa.select(tasks))
                .where(RUNNING, which)
                .order_by(tasks.c.lease_until)
                .limit(limit)
                .with_for_update(skip_locked=True, of=tasks)
            ).all()
            changes = self.changes()
            for row in rows:
                error = {"kind": kind, "message": message(row)}
                status = self._retry_or_fail(conn, row, error, True, now, changes)
                (requeued if status == TaskStatus.queued else failed).append(row.task_id)
            self._record(conn, changes)
        self.dispatch(changes)
        return requeued, failed

    def stale_queued(self, older_than: float, limit: int = 1000) -> list[Runnable]:
        """Queued tasks runnable for more than ``older_than`` seconds that nobody claimed."""
        cutoff = time.time() - older_than
        with self.read() as conn:
            rows = conn.execute(
                sa.select(tasks.c.task_id, tasks.c.queue, tasks.c.available_at)
                .where(QUEUED, tasks.c.available_at < cutoff)
                .order_by(tasks.c.available_at)
                .limit(limit)
            ).all()
        return [Runnable(r.task_id, r.queue, r.available_at) for r in rows]

    def prune_events(
        self, ended_before: float, *, batch: int = 10_000, jobs_limit: int = 500
    ) -> int:
        """Delete the events of jobs that ended before ``ended_before``; returns how many.

        Job and task rows stay. Jobs are taken in the order they ended, from where the
        last pass stopped (kept in ``engine_meta``), so a pass costs what it deletes; a
        large log goes in transactions of ``batch`` events, keeping SQLite's write lock
        short.
        """
        mark = float(self.get_meta(PRUNE_META_KEY) or 0.0)
        with self.read() as conn:
            ended = conn.execute(
                sa.select(jobs.c.job_key, jobs.c.finished_at)
                .where(
                    jobs.c.finished_at >= mark,
                    jobs.c.finished_at < ended_before,
                    jobs.c.status.in_(_DONE),
                )
                .order_by(jobs.c.finished_at)
                .limit(jobs_limit)
            ).all()
        deleted = 0
        for job in ended:
            while True:
                chunk = (
                    sa.select(job_events.c.id)
                    .where(job_events.c.job_key == job.job_key)
                    .order_by(job_events.c.id)
                    .limit(batch)
                    .scalar_subquery()
                )
                with self.write() as conn:
                    n = conn.execute(
                        sa.delete(job_events).where(job_events.c.id.in_(chunk))
                    ).rowcount
                deleted += n
                if n < batch:
                    break
        if ended:
            self.set_meta(PRUNE_META_KEY, ended[-1].finished_at)
        return deleted

    def set_meta(self, key: str, value: Any) -> None:
        """Store a small engine fact (e.g. the janitor's last run)."""
        with self.write() as conn:
            updated = conn.execute(
                sa.update(meta).where(meta.c.key == key).values(value=value, updated_at=time.time())
            ).rowcount
            if not updated:
                conn.execute(sa.insert(meta).values(key=key, value=value, updated_at=time.time()))

    def get_meta(self, key: str) -> Any:
        """A fact stored with :meth:`set_meta`, or None."""
        with self.read() as conn:
            return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()

    # -- stage results --------------------------------------------------------------------

    def load_stage_result(self, job_id: str, wf: Workflow, name: str) -> Any:
        """The result of stage ``name``: one value, or a list for a fan-out stage."""
        with self.read() as conn:
            return _load_stage_result(conn, job_id, wf, name)

    def job_spec(self, job_id: str) -> tuple[str, dict[str, Any]]:
        """A job's workflow name and validated params."""
        with self.read() as conn:
            job = self._job_row(conn, job_id)
        return job.workflow, dict(job.params)

    def job_status(self, job_id: str) -> JobStatus:
        """A job's current status."""
        with self.read() as conn:
            status = conn.execute(sa.select(jobs.c.status).where(jobs.c.job_id == job_id)).scalar()
        if status is None:
            raise NotFound(f"no job {job_id!r}")
        return JobStatus(status)

    # -- internals ------------------------------------------------------------------------

    def _latest_run(self, conn: Connection, base_id: str) -> str | None:
        return conn.execute(
            sa.select(jobs.c.job_id)
            .where(jobs.c.base_id == base_id)
            .order_by(jobs.c.run.desc())
            .limit(1)
        ).scalar()

    def job_key(self, job_id: str) -> int:
        """The job key of ``job_id`` (what its tasks and events refer to); NotFound if none."""
        key = self._keys.get(job_id)
        if key is not None:
            return key
        with self.read() as conn:
            return self._key(conn, job_id)

    def _remember(self, job_id: str, key: int) -> None:
        if len(self._keys) >= KEY_CACHE_SIZE:
            self._keys.clear()
            self._ids.clear()
        self._keys[job_id] = key
        self._ids[key] = job_id

    def _key(self, conn: Connection, job_id: str) -> int:
        """The job key of ``job_id``; NotFound when there is no such job."""
        key = self._keys.get(job_id)
        if key is None:
            key = conn.execute(sa.select(jobs.c.job_key).where(jobs.c.job_id == job_id)).scalar()
            if key is None:
                raise NotFound(f"no job {job_id!r}")
            self._remember(job_id, int(key))
        return int(key)

    def _job_ids(self, conn: Connection, keys: set[int]) -> dict[int, str]:
        """The job ids of these job keys (looked up once per process)."""
        missing = [k for k in keys if k not in self._ids]
        if missing:
            for r in conn.execute(
                sa.select(jobs.c.job_key, jobs.c.job_id).where(jobs.c.job_key.in_(missing))
            ):
                self._remember(r.job_id, int(r.job_key))
        return {k: self._ids[k] for k in keys}

    def _job_row(self, conn: Connection, job_id: str) -> sa.Row[Any]:
        row = conn.execute(_JOB_ROW, {"v_job_id": job_id}).first()
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        self._remember(job_id, int(row.job_key))
        return row

    def _create_job(
        self,
        conn: Connection,
        wf: Workflow,
        job_id: str,
        base_id: str,
        run: int,
        params: dict[str, Any],
        kind: str,
        changes: Changes,
        *,
        labels: dict[str, str | None] | None = None,
    ) -> None:
        now = time.time()
        # PostgreSQL numbers the job (an identity column); SQLite takes the next number
        # under its write lock, which this transaction holds.
        number = (
            {}
            if self.postgres
            else {
                "job_key": sa.select(
                    sa.func.coalesce(sa.func.max(jobs.c.job_key), 0) + 1
                ).scalar_subquery()
            }
        )
        key = conn.execute(
            sa.insert(jobs)
            .values(
                **(labels or {}),
                **number,
                job_id=job_id,
                base_id=base_id,
                run=run,
                workflow=wf.name,
                version=wf.version,
                params=params,
                status=JobStatus.queued,
                stage_index=0,
                stage=wf.stages[0].name,
                remaining=0,
                created_at=now,
                updated_at=now,
            )
            .returning(jobs.c.job_key)
        ).scalar_one()
        self._remember(job_id, int(key))
        changes.event(job_id, kind, f"{wf.name} v{wf.version}, run {run}")
        self._start_stage(conn, job_id, 0, now, changes)
        self._record(conn, changes)

    def _start_stage(
        self,
        conn: Connection,
        job_id: str,
        index: int,
        now: float,
        changes: Changes,
        *,
        approved: bool = False,
        job: sa.Row[Any] | None = None,
        known: dict[int, Any] | None = None,
    ) -> None:
        """Create the tasks of stage ``index`` (skipping empty fan-outs), or finish the job.

        A stage whose ``hold`` gives a reason parks the job in ``awaiting_approval``
        instead (unless ``approved``: the held stage then starts). ``job``: the job's
        row, when the caller has just read it; ``known``: results of single tasks the
        caller has just recorded, by stage index (used for single-task stages only).
        """
        if job is None:
            job = self._job_row(conn, job_id)
        wf = self.workflows.get(job.workflow)
        first = index
        while index < len(wf.stages):
            stage = wf.stages[index]
            try:
                if stage.hold is not None and not (approved and index == first):
                    reason = stage.hold(
                        validate_params(wf, job.params),
                        _results_in(conn, job_id, wf, index, known),
                    )
                    if reason:
                        conn.execute(
                            sa.update(jobs)
                            .where(jobs.c.job_id == job_id)
                            .values(
                                status=JobStatus.awaiting_approval,
                                stage_index=index,
                                stage=stage.name,
                                remaining=0,
                                updated_at=now,
                            )
                        )
                        changes.event(job_id, "approval_requested", f"{stage.name}: {reason}")
                        return
                items: list[Any] = [None]
                if stage.plan is not None:
                    params = validate_params(wf, job.params)
                    results = _results_in(conn, job_id, wf, index, known)
                    items = [to_json(i) for i in stage.plan(params, results)]
            except SQLAlchemyError:
                raise
            except Exception as exc:
                self._fail_job(conn, job_id, _user_error(exc, stage.name, "plan"), now, changes)
                return
            if items:
                self._insert_tasks(conn, job.job_key, job_id, stage, index, items, now, changes)
                counters = dict.fromkeys(_COUNTERS, 0) | {"queued": len(items)}
                self._execute(
                    conn,
                    changes,
                    ("stage",),
                    {
                        "job_id": job_id,
                        "stage_index": index,
                        "stage": stage.name,
                        "queue": stage.queue,
                        "total": len(items),
                        **counters,
                    },
                )
                self._execute(
                    conn,
                    changes,
                    ("job_stage",),
                    {
                        "job_id": job_id,
                        "stage_index": index,
                        "stage": stage.name,
                        "remaining": len(items),
                        "updated_at": now,
                    },
                )
                changes.event(job_id, "stage_started", f"{stage.name}: {len(items)} task(s)")
                return
            changes.event(job_id, "stage_skipped", f"{stage.name}: plan returned no items")
            index += 1
        self._finish_job(conn, job_id, wf, now, changes)

    def _insert_tasks(
        self,
        conn: Connection,
        job_key: int,
        job_id: str,
        stage: Any,
        index: int,
        items: list[Any],
        now: float,
        changes: Changes,
    ) -> None:
        """Create a stage's tasks in bulk: COPY on PostgreSQL, multi-row INSERTs on SQLite.

        Both bypass SQLAlchemy's per-row parameter handling, which made a 10,000-task
        stage cost about 450 ms on PostgreSQL; items are written as JSON text. The new
        tasks are recorded in ``changes`` for the dispatcher (all of them only when it
        wants ids; else the first stands for the queue).
        """
        lease = stage.lease.total_seconds() if stage.lease else self.lease_seconds
        attempts = max(1, stage.retry.attempts)
        task_ids = [ids.task_id(job_id, stage.name, i) for i in range(len(items))]
        if changes.ids:
            changes.runnable.extend(Runnable(t, stage.queue, now) for t in task_ids)
        else:
            changes.runs(task_ids[0], stage.queue, now)
        item_json = [None if item is None else json.dumps(item) for item in items]
        if self.postgres and len(items) <= PG_DEFERRED_ROWS:
            # A small stage: one INSERT, sent with the transaction's last statement. What
            # differs between its tasks goes in arrays, the rest once.
            shared = {
                "job_key": job_key,
                "stage_index": index,
                "stage": stage.name,
                "status": TaskStatus.queued.value,
                "queue": stage.queue,
                "attempt": 0,
                "max_attempts": attempts,
                "lease_seconds": lease,
                "available_at": now,
                "created_at": now,
            }
            varying = {"task_id": task_ids, "idx": list(range(len(items))), "item": item_json}
            self._execute(conn, changes, ("tasks",), shared | varying)
            return
        rows = (
            (
                task_ids[i],
                job_key,
                index,
                stage.name,
                i,
                TaskStatus.queued.value,
                stage.queue,
                0,
                attempts,
                lease,
                now,
                item_json[i],
                now,
            )
            for i in range(len(items))
        )
        columns = ", ".join(_TASK_COLUMNS)
        if self.postgres:
            dbapi: Any = conn.connection.driver_connection  # psycopg 3, in this transaction
            with (
                dbapi.cursor() as cur,
                cur.copy(f"COPY {tasks.name} ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        one = "(" + ", ".join("?" * len(_TASK_COLUMNS)) + ")"
        batch: list[Any] = []
        for n, row in enumerate(rows, 1):
            batch.extend(row)
            if n % SQLITE_INSERT_ROWS == 0 or n == len(items):
                values = ", ".join([one] * (len(batch) // len(_TASK_COLUMNS)))
                conn.exec_driver_sql(
                    f"INSERT INTO {tasks.name} ({columns}) VALUES {values}", tuple(batch)
                )
                batch = []

    def _finish_job(
        self, conn: Connection, job_id: str, wf: Workflow, now: float, changes: Changes
    ) -> None:
        job = self._job_row(conn, job_id)
        n = len(wf.stages)
        try:
            results = _results_in(conn, job_id, wf, n)
            if wf.finalize is not None:
                result = to_json(wf.finalize(validate_params(wf, job.params), results))
            else:
                result = results[wf.stages[-1].name]
        except SQLAlchemyError:
            raise
        except Exception as exc:
            self._fail_job(conn, job_id, _user_error(exc, None, "finalize"), now, changes)
            return
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.job_id == job_id)
            .values(
                status=JobStatus.succeeded,
                result=result,
                remaining=0,
                stage_index=n,
                finished_at=now,
                updated_at=now,
            )
        )
        changes.event(job_id, "job_succeeded", "all stages finished")

    def _retry_or_fail(
        self,
        conn: Connection,
        row: sa.Row[Any],
        error: dict[str, Any],
        retryable: bool,
        now: float,
        changes: Changes,
    ) -> str:
        error = {**error, "attempt": row.attempt}
        where = (tasks.c.task_id == row.task_id, tasks.c.attempt == row.attempt)
        if retryable and row.attempt < row.max_attempts:
            delay = self._backoff(row.attempt)
            conn.execute(
                sa.update(tasks)
                .where(*where)
                .values(
                    status=TaskStatus.queued,
                    available_at=now + delay,
                    lease_until=None,
                    worker_id=None,
                    error=error,
                )
            )
            changes.move(row.job_id, row.stage_index, TaskStatus.running, TaskStatus.queued)
            changes.runs(row.task_id, row.queue, now + delay)
            # The message says what failed; the traceback stays on the task row (its
            # latest attempt), keeping a retried fan-out's log small.
            changes.event(
                row.job_id,
                "task_retry",
                f"attempt {row.attempt}/{row.max_attempts} failed ({error.get('kind')}): "
                f"{error.get('message')}; retrying in {delay:.2f}s",
                row.task_id,
                data={k: v for k, v in error.items() if k in ("kind", "attempt", "worker")},
            )
            return TaskStatus.queued
        conn.execute(
            sa.update(tasks)
            .where(*where)
            .values(status=TaskStatus.failed, error=error, finished_at=now, lease_until=None)
        )
        changes.move(row.job_id, row.stage_index, TaskStatus.running, TaskStatus.failed)
        changes.event(row.job_id, "task_failed", str(error.get("message")), row.task_id, data=error)
        job_error = JobError(
            message=str(error.get("message")),
            kind=str(error.get("kind", "error")),
            stage=row.stage,
            task_id=row.task_id,
            attempt=row.attempt,
        )
        self._fail_job(conn, row.job_id, job_error, now, changes)
        return TaskStatus.failed

    def _fail_job(
        self, conn: Connection, job_id: str, error: JobError, now: float, changes: Changes
    ) -> None:
        failed = conn.execute(
            sa.update(jobs)
            .where(jobs.c.job_id == job_id, jobs.c.status.in_(ACTIVE_JOB))
            .values(
                status=JobStatus.failed,
                error=error.model_dump(mode="json"),
                finished_at=now,
                updated_at=now,
            )
            .returning(jobs.c.job_id)
        ).first()
        if failed is None:
            return
        n = self._cancel_tasks(conn, job_id, now, changes)
        changes.event(
            job_id, "job_failed", error.message, data={"cancelled_tasks": n, **error.model_dump()}
        )

    def _cancel(
        self, conn: Connection, job_id: str, reason: str, now: float, changes: Changes
    ) -> None:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.job_id == job_id, jobs.c.status.in_(ACTIVE_JOB))
            .values(status=JobStatus.cancelled, finished_at=now, updated_at=now)
        )
        n = self._cancel_tasks(conn, job_id, now, changes)
        changes.event(job_id, "job_cancelled", reason, data={"cancelled_tasks": n})

    def _cancel_tasks(self, conn: Connection, job_id: str, now: float, changes: Changes) -> int:
        # The moves recorded so far first: the counters then hold exactly the tasks this
        # update finds open (it has locked them), and all of those become cancelled.
        self._apply_moves(conn, changes)
        n = conn.execute(
            sa.update(tasks)
            .where(tasks.c.job_key == self._key(conn, job_id), tasks.c.status.in_(OPEN_TASK))
            .values(status=TaskStatus.cancelled, finished_at=now, lease_until=None)
        ).rowcount
        s = job_stages.c
        conn.execute(
            sa.update(job_stages)
            .where(s.job_id == job_id, (s.queued > 0) | (s.running > 0))
            .values(cancelled=s.cancelled + s.queued + s.running, queued=0, running=0)
        )
        return int(n)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (attempt - 1))
        return float(delay * random.uniform(0.8, 1.2))  # jitter spreads retries of a failed batch

    def _execute(
        self, conn: Connection, changes: Changes, template: Template, params: dict[str, Any]
    ) -> None:
        """Run a write now (SQLite), or with the transaction's last statement (PostgreSQL).

        Only for writes nothing reads back before :meth:`_record` and that touch no row
        another deferred write touches (the new stage's tasks and counters, the job's
        stage): PostgreSQL runs the WITH queries of one statement on one snapshot.
        """
        if self.postgres:
            changes.deferred.append((template, params))
        else:
            conn.execute(_template(template), _values(params))

    def _moves(self, changes: Changes) -> list[Write]:
        """The counter updates of the recorded moves (which are then forgotten)."""
        writes: list[Write] = []
        # Sorted: transactions touching several stages lock their rows in one order.
        for (job_id, stage_index), counts in sorted(changes.moves.items()):
            values = {
                (TaskStatus.queued.value if key == TaskStatus.pending else str(key)): n
                for key, n in counts.items()
                if n
            }
            if values:
                names = tuple(sorted(values))
                key = {"job_id": job_id, "stage_index": stage_index}
                writes.append((("moves", *names), {**key, **values}))
        changes.moves.clear()
        return writes

    def _apply_moves(self, conn: Connection, changes: Changes) -> None:
        for template, params in self._moves(changes):
            conn.execute(_template(template), _values(params))

    def _record(self, conn: Connection, changes: Changes) -> None:
        """Write what the transaction recorded: counter moves, then events.

        On PostgreSQL everything goes in one statement, with the dispatcher's
        notifications (which PostgreSQL delivers at commit): see :func:`_pg_record_sql`.
        """
        if self.postgres:
            self._pg_record(conn, changes)
            return
        self._apply_moves(conn, changes)
        if changes.events:
            now = time.time()
            keys = {j: self._key(conn, j) for j in {e["job_id"] for e in changes.events}}
            rows = [{**e, "job_key": keys[e["job_id"]], "at": now} for e in changes.events]
            changes.events = []
            conn.execute(sa.insert(job_events), rows)

    def _pg_record(self, conn: Connection, changes: Changes) -> None:
        """PostgreSQL: the deferred writes, counter moves, events and notifications at once.

        One round trip whatever was recorded: a claim, a completion that starts the next
        stage, a failure. The statement's text depends only on which writes there are,
        and is built once for each such shape; only the values change.
        """
        writes = [*changes.deferred, *self._moves(changes)]
        changes.deferred.clear()
        params: dict[str, Any] = {}
        for i, (_, values) in enumerate(writes):
            params.update(_values(values, f"w{i}_"))
        if changes.events:
            now = time.time()
            events, changes.events = changes.events, []
            keys = {j: self._key(conn, j) for j in {e["job_id"] for e in events}}
            columns: dict[str, Any] = {name: [] for name in _EVENT_VARYING}
            for e in events:
                columns["job_key"].append(keys[e["job_id"]])
                columns["task_id"].append(e["task_id"])
                columns["kind"].append(e["kind"])
                columns["message"].append(e["message"])
                columns["data"].append(None if e["data"] is None else json.dumps(e["data"]))
            columns["at"] = now
            params.update(_values(columns, "e_"))
        notifications: list[tuple[str, str]] = []
        notify = getattr(self.dispatcher, "notifications", None)
        if changes.runnable and notify is not None:
            notifications = notify(changes.runnable)
            changes.runnable = []  # sent at commit: nothing left for dispatch()
            for i, (channel, payload) in enumerate(notifications):
                params[f"n{i}_channel"], params[f"n{i}_payload"] = channel, payload
        if not (writes or "e_v_kind" in params or notifications):
            return
        sql = _pg_record_sql(tuple(t for t, _ in writes), "e_v_kind" in params, len(notifications))
        conn.exec_driver_sql(sql, params)


def _started(rows: list[Any], worker_id: str) -> tuple[str, str | None]:
    """The message and task of the one ``task_started`` event of a job's claimed tasks.

    One task (a slow stage claims one at a time): its id and attempt, as each task's
    start was logged before. A batch of fast tasks: how many, of which stage, on which
    worker. A million-task fan-out logs its starts in about 31,000 events, not a million.
    """
    if len(rows) == 1:
        return f"attempt {rows[0].attempt} on {worker_id}", rows[0].task_id
    retried = sum(1 for r in rows if r.attempt > 1)
    again = f" ({retried} retried)" if retried else ""
    return f"{len(rows)} tasks of {rows[0].stage}{again} on {worker_id}", None


def _param(column: sa.Column[Any]) -> sa.BindParameter[Any]:
    """``v_<column>``: SQLAlchemy keeps the columns' own names for VALUES and SET."""
    return sa.bindparam(f"v_{column.name}", type_=column.type)


def _unnest_insert(
    table: sa.Table, columns: Sequence[str], varying: Sequence[str] | None = None
) -> sa.Insert:
    """PostgreSQL: ``INSERT INTO table (columns) SELECT ... FROM unnest(<arrays>)``.

    One array parameter (``v_<column>``) for each ``varying`` column (default: all), one
    value for each of the others, whatever the number of rows: the statement has one
    shape. JSON values go in as JSON text.
    """
    varying = list(columns if varying is None else varying)
    arrays = []
    for name in varying:
        kind = table.c[name].type
        element = sa.Text() if isinstance(kind, sa.JSON) else kind
        target = JSONB() if isinstance(kind, sa.JSON) else kind
        bound = sa.bindparam(f"v_{name}", type_=ARRAY(element))
        arrays.append(sa.cast(bound, ARRAY(target)))
    source = sa.func.unnest(*arrays).table_valued(*varying).render_derived()
    values = [source.c[n] if n in varying else _param(table.c[n]) for n in columns]
    return sa.insert(table).from_select(list(columns), sa.select(*values))


_COUNTERS = ("queued", "running", "succeeded", "failed", "cancelled", "attempts")


def _values(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A write's values (by column name) as its template's parameters."""
    return {f"{prefix}v_{name}": value for name, value in params.items()}


@functools.cache
def _template(template: Template) -> sa.Insert | sa.Update:
    """The parameterized write ``template`` names, built once (its cache key memoized).

    ``("stage",)``: a new stage's counters; ``("job_stage",)``: the job's current
    stage; ``("moves", *counters)``: counters of a stage moved by the given amounts;
    ``("tasks",)`` (PostgreSQL): a stage's tasks, one array per column.
    """
    kind = template[0]
    s = job_stages.c
    if kind == "stage":
        return sa.insert(job_stages).values({c.name: _param(c) for c in job_stages.c})
    if kind == "job_stage":
        return (
            sa.update(jobs)
            .where(jobs.c.job_id == _param(jobs.c.job_id))
            .values(
                {
                    c.name: _param(c)
                    for c in (jobs.c.stage_index, jobs.c.stage, jobs.c.remaining, jobs.c.updated_at)
                }
            )
        )
    if kind == "moves":
        return (
            sa.update(job_stages)
            .where(s.job_id == _param(s.job_id), s.stage_index == _param(s.stage_index))
            .values({s[name]: s[name] + _param(s[name]) for name in template[1:]})
        )
    if kind == "tasks":
        return _unnest_insert(tasks, _TASK_COLUMNS, varying=("task_id", "idx", "item"))
    raise ValueError(f"no write template {template!r}")


_S = job_stages.c
# Statements run for every completion, built once (SQLAlchemy memoizes their cache key).
# The fan-in: a stage's counters moved by a batch of successes.
_FAN_IN = (
    sa.update(job_stages)
    .where(_S.job_id == _param(_S.job_id), _S.stage_index == _param(_S.stage_index))
    .values(
        running=_S.running - sa.bindparam("v_n", type_=sa.Integer),
        succeeded=_S.succeeded + sa.bindparam("v_n", type_=sa.Integer),
    )
    .returning(_S.total, _S.succeeded)
)
# PostgreSQL: with the job's row (SQLite's RETURNING names only the updated table). Not
# locked, as the separate read SQLite makes is not: a transaction that changes a running
# job's status or stage also needs the task rows this batch holds.
_FAN_IN_JOB = _FAN_IN.where(jobs.c.job_id == _S.job_id).returning(
    jobs.c.job_key,
    jobs.c.workflow,
    jobs.c.params,
    jobs.c.status,
    jobs.c.stage_index.label("job_stage"),
)
# With the statement that records a batch of one stage (JobStore._complete_statement):
# counts only the accepted tasks of that stage; one row per accepted task.
_FAN_IN_WITH = (
    "WITH done AS ({done}), "
    "fan AS (UPDATE job_stages SET running = job_stages.running - n.n, "
    "succeeded = job_stages.succeeded + n.n "
    "FROM jobs, (SELECT count(*) AS n FROM done, jobs AS j "
    "WHERE j.job_key = done.job_key AND j.job_id = %s AND done.stage_index = %s) AS n "
    "WHERE job_stages.job_id = jobs.job_id AND jobs.job_id = %s AND job_stages.stage_index = %s "
    "RETURNING job_stages.total, job_stages.succeeded, jobs.workflow, jobs.params, "
    "jobs.status, jobs.stage_index AS job_stage) "
    "SELECT done.task_id, done.attempt, done.job_key, done.stage_index, fan.total, "
    "fan.succeeded, fan.workflow, fan.params, fan.status, fan.job_stage "
    "FROM done LEFT JOIN fan ON true"
)
_JOB_ROW = sa.select(jobs).where(jobs.c.job_id == _param(jobs.c.job_id))

_PG_DIALECT = postgresql_psycopg.dialect()  # type: ignore[no-untyped-call]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _pg_text(statement: sa.Insert | sa.Update, prefix: str) -> str:
    """``statement`` as PostgreSQL text, its ``%(name)s`` parameters renamed ``prefix_name``."""
    return _PLACEHOLDER.sub(rf"%({prefix}_\1)s", str(statement.compile(dialect=_PG_DIALECT)))


@functools.cache
def _pg_record_sql(writes: tuple[Template, ...], events: bool, notifications: int) -> str:
    """The statement that records a transaction's changes on PostgreSQL.

    ``WITH w0 AS (<write>), ..., e AS (<events>) SELECT pg_notify(...), ...``: the writes
    and the events' ``INSERT`` are data-modifying WITH queries (always run, on the
    statement's snapshot); the SELECT sends the notifications. Parameters are named
    ``w<i>_v_<name>`` (the i-th write), ``e_v_<column>`` (event arrays) and
    ``n<i>_channel``/``n<i>_payload``.
    """
    parts = [f"w{i} AS ({_pg_text(_template(t), f'w{i}')})" for i, t in enumerate(writes)]
    if events:
        insert = _unnest_insert(job_events, _EVENT_COLUMNS, _EVENT_VARYING)
        parts.append(f"e AS ({_pg_text(insert, 'e')})")
    sends = [f"pg_notify(%(n{i}_channel)s, %(n{i}_payload)s)" for i in range(notifications)]
    head = f"WITH {', '.join(parts)} " if parts else ""
    return f"{head}SELECT {', '.join(sends) or '1'}"


def _with_job_id(query: sa.Select[Any]) -> sa.Select[Any]:
    """``query`` on tasks, with each task's job id (``job_id``) joined in."""
    return query.add_columns(jobs.c.job_id).join_from(
        tasks, jobs, jobs.c.job_key == tasks.c.job_key
    )


def _user_error(exc: Exception, stage: str | None, step: str) -> JobError:
    kind = "input_error" if isinstance(exc, InputError) else f"{step}_error"
    message = str(exc) if isinstance(exc, GeoEtlError) else f"{type(exc).__name__}: {exc}"
    return JobError(message=message, kind=kind, stage=stage)


def _load_stage_result(conn: Connection, job_id: str, wf: Workflow, name: str) -> Any:
    index = wf.stage_names().index(name)
    values = list(
        conn.execute(
            sa.select(tasks.c.result)
            .where(
                tasks.c.job_key == key_of(job_id),
                tasks.c.stage_index == index,
                tasks.c.status == TaskStatus.succeeded,
            )
            .order_by(tasks.c.idx)
        ).scalars()
    )
    if wf.stages[index].plan is None:
        return values[0] if values else None
    return values


def _results_in(
    conn: Connection,
    job_id: str,
    wf: Workflow,
    upto: int,
    known: dict[int, Any] | None = None,
) -> StageResults:
    names = wf.stage_names()

    def load(name: str) -> Any:
        index = names.index(name)
        if known and index in known and wf.stages[index].plan is None:
            return known[index]  # a single task's result, recorded in this transaction
        return _load_stage_result(conn, job_id, wf, name)

    return StageResults(load, names[:upto])
