"""Runs claimed tasks: handler call, heartbeats, completion batching, retries."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from geoetl.engine.context import TaskContext
from geoetl.engine.db import Outage, describe, is_transient, retry_transient
from geoetl.engine.models import ClaimedTask, Completion, JobStatus
from geoetl.engine.store import JobStore
from geoetl.engine.waker import Waker
from geoetl.engine.workflow import StageResults, Workflow, to_json, validate_params
from geoetl.errors import InputError, StaleAttempt, TaskCancelled, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, int]
TERMINAL = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}
SETTLED = {*TERMINAL, JobStatus.awaiting_approval}
"""Where :meth:`Runner.run_job` stops: the job ended, or waits for a person."""

# Tasks faster than this are claimed in growing batches (up to MAX_BATCH) to cut
# round trips; slower ones one at a time so other workers can share the stage.
FAST_TASK_SECONDS = 0.05
MAX_BATCH = 32
# How many stages' speeds a runner remembers (see Runner._keep).
KNOWN_STAGES = 256
FLUSH_SECONDS = 0.2
MIN_IDLE = 0.002


class Heartbeat:
    """One thread per runner: renews the leases of every held task, sends progress."""

    def __init__(self, store: JobStore, interval: float, name: str = "") -> None:
        self.store = store
        self.interval = interval
        self._held: dict[Key, TaskContext | None] = {}
        self._job_of: dict[Key, str] = {}  # for the log: whose job a lost task was
        # Tasks whose end is being recorded: still renewed (a database outage may hold
        # their record back for a while) but never reported lost (the record ends them).
        self._finishing: set[Key] = set()
        self._outage = Outage(f"{name}: heartbeat" if name else "heartbeat", log)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="geoetl-heartbeat", daemon=True)
        self._thread.start()

    def hold(self, tasks: list[ClaimedTask]) -> None:
        """Start renewing the leases of these claimed tasks."""
        with self._lock:
            for task in tasks:
                key = (task.task_id, task.attempt)
                self._held[key] = None
                self._job_of[key] = task.job_id

    def attach(self, key: Key, ctx: TaskContext | None) -> None:
        """The context of a task that started running (for progress and cancellation)."""
        with self._lock:
            if key in self._held:
                self._held[key] = ctx

    def release(self, keys: list[Key]) -> None:
        """Stop renewing these leases."""
        with self._lock:
            for key in keys:
                self._held.pop(key, None)
                self._job_of.pop(key, None)
                self._finishing.discard(key)

    def finishing(self, keys: list[Key]) -> None:
        """These tasks ended: keep their leases until their end is recorded, then release."""
        with self._lock:
            for key in keys:
                if key in self._held:
                    del self._held[key]
                    self._finishing.add(key)
                self._job_of.pop(key, None)

    def lost(self, key: Key) -> bool:
        """True when the lease of ``key`` was lost (cancelled, or taken over)."""
        with self._lock:
            return key not in self._held

    def beat(self, renew: bool) -> None:
        """Send progress and, when ``renew``, renew every lease; lost tasks are cancelled."""
        with self._lock:
            held = dict(self._held)
            finishing = set(self._finishing)
        progress = {k: p for k, c in held.items() if c is not None and (p := c.take_progress())}
        if not (held or finishing) or not (renew or progress):
            return
        keys = list(held) if renew else list(progress)
        # A failure here (the database is away) only delays the renewal: the leases stay
        # ours unless they expire meanwhile, which the next renewal finds out.
        lost = self.store.heartbeat(keys, progress, finishing=list(finishing) if renew else [])
        if not lost:
            return
        jobs: dict[str, list[str]] = {}
        with self._lock:
            # The runner releases a task before recording its end, so a task released
            # meanwhile finished (or failed) here: it did not lose its lease.
            for key in sorted(k for k in lost if k in self._held):
                ctx = self._held.pop(key)
                if ctx is not None:
                    ctx.cancelled.set()
                jobs.setdefault(self._job_of.pop(key), []).append(key[0])
        for job_id, task_ids in jobs.items():
            status = retry_transient(partial(self.store.job_status, job_id), what="heartbeat")
            level, message = _stopped(status, "stopping")
            log.log(level, "[job %s task(s) %s] %s", job_id[:12], ", ".join(task_ids), message)

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        last_renew = time.monotonic()
        tick = min(1.0, self.interval)
        while not self._stop.wait(tick):
            renew = time.monotonic() - last_renew >= self.interval
            try:
                self.beat(renew)
            except Exception as exc:
                if is_transient(exc):
                    self._outage.failed(exc)
                else:
                    log.exception("heartbeat failed; retrying next tick")
                continue
            self._outage.ended()
            if renew:
                last_renew = time.monotonic()


class Runner:
    """Claims tasks and runs them; one per worker process (or per ``--wait`` call).

    Its dependencies come in explicitly: the job store; ``services``, handed to every
    handler as ``ctx.platform`` (the engine never looks inside); the folder under which
    each task gets its scratch space; how often leases are renewed (default a third of
    the store's lease). ``on_close`` runs after :meth:`close` stopped the heartbeat
    (e.g. to close the services built for this runner).
    """

    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        *,
        services: Any = None,
        scratch_root: Path,
        heartbeat_interval: float | None = None,
        queues: Sequence[str] | None = None,
        max_batch: int = MAX_BATCH,
        on_close: Callable[[], None] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        # Error messages are shown to users: ``redact`` takes the machine's paths out.
        self.redact = redact or (lambda text: text)
        self.services = services
        self.scratch_root = scratch_root
        self.worker_id = worker_id
        self.queues = list(queues) if queues else None
        self.max_batch = max_batch
        self.batch = 1
        self._on_close = on_close
        self.heartbeat = Heartbeat(
            store, heartbeat_interval or store.lease_seconds / 3.0, f"worker {worker_id}"
        )
        self._jobs: OrderedDict[str, tuple[Workflow, BaseModel]] = OrderedDict()
        self._ended_jobs: set[str] = set()
        self._stop: threading.Event | None = None
        self._job_of: dict[str, str] = {}  # task id -> job id, of the batch being run
        # (workflow, stage) -> its last task here took under FAST_TASK_SECONDS.
        self._fast: OrderedDict[tuple[str, str], bool] = OrderedDict()

    def close(self) -> None:
        """Stop the heartbeat thread (then run ``on_close``)."""
        self.heartbeat.stop()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def run_once(self, job_id: str | None = None, *, task_ids: Sequence[str] | None = None) -> int:
        """Claim a batch and run it; returns how many tasks were claimed.

        ``task_ids``: exactly these tasks, those of them still queued and available (a
        dispatcher's message named them); the others yield nothing.
        """
        if task_ids is not None and not task_ids:
            return 0
        limit = len(task_ids) if task_ids is not None else self.batch
        # A claim whose commit was lost in an outage leaves tasks no worker holds: their
        # leases run out and lease expiry re-queues them.
        claimed = retry_transient(
            lambda: self.store.claim(
                self.worker_id, limit, queues=self.queues, job_id=job_id, task_ids=task_ids
            ),
            what=f"worker {self.worker_id}: claiming tasks",
            stop=self._stop,
            logger=log,
        )
        if not claimed:
            return 0
        if task_ids is None:
            claimed = self._keep(claimed)
        keys = [(t.task_id, t.attempt) for t in claimed]
        self._job_of = {t.task_id: t.job_id for t in claimed}
        self.heartbeat.hold(claimed)
        started = last_flush = time.monotonic()
        pending: list[Completion] = []
        self._ended_jobs = set()
        try:
            for task in claimed:
                key = (task.task_id, task.attempt)
                if self.heartbeat.lost(key):
                    continue
                if task.job_id in self._ended_jobs:
                    self.heartbeat.release([key])  # cancelled with its failed job
                    continue
                begun = time.monotonic()
                done = self._execute(task, pending)
                self._learn(task, time.monotonic() - begun)
                if done is not None:
                    pending.append(done)
                if time.monotonic() - last_flush >= FLUSH_SECONDS:
                    self._flush(pending)
                    last_flush = time.monotonic()
            self._flush(pending)
        finally:
            self.heartbeat.release(keys)
        if task_ids is not None:
            return len(claimed)  # the dispatcher chose this batch: nothing to learn here
        per_task = (time.monotonic() - started) / len(claimed)
        self.batch = min(self.batch * 2, self.max_batch) if per_task < FAST_TASK_SECONDS else 1
        return len(claimed)

    def serve(self, stop: threading.Event, waker: Waker) -> None:
        """Run tasks until ``stop`` is set, waiting on ``waker`` when there is no work."""
        self._stop = stop
        idle = MIN_IDLE
        while not stop.is_set():
            try:
                claimed = self.run_once()
            except Exception as exc:
                if stop.is_set() and is_transient(exc):
                    break  # asked to stop while waiting for the database: nothing was claimed
                raise
            if claimed:
                idle = MIN_IDLE
                continue
            waker.wait(idle)
            idle = min(idle * 2, waker.max_idle)

    def run_job(self, job_id: str, stop: threading.Event | None = None) -> JobStatus:
        """Work on one job's tasks until the job ends or awaits approval (others may help)."""
        self._stop = stop
        idle = MIN_IDLE
        while stop is None or not stop.is_set():
            if self.run_once(job_id=job_id):
                idle = MIN_IDLE
                continue
            status = self._db(lambda: self.store.job_status(job_id), f"job {job_id[:12]}")
            if status in SETTLED:
                return status
            time.sleep(idle)
            idle = min(idle * 2, 0.1)
        return self._db(lambda: self.store.job_status(job_id), f"job {job_id[:12]}")

    # -- internals ------------------------------------------------------------------------

    def _db(self, op: Callable[[], T], what: str) -> T:
        """``op()`` retried until the database answers: the handler's work is kept."""
        return retry_transient(op, what=f"worker {self.worker_id}: {what}", logger=log)

    def _keep(self, claimed: list[ClaimedTask]) -> list[ClaimedTask]:
        """The claimed tasks to run here; the others are given back to the queue.

        A batch grows while tasks run fast, so the batch claimed after fast stages may
        hold the tasks of a slow one: a runner that kept them all would run them one
        after the other while other workers wait. Kept: the first task, and those of
        stages whose last task here was fast; the others go back for other workers
        (and this runner, next time). A task that cannot be given back (its lease was
        lost meanwhile) is dropped here, as a lost task is.
        """
        keep = claimed[:1]
        back: list[ClaimedTask] = []
        for task in claimed[1:]:
            (keep if self._fast.get(self._stage_key(task)) else back).append(task)
        if back:
            given = [(t.task_id, t.attempt) for t in back]
            self._db(
                lambda: self.store.give_back(self.worker_id, given),
                f"[job {back[0].job_id[:12]}] giving back {len(back)} unstarted task(s)",
            )
        return keep

    def _stage_key(self, task: ClaimedTask) -> tuple[str, str]:
        return self._job(task.job_id)[0].name, task.stage

    def _learn(self, task: ClaimedTask, seconds: float) -> None:
        """Remember whether ``task``'s stage ran fast here (for :meth:`_keep`)."""
        key = self._stage_key(task)
        self._fast[key] = seconds < FAST_TASK_SECONDS
        self._fast.move_to_end(key)
        while len(self._fast) > KNOWN_STAGES:
            self._fast.popitem(last=False)

    def _flush(self, pending: list[Completion]) -> None:
        if pending:
            # Once recorded they are not running: the heartbeat must not take them for
            # lost leases. It keeps renewing them until then, however long that takes.
            keys = [(c.task_id, c.attempt) for c in pending]
            self.heartbeat.finishing(keys)
            # Retried until the database is back: a completion is never dropped. One whose
            # commit was lost mid-outage is rejected as stale on the retry (its attempt is
            # no longer running), so a task's success is never recorded twice.
            batch = list(pending)
            try:
                self._db(lambda: self.store.complete(batch), self._describe(batch))
            finally:
                self.heartbeat.release(keys)
            pending.clear()

    def _job(self, job_id: str) -> tuple[Workflow, BaseModel]:
        if job_id not in self._jobs:
            workflow_name, params = self._db(
                lambda: self.store.job_spec(job_id), f"loading job {job_id[:12]}"
            )
            wf = self.store.workflows.get(workflow_name)
            self._jobs[job_id] = (wf, validate_params(wf, params))
            while len(self._jobs) > 64:
                self._jobs.popitem(last=False)
        return self._jobs[job_id]

    def _execute(self, task: ClaimedTask, pending: list[Completion]) -> Completion | None:
        wf, params = self._job(task.job_id)
        stage = wf.stages[task.stage_index]
        results = StageResults(
            lambda name: self._db(
                lambda: self.store.load_stage_result(task.job_id, wf, name),
                f"[job {task.job_id[:12]} task {task.task_id}] loading stage {name!r}",
            ),
            wf.stage_names()[: task.stage_index],
        )
        ctx = TaskContext(
            platform=self.services,
            store=self.store,
            task=task,
            workflow=wf.name,
            results=results,
            scratch_root=self.scratch_root,
        )
        key = (task.task_id, task.attempt)
        self.heartbeat.attach(key, ctx)
        try:
            value = stage.handler(params, ctx)
            ctx.raise_if_cancelled()
            where = (task.job_id, task.stage_index)
            return Completion(task.task_id, task.attempt, to_json(value), where)
        except (TaskCancelled, StaleAttempt):
            # Cancelled, or the lease was lost (a checkpoint found the attempt stale):
            # nothing of this attempt is recorded, and there is nothing to retry here.
            ctx.log.log(*_stopped(self._status(task.job_id), "stopped"))
        except InputError as exc:
            self._fail(ctx, pending, "input_error", str(exc), retryable=False)
        except TransientError as exc:
            self._fail(ctx, pending, "transient_error", str(exc), retryable=True)
        except Exception as exc:
            if ctx.cancelled.is_set():  # what a handler raised when stopped midway (GDAL)
                ctx.log.log(*_stopped(self._status(task.job_id), "stopped"))
                return None
            if is_transient(exc):
                # The handler's own database call (a checkpoint) met an outage: a
                # retryable fault of this attempt, not a bug worth a traceback.
                message = f"the database was unavailable: {describe(exc)}"
                self._fail(ctx, pending, "database_unavailable", message, retryable=True)
                return None
            detail = traceback.format_exc(limit=8)
            ctx.log.error("unexpected error: %s\n%s", exc, detail)
            message = f"{type(exc).__name__}: {exc}"
            self._fail(ctx, pending, "unexpected_error", message, retryable=True, detail=detail)
        finally:
            self.heartbeat.attach(key, None)
            ctx.cleanup()
        return None

    def _fail(
        self,
        ctx: TaskContext,
        pending: list[Completion],
        kind: str,
        message: str,
        *,
        retryable: bool,
        detail: str | None = None,
    ) -> None:
        # Earlier completions of this batch commit first, keeping the job's order of events.
        self._flush(pending)
        message = self.redact(message)
        error: dict[str, Any] = {"kind": kind, "message": message, "worker": self.worker_id}
        if detail:
            error["traceback"] = self.redact(detail)
        key = (ctx.task_id, ctx.attempt)
        self.heartbeat.finishing([key])
        try:
            status = self._db(
                lambda: self.store.fail(ctx.task_id, ctx.attempt, error, retryable=retryable),
                f"[job {ctx.job_id[:12]} task {ctx.task_id}] recording a failed attempt",
            )
        finally:
            self.heartbeat.release([key])
        if status == "failed":
            # The job failed and its other tasks were cancelled: skip them in this batch.
            self._ended_jobs.add(ctx.job_id)
        ctx.log.warning("%s (%s): %s -> %s", kind, ctx.task.stage, message, status)

    def _status(self, job_id: str) -> JobStatus:
        return self._db(lambda: self.store.job_status(job_id), f"job {job_id[:12]}")

    def _describe(self, batch: list[Completion]) -> str:
        """For the log: which tasks of which jobs a completion batch records."""
        jobs = sorted({self._job_of.get(c.task_id, "?")[:12] for c in batch})
        shown = ", ".join(c.task_id for c in batch[:3])
        more = f" and {len(batch) - 3} more" if len(batch) > 3 else ""
        return f"[job {', '.join(jobs)}] recording {len(batch)} finished task(s): {shown}{more}"


def _stopped(status: JobStatus, verb: str) -> tuple[int, str]:
    """The log level and line for tasks that stop because their attempt is gone.

    A job that ended (cancelled, or failed in another task) is routine: INFO. A job that
    still runs means the lease expired under a task that was still working: WARNING.
    """
    if status in TERMINAL:
        return logging.INFO, f"{verb}: the job is {status.value}"
    return logging.WARNING, f"{verb}: the lease was lost (it expired; the task runs again)"
