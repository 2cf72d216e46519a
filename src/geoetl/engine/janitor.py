"""The janitor: expired leases, lost dispatches, old event logs, crashed workers' scratch."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from geoetl.engine.db import Outage, is_transient, outage_within
from geoetl.engine.models import JanitorReport, JobStatus
from geoetl.engine.store import JobStore
from geoetl.errors import NotFound

log = logging.getLogger(__name__)

META_KEY = "janitor"
DAY_SECONDS = 24 * 3600
DONE = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class Janitor:
    """Keeps the job store honest when workers crash or wake-ups are lost.

    Dependencies come in explicitly: the job store (whose dispatcher is asked again for
    tasks queued longer than ``redispatch_after`` seconds), how long ended jobs keep
    their events (``event_retention_days``, 0 keeps them), the pause between passes,
    the lease length (the grace after a database outage), the local scratch root whose
    folders of ended jobs are removed, and ``housekeeping``: further cleanups run each
    pass (the application's object-store folders, for instance).
    """

    def __init__(
        self,
        store: JobStore,
        *,
        redispatch_after: float = 30.0,
        event_retention_days: float = 30.0,
        interval: float = 10.0,
        lease_seconds: float | None = None,
        scratch_root: Path | None = None,
        housekeeping: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.store = store
        self.redispatch_after = redispatch_after
        self.event_retention_days = event_retention_days
        self.interval = interval
        self.lease_seconds = store.lease_seconds if lease_seconds is None else lease_seconds
        self.scratch_root = scratch_root
        self.housekeeping = list(housekeeping)

    def run_once(self) -> JanitorReport:
        """One pass; the report is also stored for ``/health``."""
        requeued, failed = self.store.expire_leases()
        stale = self.store.stale_queued(self.redispatch_after)
        if stale:
            # The dispatcher's message was lost, or no worker of the queue was listening.
            try:
                self.store.dispatcher.dispatch(stale)
            except Exception:  # the rest of the pass must run; the next pass tries again
                log.exception("janitor: re-dispatching %d task(s) failed", len(stale))
        pruned = 0
        days = self.event_retention_days
        if days > 0:
            pruned = self.store.prune_events(time.time() - days * DAY_SECONDS)
        report = JanitorReport(
            requeued=requeued,
            failed=failed,
            redispatched=[t.task_id for t in stale],
            events_pruned=pruned,
            at=datetime.now(tz=UTC),
        )
        self._clean_scratch()
        for clean in self.housekeeping:
            clean()
        self.store.set_meta(
            META_KEY,
            {
                "at": report.at.isoformat() if report.at else None,
                "requeued": len(requeued),
                "failed": len(failed),
                "redispatched": len(stale),
                "events_pruned": pruned,
            },
        )
        if pruned:
            log.info("janitor: deleted %d events of jobs that ended %g+ days ago", pruned, days)
        if report.touched:
            log.info(
                "janitor: %d re-queued, %d failed, %d re-dispatched",
                len(requeued),
                len(failed),
                len(stale),
            )
        return report

    def run_forever(self, stop: threading.Event, interval: float | None = None) -> None:
        """Pass every ``interval`` seconds until ``stop`` is set."""
        every = interval or self.interval
        # After a database outage, workers get one lease length to renew the leases they
        # could not renew meanwhile before expiry takes their tasks from them.
        grace = self.lease_seconds
        outage = Outage("janitor", log)
        while not stop.is_set():
            try:
                if outage.since is not None or outage_within(grace):
                    # Waiting out an outage (this thread's or another's in this process):
                    # the grace runs from when the database answers again, not before.
                    self.store.ping()  # raises while the database is still away
                    outage.ended()
                else:
                    self.run_once()
            except Exception as exc:
                if is_transient(exc):
                    outage.failed(exc)
                else:
                    log.exception("janitor pass failed; trying again in %.0fs", every)
            stop.wait(every)

    def job_ended(self, job_id: str) -> bool:
        """True when the job ended, or is unknown (its leftovers belong to nobody)."""
        return job_ended(self.store, job_id)

    def _clean_scratch(self) -> None:
        clean_scratch(self.store, self.scratch_root)


def job_ended(store: JobStore, job_id: str) -> bool:
    """True when the job ended, or is unknown (its leftovers belong to nobody)."""
    try:
        return store.job_status(job_id) in DONE
    except NotFound:
        return True


# A job's scratch folder is named by its id (a SHA-256). Other folders under the scratch
# root (uploads being received, a batch being copied in) belong to no job.
JOB_FOLDER = re.compile(r"^[0-9a-f]{64}$")


def clean_scratch(store: JobStore, root: Path | None) -> int:
    """Remove the scratch folders (one per job) of ended jobs under ``root``; how many."""
    if root is None or not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        if not JOB_FOLDER.match(folder.name):
            continue
        if folder.is_dir() and job_ended(store, folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
