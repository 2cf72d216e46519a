"""How an idle worker learns that tasks are waiting: LISTEN/NOTIFY, or a short poll."""

from __future__ import annotations

import time
from typing import Protocol

from sqlalchemy.engine import Engine

from geoetl.engine.db import is_postgres
from geoetl.engine.store import NOTIFY_CHANNEL


class Waker(Protocol):
    """Blocks an idle worker until work may be there."""

    max_idle: float

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True when woken by a notification."""

    def close(self) -> None:
        """Release what the waker holds."""


class PollWaker:
    """SQLite has no notifications: idle workers poll, backing off to ``max_idle``."""

    max_idle = 0.1

    def wait(self, timeout: float) -> bool:
        """Sleep ``timeout`` seconds."""
        time.sleep(timeout)
        return False

    def close(self) -> None:
        """Nothing to release."""


class ListenWaker:
    """PostgreSQL: LISTEN on the task channel; new tasks NOTIFY at commit."""

    # Still poll now and then: a notification can be missed (connection reset).
    max_idle = 1.0

    def __init__(self, engine: Engine) -> None:
        url = engine.url.set(drivername="postgresql")
        import psycopg  # only PostgreSQL deployments need the driver here

        self._conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout: float) -> bool:
        """Wait for a notification, draining any others queued with it."""
        woken = False
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            woken = True
        if woken:
            # Drain notifications that arrived together; a zero timeout would block.
            for _ in self._conn.notifies(timeout=0.001):
                pass
        return woken

    def close(self) -> None:
        """Close the listening connection."""
        self._conn.close()


def make_waker(engine: Engine) -> Waker:
    """The waker suited to the job store's backend."""
    return ListenWaker(engine) if is_postgres(engine) else PollWaker()
