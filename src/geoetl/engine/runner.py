"""Runs claimed tasks: handler call, heartbeats, completion batching, retries."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel

from geoetl.engine.context import TaskContext
from geoetl.engine.models import ClaimedTask, Completion, JobStatus
from geoetl.engine.waker import Waker
from geoetl.engine.workflow import StageResults, Workflow, to_json, validate_params
from geoetl.errors import InputError, StaleAttempt, TaskCancelled, TransientError
from geoetl.platform import Platform

log = logging.getLogger(__name__)

Key = tuple[str, int]
TERMINAL = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}

# Tasks faster than this are claimed in growing batches (up to MAX_BATCH) to cut
# round trips; slower ones one at a time so other workers can share the stage.
FAST_TASK_SECONDS = 0.05
MAX_BATCH = 32
FLUSH_SECONDS = 0.2
MIN_IDLE = 0.002


class Heartbeat:
    """One thread per runner: renews the leases of every held task, sends progress."""

    def __init__(self, platform: Platform, interval: float) -> None:
        self.store = platform.store
        self.interval = interval
        self._held: dict[Key, TaskContext | None] = {}
        self._job_of: dict[Key, str] = {}  # for the log: whose job a lost task was
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

    def lost(self, key: Key) -> bool:
        """True when the lease of ``key`` was lost (cancelled, or taken over)."""
        with self._lock:
            return key not in self._held

    def beat(self, renew: bool) -> None:
        """Send progress and, when ``renew``, renew every lease; lost tasks are cancelled."""
        with self._lock:
            held = dict(self._held)
        progress = {k: p for k, c in held.items() if c is not None and (p := c.take_progress())}
        if not held or not (renew or progress):
            return
        keys = list(held) if renew else list(progress)
        lost = self.store.heartbeat(keys, progress)
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
            level, message = _stopped(self.store.job_status(job_id), "stopping")
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
            except Exception:
                log.exception("heartbeat failed; retrying next tick")
                continue
            if renew:
                last_renew = time.monotonic()


class Runner:
    """Claims tasks and runs them; one per worker process (or per ``--wait`` call)."""

    def __init__(
        self,
        platform: Platform,
        worker_id: str,
        *,
        queues: list[str] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.platform = platform
        self.store = platform.store
        self.worker_id = worker_id
        self.queues = queues
        self.max_batch = max_batch
        self.batch = 1
        self.heartbeat = Heartbeat(platform, platform.settings.heartbeat_interval)
        self._jobs: OrderedDict[str, tuple[Workflow, BaseModel]] = OrderedDict()
        self._ended_jobs: set[str] = set()

    def close(self) -> None:
        """Stop the heartbeat thread."""
        self.heartbeat.stop()

    def run_once(self, job_id: str | None = None) -> int:
        """Claim a batch and run it; returns how many tasks were claimed."""
        claimed = self.store.claim(self.worker_id, self.batch, queues=self.queues, job_id=job_id)
        if not claimed:
            return 0
        keys = [(t.task_id, t.attempt) for t in claimed]
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
                done = self._execute(task, pending)
                if done is not None:
                    pending.append(done)
                if time.monotonic() - last_flush >= FLUSH_SECONDS:
                    self._flush(pending)
                    last_flush = time.monotonic()
            self._flush(pending)
        finally:
            self.heartbeat.release(keys)
        per_task = (time.monotonic() - started) / len(claimed)
        self.batch = min(self.batch * 2, self.max_batch) if per_task < FAST_TASK_SECONDS else 1
        return len(claimed)

    def serve(self, stop: threading.Event, waker: Waker) -> None:
        """Run tasks until ``stop`` is set, waiting on ``waker`` when there is no work."""
        idle = MIN_IDLE
        while not stop.is_set():
            if self.run_once():
                idle = MIN_IDLE
                continue
            waker.wait(idle)
            idle = min(idle * 2, waker.max_idle)

    def run_job(self, job_id: str, stop: threading.Event | None = None) -> JobStatus:
        """Work on one job's tasks until the job ends (other workers may help)."""
        idle = MIN_IDLE
        while stop is None or not stop.is_set():
            if self.run_once(job_id=job_id):
                idle = MIN_IDLE
                continue
            status = self.store.job_status(job_id)
            if status in TERMINAL:
                return status
            time.sleep(idle)
            idle = min(idle * 2, 0.1)
        return self.store.job_status(job_id)

    # -- internals ------------------------------------------------------------------------

    def _flush(self, pending: list[Completion]) -> None:
        if pending:
            # Released first: once recorded they are not running, and the heartbeat
            # must not take them for lost leases.
            self.heartbeat.release([(c.task_id, c.attempt) for c in pending])
            self.store.complete(pending)
            pending.clear()

    def _job(self, job_id: str) -> tuple[Workflow, BaseModel]:
        if job_id not in self._jobs:
            workflow_name, params = self.store.job_spec(job_id)
            wf = self.store.workflows.get(workflow_name)
            self._jobs[job_id] = (wf, validate_params(wf, params))
            while len(self._jobs) > 64:
                self._jobs.popitem(last=False)
        return self._jobs[job_id]

    def _execute(self, task: ClaimedTask, pending: list[Completion]) -> Completion | None:
        wf, params = self._job(task.job_id)
        stage = wf.stages[task.stage_index]
        results = StageResults(
            lambda name: self.store.load_stage_result(task.job_id, wf, name),
            wf.stage_names()[: task.stage_index],
        )
        ctx = TaskContext(
            platform=self.platform,
            task=task,
            workflow=wf.name,
            results=results,
            scratch_root=self.platform.settings.scratch_dir,
        )
        key = (task.task_id, task.attempt)
        self.heartbeat.attach(key, ctx)
        try:
            value = stage.handler(params, ctx)
            ctx.raise_if_cancelled()
            return Completion(task.task_id, task.attempt, to_json(value))
        except (TaskCancelled, StaleAttempt):
            # Cancelled, or the lease was lost (a checkpoint found the attempt stale):
            # nothing of this attempt is recorded, and there is nothing to retry here.
            ctx.log.log(*_stopped(self.store.job_status(task.job_id), "stopped"))
        except InputError as exc:
            self._fail(ctx, pending, "input_error", str(exc), retryable=False)
        except TransientError as exc:
            self._fail(ctx, pending, "transient_error", str(exc), retryable=True)
        except Exception as exc:
            if ctx.cancelled.is_set():  # what a handler raised when stopped midway (GDAL)
                ctx.log.log(*_stopped(self.store.job_status(task.job_id), "stopped"))
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
        error: dict[str, Any] = {"kind": kind, "message": message, "worker": self.worker_id}
        if detail:
            error["traceback"] = detail
        self.heartbeat.release([(ctx.task_id, ctx.attempt)])
        status = self.store.fail(ctx.task_id, ctx.attempt, error, retryable=retryable)
        if status == "failed":
            # The job failed and its other tasks were cancelled: skip them in this batch.
            self._ended_jobs.add(ctx.job_id)
        ctx.log.warning("%s (%s): %s -> %s", kind, ctx.task.stage, message, status)


def _stopped(status: JobStatus, verb: str) -> tuple[int, str]:
    """The log level and line for tasks that stop because their attempt is gone.

    A job that ended (cancelled, or failed in another task) is routine: INFO. A job that
    still runs means the lease expired under a task that was still working: WARNING.
    """
    if status in TERMINAL:
        return logging.INFO, f"{verb}: the job is {status.value}"
    return logging.WARNING, f"{verb}: the lease was lost (it expired; the task runs again)"
