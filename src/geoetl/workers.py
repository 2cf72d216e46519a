"""geoetl's workers, assembled from settings: runners, the janitor, the local process pool.

The engine (``geoetl.engine``) knows nothing of geoetl's settings, platform or object
store. This module, above it, builds the engine's pieces from them: the job store's
dispatcher for the configured executor, a :class:`Runner` whose handlers get the
:class:`Platform` as ``ctx.platform``, a :class:`Janitor` that also cleans the object
store, and local worker processes that each build their own platform.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing as mp
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from geoetl.engine.db import is_postgres, retry_transient
from geoetl.engine.dispatch import Dispatcher, NotifyDispatcher, PollingDispatcher
from geoetl.engine.janitor import Janitor
from geoetl.engine.runner import Runner
from geoetl.engine.waker import make_waker
from geoetl.engine.worker import (
    ORPHAN_GRACE_SECONDS,
    LeaseSweeper,
    ProcessPool,
    serve_runner,
    worker_id,
)
from geoetl.errors import NotFound
from geoetl.orphans import sweep_orphans
from geoetl.platform import Platform, preload_backends
from geoetl.settings import Settings

if TYPE_CHECKING:
    from geoetl.engine.store import JobStore

__all__ = [
    "JobHelpers",
    "WorkerPool",
    "make_dispatcher",
    "make_janitor",
    "make_runner",
    "open_runner",
    "run_worker",
    "worker_id",
]

log = logging.getLogger(__name__)

# An upload (tmp/uploads/) untouched this long was cut off when its server stopped.
STALE_UPLOAD_SECONDS = 24 * 3600
# The orphan sweep lists every object in silver/ and tmp/: once an hour is enough.
ORPHAN_SWEEP_SECONDS = 3600.0
ORPHAN_SWEEP_META = "orphan_sweep"
_JOB_ID = re.compile(r"[0-9a-f]{64}")


def make_dispatcher(settings: Settings, engine: Engine) -> Dispatcher:
    """How the job store tells workers of runnable tasks, for ``settings.executor``.

    local: PostgreSQL NOTIFY for LISTENing workers, nothing on SQLite (workers poll);
    celery: a broker message per task.
    """
    if settings.executor == "celery":
        from geoetl.celery_executor import CeleryDispatcher

        return CeleryDispatcher(settings)
    return NotifyDispatcher(engine) if is_postgres(engine) else PollingDispatcher()


def make_runner(
    platform: Platform,
    worker_id: str,
    queues: Sequence[str] | None = None,
    *,
    on_close: Callable[[], None] | None = None,
) -> Runner:
    """A runner on ``platform``'s job store whose handlers get ``platform``."""
    settings = platform.settings
    return Runner(
        platform.store,
        worker_id,
        services=platform,
        scratch_root=settings.scratch_dir,
        heartbeat_interval=settings.heartbeat_interval,
        queues=queues,
        on_close=on_close,
        redact=path_redactor(platform),
    )


def path_redactor(platform: Platform) -> Callable[[str], str]:
    """Task errors without this machine's paths: a stored file reads as its object key.

    ``/srv/geoetl-data/storage/bronze/ab…/x.tif`` → ``bronze/ab…/x.tif``; the scratch
    folder reads as ``scratch/``, the home as ``~home/``; secrets as the store redacts them.
    """
    settings = platform.settings
    swaps: list[tuple[str, str]] = []
    objects = platform.objects
    if objects.is_local:
        probe = "bronze/x"
        swaps.append((objects.gdal_path(probe)[: -len(probe)], ""))
    swaps.append((f"{settings.scratch_dir}/", "scratch/"))
    swaps.append((f"{settings.home}/", "~home/"))

    def redact(text: str) -> str:
        for path, shown in swaps:
            text = text.replace(path, shown)
        return objects.redact(text)

    return redact


def open_runner(settings: Settings, worker_id: str, queues: Sequence[str] | None = None) -> Runner:
    """A runner on a platform of its own; the runner's ``close()`` closes the platform too."""
    platform = Platform.from_settings(settings)
    try:
        return make_runner(platform, worker_id, queues, on_close=platform.close)
    except BaseException:
        platform.close()
        raise


def make_janitor(platform: Platform) -> Janitor:
    """The janitor of ``platform``: the engine's passes plus the object store's leftovers."""
    settings = platform.settings
    janitor = Janitor(
        platform.store,
        redispatch_after=settings.redispatch_after_seconds,
        event_retention_days=settings.event_retention_days,
        interval=settings.janitor_interval_seconds,
        lease_seconds=settings.lease_seconds,
        scratch_root=settings.scratch_dir,
    )
    janitor.housekeeping.append(lambda: clean_tmp_objects(platform, janitor.job_ended))

    def sweep() -> None:
        sweep_orphans_hourly(platform)

    janitor.housekeeping.append(sweep)

    def watch() -> None:
        from geoetl.landing import watch_once

        try:
            watch_once(platform, worker_id("janitor"))
        except Exception:  # a broken manifest or store is logged; the janitor goes on
            log.exception("landing-zone watcher failed")

    janitor.housekeeping.append(watch)
    return janitor


