"""Small helpers shared by engine tests."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from geoetl.engine.schema import job_events, jobs, tasks
from geoetl.engine.store import key_of
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.conftest import start_geoetl


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def task_rows(platform: Platform, job_id: str) -> list[Any]:
    """Every task row of a job (with the job's id as ``job_id``)."""
    with platform.store.read() as conn:
        return list(
            conn.execute(
                sa.select(tasks, jobs.c.job_id)
                .join_from(tasks, jobs, jobs.c.job_key == tasks.c.job_key)
                .where(jobs.c.job_id == job_id)
                .order_by(tasks.c.task_id)
            ).all()
        )


def event_rows(platform: Platform, job_id: str, kind: str | None = None) -> list[Any]:
    """A job's events, optionally of one kind (with the job's id as ``job_id``)."""
    query = sa.select(job_events, sa.literal(job_id).label("job_id")).where(
        job_events.c.job_key == key_of(job_id)
    )
    if kind:
        query = query.where(job_events.c.kind == kind)
    with platform.store.read() as conn:
        return list(conn.execute(query.order_by(job_events.c.id)).all())


def expire_lease(platform: Platform, task_id: str) -> None:
    """Make a running task's lease run out now, as if its worker had stopped renewing it."""
    with platform.store.write() as conn:
        conn.execute(
            sa.update(tasks).where(tasks.c.task_id == task_id).values(lease_until=time.time() - 1)
        )


def make_runnable_now(platform: Platform) -> None:
    """Skip retry backoff: every queued task becomes claimable at once."""
    with platform.store.write() as conn:
        conn.execute(sa.update(tasks).where(tasks.c.status == "queued").values(available_at=0))


class Workers:
    """Worker subprocesses started by a test, always stopped afterwards."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queues: str | None = None, concurrency: int = 1) -> subprocess.Popen[bytes]:
        """``geoetl worker`` (of ``queues``, comma-separated; default all queues)."""
        log = self.logs / f"worker-{queues or 'all'}-{len(self.procs)}.log"
        args = ["worker", "--concurrency", str(concurrency)]
        if queues:
            args += ["--queues", queues]
        proc = start_geoetl(self.settings, *args, log=log)
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("worker-*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def helper_pids(platform: Platform, job_id: str, stages: set[str] | None = None) -> set[str]:
    """Process ids of the job helpers (not the command's own runner) that ran the job's tasks.

    ``stages``: only tasks of those stages.
    """
    return {
        row.worker_id.split(":")[1]
        for row in task_rows(platform, job_id)
        if not row.worker_id.endswith(":cli") and (stages is None or row.stage in stages)
    }
