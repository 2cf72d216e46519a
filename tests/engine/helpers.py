"""Small helpers shared by engine tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from geoetl.engine.schema import job_events, tasks
from geoetl.platform import Platform


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
    """Every task row of a job."""
    with platform.store.read() as conn:
        return list(
            conn.execute(
                sa.select(tasks).where(tasks.c.job_id == job_id).order_by(tasks.c.task_id)
            ).all()
        )


def event_rows(platform: Platform, job_id: str, kind: str | None = None) -> list[Any]:
    """A job's events, optionally of one kind."""
    query = sa.select(job_events).where(job_events.c.job_id == job_id)
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