def sweep_orphans_hourly(platform: Platform, now: float | None = None) -> bool:
    """Run the orphan sweep (silver/ and tmp/, not bronze) unless one ran within the hour.

    The last sweep's time and totals are in the job store's meta (``orphan_sweep``), so
    every janitor of a deployment (``geoetl janitor``, each ``geoetl serve``) shares one
    hourly sweep. A failure is logged, never raised: the janitor's pass goes on. True
    when a sweep ran.
    """
    store = platform.store
    now = time.time() if now is None else now
    try:
        last = store.get_meta(ORPHAN_SWEEP_META)
        # abs(): a time far ahead (a clock set wrong once) must not stop the sweeps.
        if isinstance(last, dict) and abs(now - float(last.get("at") or 0)) < ORPHAN_SWEEP_SECONDS:
            return False
        # Taken before the sweep: another janitor's pass meanwhile skips it.
        store.set_meta(ORPHAN_SWEEP_META, {"at": now, "done": False})
        report = sweep_orphans(platform, dry_run=False, now=now)
        store.set_meta(
            ORPHAN_SWEEP_META,
            {
                "at": now,
                "done": True,
                "objects": len(report.objects),
                "bytes": report.bytes,
                "versions_discarded": len(report.versions_discarded),
                "tables_dropped": len(report.tables_dropped),
                "errors": len(report.errors),
            },
        )
        for error in report.errors:
            log.warning("janitor: orphan sweep: %s", error)
    except Exception:
        log.exception("janitor: the orphan sweep failed; the next one is in an hour")
    return True


def clean_tmp_objects(platform: Platform, job_ended: Callable[[str], bool]) -> None:
    """Delete the staged outputs (``tmp/{job_id}/``) of jobs that ended, and stale uploads."""
    # Failed or cancelled jobs never publish what they staged; succeeded ones moved it.
    objects = platform.objects
    prefixes = {key.split("/")[1] for key in objects.list("tmp")}
    # Only job folders: tmp/uploads/ holds ingests in flight.
    for job_id in sorted(p for p in prefixes if _JOB_ID.fullmatch(p)):
        if job_ended(job_id):
            objects.delete_prefix(f"tmp/{job_id}")
    if "uploads" in prefixes:
        clean_stale_uploads(platform)


def clean_stale_uploads(platform: Platform) -> None:
    """Delete uploads (``tmp/uploads/``) nobody wrote to for a day."""
    # An upload in flight is written to continually; one left a day was cut off by a
    # server that stopped mid-upload (a client that goes away is cleaned up at once).
    objects = platform.objects
    cutoff = time.time() - STALE_UPLOAD_SECONDS
    for key in objects.list("tmp/uploads"):
        try:
            if objects.modified(key) < cutoff:
                objects.delete(key)
                log.info("janitor: removed the abandoned upload %s", key)
        except NotFound:
            continue  # finished or dropped meanwhile


def run_worker(
    settings: Settings, name: str, queues: Sequence[str] | None, stop: threading.Event
) -> None:
    """Run one local worker in this process until ``stop`` is set."""
    # A worker started while the database is away waits for it (a pool would otherwise
    # restart its crashing workers every second for as long as the outage lasts).
    platform = retry_transient(
        lambda: Platform.from_settings(settings),
        what=f"worker {worker_id(name)}: starting",
        stop=stop,
        logger=log,
    )
    try:
        runner = make_runner(platform, worker_id(name), queues)
        waker = make_waker(platform.store.engine, f"worker {runner.worker_id}", queues)
        serve_runner(runner, stop, waker, lease_sweeper(platform, runner.worker_id))
    finally:
        platform.close()


def lease_sweeper(platform: Platform, name: str) -> LeaseSweeper:
    """A process's share of the janitor: expired leases re-queued, old scratch removed."""
    settings = platform.settings
    return LeaseSweeper(
        platform.store,
        name,
        every=settings.janitor_interval_seconds,
        grace=settings.lease_seconds,
        scratch_root=settings.scratch_dir,
    )


def _pooled_worker(
    settings_json: str, name: str, queues: list[str] | None, stop: threading.Event
) -> None:
    """A :class:`WorkerPool` process's entry point (spawned: it gets settings as JSON)."""
    run_worker(Settings.model_validate_json(settings_json), name, queues, stop)


