"""How an idle worker learns that tasks are waiting: LISTEN/NOTIFY, or a short poll."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.engine import Engine

from geoetl.engine.db import Outage, is_postgres
from geoetl.engine.dispatch import NOTIFY_CHANNEL

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


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
    """PostgreSQL: LISTEN on the task channel; new tasks NOTIFY their queue after commit.

    A worker of some ``queues`` sleeps through notifications for other queues. The
    listening connection is opened again after the server restarts or the network
    drops it; until then idle workers simply poll.
    """

    # Still poll now and then: a notification can be missed (connection reset).
    max_idle = 1.0

    def __init__(self, engine: Engine, name: str = "", queues: Sequence[str] | None = None) -> None:
        self._queues = frozenset(queues) if queues else None
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._outage = Outage(f"{name}: LISTEN for new tasks" if name else "LISTEN", log)
        self._connect()

    def _connect(self) -> bool:
        import psycopg  # only PostgreSQL deployments need the driver here

        try:
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=10,
                # An idle listener on a dead network path would wait forever otherwise.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error as exc:
            self._outage.failed(exc)
            return False
        self._conn = conn
        self._outage.ended()
        return True

    def wait(self, timeout: float) -> bool:
        """Wait for a notification, draining any others queued with it."""
        import psycopg

        if self._conn is None and not self._connect():
            time.sleep(timeout)  # the claim that follows notices the outage as well
            return False
        assert self._conn is not None
        woken = False
        deadline = time.monotonic() + timeout
        try:
            while not woken and (left := deadline - time.monotonic()) > 0:
                for note in self._conn.notifies(timeout=left, stop_after=1):
                    woken = self._queues is None or note.payload in self._queues
            if woken:
                # Drain notifications that arrived together; a zero timeout would block.
                for _ in self._conn.notifies(timeout=0.001):
                    pass
        except psycopg.Error as exc:
            # Lost the connection: notifications sent meanwhile are gone, so report a
            # wake-up and let the worker look for tasks; reconnect on the next wait.
            self._outage.failed(exc)
            self._drop()
            return True
        return woken

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        """Close the listening connection."""
        self._drop()


def make_waker(engine: Engine, name: str = "", queues: Sequence[str] | None = None) -> Waker:
    """The waker suited to the job store's backend, for a worker of ``queues`` (None: all).

    ``name`` says whose it is in the log.
    """
    return ListenWaker(engine, name, queues) if is_postgres(engine) else PollWaker()
