"""The janitor: expired leases, lost dispatches, old event logs, crashed workers' scratch."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from datetime import UTC, datetime

from geoetl.engine.db import Outage, is_transient, outage_within
from geoetl.engine.models import JanitorReport, JobStatus
from geoetl.errors import NotFound
from geoetl.platform import Platform

log = logging.getLogger(__name__)

META_KEY = "janitor"
# An upload (tmp/uploads/) untouched this long was cut off when its server stopped.
STALE_UPLOAD_SECONDS = 24 * 3600
DAY_SECONDS = 24 * 3600
_JOB_ID = re.compile(r"[0-9a-f]{64}")
_DONE = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}


class Janitor:
    """Keeps the job store honest when workers crash or wake-ups are lost."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.store = platform.store

    def run_once(self) -> JanitorReport:
        """One pass; the report is also stored for ``/health``."""
        requeued, failed = self.store.expire_leases()
        stale = self.store.stale_queued(self.platform.settings.redispatch_after_seconds)
        if stale:
            self.store.wake_workers()
        pruned = 0
        days = self.platform.settings.event_retention_days
        if days > 0:
            pruned = self.store.prune_events(time.time() - days * DAY_SECONDS)
        report = JanitorReport(
            requeued=requeued,
            failed=failed,
            redispatched=stale,
            events_pruned=pruned,
            at=datetime.now(tz=UTC),
        )
        self._clean_scratch()
        self._clean_tmp_objects()
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
        every = interval or self.platform.settings.janitor_interval_seconds
        # After a database outage, workers get one lease length to renew the leases they
        # could not renew meanwhile before expiry takes their tasks from them.
        grace = self.platform.settings.lease_seconds
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

    def _clean_tmp_objects(self) -> None:
        # Staged outputs of jobs that ended (failed or cancelled ones never publish them).
        objects = self.platform.objects
        prefixes = {key.split("/")[1] for key in objects.list("tmp")}
        # Only job folders: tmp/uploads/ holds ingests in flight.
        for job_id in sorted(p for p in prefixes if _JOB_ID.fullmatch(p)):
            try:
                done = self.store.job_status(job_id) in _DONE
            except NotFound:
                done = True
            if done:
                objects.delete_prefix(f"tmp/{job_id}")
        if "uploads" in prefixes:
            self._clean_stale_uploads()

    def _clean_stale_uploads(self) -> None:
        # An upload in flight is written to continually; one left a day was cut off by a
        # server that stopped mid-upload (a client that goes away is cleaned up at once).
        objects = self.platform.objects
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        for key in objects.list("tmp/uploads"):
            try:
                if objects.modified(key) < cutoff:
                    objects.delete(key)
                    log.info("janitor: removed the abandoned upload %s", key)
            except NotFound:
                continue  # finished or dropped meanwhile

    def _clean_scratch(self) -> None:
        root = self.platform.settings.scratch_dir
        if not root.is_dir():
            return
        for folder in root.iterdir():
            try:
                done = self.store.job_status(folder.name) in _DONE
            except NotFound:
                done = True
            if done:
                shutil.rmtree(folder, ignore_errors=True)