def _job_helper(
    config: tuple[str, Any], name: str, queues: list[str] | None, stop: threading.Event
) -> None:
    """A :class:`JobHelpers` process: runs tasks of each job it is told, one after another.

    It ends only when told to stop (a helper that ended on its own would be taken for an
    orphan), and a job it is told twice is helped once.
    """
    settings_json, jobs = config
    settings = Settings.model_validate_json(settings_json)
    job_id = _next_job(jobs, stop)
    if job_id is None:
        return
    # A job exists, so the command has built the schema. This process opens its own
    # connections and never touches any it inherited.
    try:
        platform = Platform.from_settings(settings, migrate=False)
    except Exception as exc:
        log.warning("helper %s did not start (%s); the command runs the job alone", name, exc)
        return
    try:
        runner = make_runner(platform, worker_id(name))

        def wake_on_stop() -> None:
            # Stopped because the job was cancelled (Ctrl+C): the running task learns
            # it now instead of at the next lease renewal.
            stop.wait()
            with contextlib.suppress(Exception):
                runner.heartbeat.beat(renew=True)

        threading.Thread(target=wake_on_stop, name="geoetl-helper-stop", daemon=True).start()
        try:
            helped = None
            while job_id is not None:
                if job_id != helped:
                    helped = job_id
                    runner.run_job(job_id, stop)
                job_id = _next_job(jobs, stop)
        finally:
            runner.close()
    finally:
        platform.close()


def _next_job(jobs: Any, stop: threading.Event) -> str | None:
    while not stop.is_set():
        with contextlib.suppress(queue.Empty):
            job_id: str = jobs.get(timeout=0.02)
            return job_id
    return None


class JobHelpers:
    """Processes that help ``geoetl ingest`` run its jobs: each runs those jobs' tasks only.

    Forked from this process before any job runs, once the workflows' libraries are
    imported and while no other thread runs: they start at once, with everything
    loaded, sharing this process's memory pages, and open their own connections.
    :meth:`run` names each job in turn (a folder's datasets are helped by the same
    processes); they stop with :meth:`stop` (after their current task) and never
    outlive this process (:class:`ProcessPool`).

    Forked once, never again after a job ran here: GDAL's worker threads (warping, COG
    compression) do not survive a fork, and a helper forked after they started waits
    for them forever.
    """

    def __init__(self, settings: Settings, count: int) -> None:
        self.count = count
        self._jobs = mp.get_context("fork").Queue()
        entry = f"{__name__}:{_job_helper.__name__}"
        config = (settings.model_dump_json(), self._jobs)
        self._pool = ProcessPool(entry, config, count, start_method="fork")
        self._pool.start()
        self._stopped = False
        self._recovered: set[int] = set()

    def run(self, job_id: str) -> None:
        """Help with ``job_id`` (the job before it has settled)."""
        for _ in range(self.count):
            self._jobs.put(job_id)

    def recover(self, store: JobStore) -> None:
        """Give back at once the tasks of helpers that died (killed, crashed).

        Their leases would otherwise be renewed by nobody and expire by nobody: the
        command does not sweep leases, and would wait for those tasks forever.
        """
        for name, pid, code in self._pool.exited():
            if pid in self._recovered:
                continue
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            requeued, failed = store.release_worker(worker_id(name, pid), how)
            self._recovered.add(pid)  # after the release: a failed one is tried again
            if code != 0 or requeued or failed:
                log.warning(
                    "job helper %s (pid %d) %s; %d task(s) went back to the queue, %d failed",
                    name,
                    pid,
                    how,
                    len(requeued),
                    len(failed),
                )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the helpers after their current task and wait for them (once)."""
        if not self._stopped:
            self._stopped = True
            self._pool.stop(timeout)
            self._jobs.close()


def job_helpers(settings: Settings, *workflows: str) -> JobHelpers | None:
    """Helpers for jobs of ``workflows``, as ``settings.run_workers`` asks, started.

    None for one worker, or where they cannot be forked safely: not on Linux (macOS's
    system libraries do not survive a fork, Windows has none), or another thread runs
    here (a progress display, a server's), which a fork could catch holding a lock.
    Spawned helpers would load every library again, which costs more than a small job
    takes; the command then runs the job alone.
    The workflows' modules are imported first, so that the helpers have them. Call it
    before this process runs any job (see :class:`JobHelpers`).
    """
    extra = settings.run_workers - 1
    if extra <= 0 or not sys.platform.startswith("linux"):
        return None
    from geoetl.workflows import default_registry

    # As for the platform (cli/state.py): the cyclic GC is paused while the libraries
    # load, and what they loaded is moved out of its reach, which also keeps the
    # helpers' collections from writing to (and so copying) the pages they share.
    gc.disable()
    try:
        registry = default_registry()
        for workflow in workflows:
            registry.get(workflow)
        preload_backends(settings)
    finally:
        gc.freeze()
        gc.enable()
    if threading.active_count() > 1:
        return None
    return JobHelpers(settings, extra)


class WorkerPool(ProcessPool):
    """N local worker processes on ``settings``, restarted if one dies, stopped together."""

    def __init__(
        self,
        settings: Settings,
        concurrency: int,
        queues: Sequence[str] | None = None,
        *,
        orphan_grace: float = ORPHAN_GRACE_SECONDS,
    ) -> None:
        super().__init__(
            f"{__name__}:{_pooled_worker.__name__}",
            settings.model_dump_json(),
            concurrency,
            queues,
            orphan_grace=orphan_grace,
        )
        self.settings = settings
