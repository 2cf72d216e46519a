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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Runnable:
    """A task that may be claimed from ``available_at`` on (seconds since the epoch)."""

    task_id: str
    queue: str
    available_at: float


class Dispatcher(Protocol):
    """Told, after commit, about tasks that became runnable."""

    def dispatch(self, tasks: Sequence[Runnable]) -> None:
        """Let workers of each task's queue know; must not raise for a lost message."""

    def close(self) -> None:
        """Release connections."""


class PollingDispatcher:
    """Nothing to send: workers poll the database (the embedded SQLite default)."""

    def dispatch(self, tasks: Sequence[Runnable]) -> None:
        """Nothing to do."""

    def close(self) -> None:
        """Nothing to release."""
