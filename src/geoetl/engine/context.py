"""What a handler gets besides its params: the services, scratch space, progress, checkpoints."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoetl.errors import TaskCancelled

if TYPE_CHECKING:
    from geoetl.engine.models import ClaimedTask
    from geoetl.engine.store import JobStore


class TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry the job and task ids."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Prefix the message with the ids and attach them as record attributes."""
        extra: dict[str, Any] = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[job {extra.get('job_id', '')[:12]} task {extra.get('task_id')}] {msg}", kwargs


class TaskContext:
    """The running attempt of one task, as its handler sees it.

    ``platform``: whatever the application handed the runner for its handlers (geoetl's
    :class:`geoetl.platform.Platform`: object store, catalog, feature store). The engine
    never looks inside it.
    """

    def __init__(
        self,
        *,
        platform: Any,
        store: JobStore,
        task: ClaimedTask,
        workflow: str,
        results: Mapping[str, Any],
        scratch_root: Path,
    ) -> None:
        self.platform = platform
        self._store = store
        self.task = task
        self.workflow = workflow
        self.results = results
        self._scratch_root = scratch_root
        self._scratch: Path | None = None
        self._lock = threading.Lock()
        self._progress: dict[str, Any] | None = None
        self._progress_dirty = False
        self.cancelled = threading.Event()
        self.log = TaskLogger(
            logging.getLogger("geoetl.task"),
            {
                "job_id": task.job_id,
                "task_id": task.task_id,
                "workflow": workflow,
                "stage": task.stage,
            },
        )

    @property
    def job_id(self) -> str:
        """The job this task belongs to."""
        return self.task.job_id

    @property
    def task_id(self) -> str:
        """The deterministic id of the task."""
        return self.task.task_id

    @property
    def attempt(self) -> int:
        """The attempt number (1 for the first run)."""
        return self.task.attempt

    @property
    def item(self) -> Any:
        """The plan item this task was created for (None for single-task stages)."""
        return self.task.item

    @property
    def checkpoints(self) -> dict[str, Any]:
        """Checkpoints recorded by this and earlier attempts."""
        return self.task.checkpoints

    @property
    def scratch(self) -> Path:
        """A private folder for this task's temporary files (made on first use)."""
        if self._scratch is None:
            self._scratch = self._scratch_root / self.job_id / self.task_id
            self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    @property
    def store(self) -> JobStore:
        """The job store (for checkpoints)."""
        return self._store

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; it reaches the jobs API with the next heartbeat.

        Raises TaskCancelled once the job is cancelled or the lease was lost, so a
        long loop that reports progress stops promptly.
        """
        self.raise_if_cancelled()
        with self._lock:
            self._progress = {"done": done, "total": total, "message": message}
            self._progress_dirty = True

    def take_progress(self) -> dict[str, Any] | None:
        """Progress reported since the last call, for the heartbeat."""
        with self._lock:
            if not self._progress_dirty:
                return None
            self._progress_dirty = False
            return self._progress

    def checkpoint(self, name: str, data: Any = None) -> None:
        """Record that a phase finished; a retried attempt sees it in ``checkpoints``."""
        self.raise_if_cancelled()
        self._store.checkpoint(self.task_id, self.attempt, name, data)
        self.task.checkpoints[name] = data

    def cleanup(self) -> None:
        """Remove this attempt's scratch folder."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def raise_if_cancelled(self) -> None:
        """Stop work whose result would be thrown away."""
        if self.cancelled.is_set():
            raise TaskCancelled(f"task {self.task_id} was cancelled or lost its lease")
