"""How workers hear of runnable tasks: the dispatcher seam.

The job store commits; only then is the dispatcher told which tasks became runnable
(a new stage, a retry, a lease that expired, a re-submitted job), and the janitor asks
it again for tasks that stayed queued too long. A dispatcher only *tells*: the
database stays the source of truth, workers claim in SQL, and a message about a task
that is no longer queued is simply dropped. Implementations:

- :class:`PollingDispatcher` (SQLite): nothing to send; idle workers poll.
- :class:`NotifyDispatcher` (PostgreSQL): ``pg_notify`` per queue, for LISTENing workers.
- ``geoetl.celery_executor.CeleryDispatcher``: one broker message per task id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geoetl.engine.db import Outage

log = logging.getLogger(__name__)

# The channel LISTENing workers wait on (engine/waker.py); the payload is a queue name.
NOTIFY_CHANNEL = "geoetl_tasks"


@dataclass(frozen=True)
class Runnable:
    """A task that may be claimed from ``available_at`` on (seconds since the epoch)."""

    task_id: str
    queue: str
    available_at: float


class Dispatcher(Protocol):
    """Told, after commit, about tasks that became runnable.

    A dispatcher may set ``wants_ids = False`` (an optional attribute; absent means
    True) when it only needs the queues: the job store then passes one
    :class:`Runnable` per queue instead of one per task, which keeps a million-task
    stage from building a million objects that nobody reads.
    """

    def dispatch(self, tasks: Sequence[Runnable]) -> None:
        """Let workers of each task's queue know; must not raise for a lost message."""

    def close(self) -> None:
        """Release connections."""


def wants_ids(dispatcher: Dispatcher) -> bool:
    """Whether ``dispatcher`` needs every task id, or one task per queue is enough."""
    return bool(getattr(dispatcher, "wants_ids", True))


class PollingDispatcher:
    """Nothing to send: workers poll the database (the embedded SQLite default)."""

    wants_ids = False

    def dispatch(self, tasks: Sequence[Runnable]) -> None:
        """Nothing to do."""

    def close(self) -> None:
        """Nothing to release."""


class NotifyDispatcher:
    """PostgreSQL: one ``pg_notify(channel, queue)`` per distinct queue, one round trip.

    The job store sends it in the transaction that made the tasks runnable
    (:meth:`notifications`); otherwise (the janitor's re-dispatch) in a transaction of
    its own. Either way a worker woken by it finds the tasks. A notification that
    cannot be sent on its own (the database is away) is logged once per outage and
    dropped: idle workers still poll every second, and the janitor re-dispatches tasks
    that stay queued.
    """

    wants_ids = False

    def __init__(self, engine: Engine, channel: str = NOTIFY_CHANNEL) -> None:
        self.engine = engine
        self.channel = channel
        self._outage = Outage("notifying workers of new tasks", log)

    def notifications(self, tasks: Sequence[Runnable]) -> list[tuple[str, str]]:
        """The ``(channel, payload)`` notifications that announce ``tasks``: one per queue.

        The job store sends them with its own transaction's last statement, which made
        ``tasks`` runnable: PostgreSQL delivers a transaction's notifications when it
        commits, and only then (never for a rollback), so a woken worker finds the tasks.
        """
        return [(self.channel, q) for q in sorted({t.queue for t in tasks})]

    def _statement(self, tasks: Sequence[Runnable]) -> sa.Select[Any] | None:
        sends = self.notifications(tasks)
        if not sends:
            return None
        return sa.select(*(sa.func.pg_notify(c, sa.literal(q)) for c, q in sends))

    def dispatch(self, tasks: Sequence[Runnable]) -> None:
        """Wake the workers LISTENing for the queues of ``tasks``."""
        notify = self._statement(tasks)
        if notify is None:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(notify)
        except Exception as exc:  # the tasks are committed; a lost wake-up only delays them
            self._outage.failed(exc)
            return
        self._outage.ended()

    def close(self) -> None:
        """Nothing of its own to release: it borrows the job store's connections."""
