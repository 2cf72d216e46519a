"""Worker processes on this machine: each runs a Runner that claims from the database."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from geoetl.engine.runner import Runner
from geoetl.engine.waker import make_waker
from geoetl.platform import Platform
from geoetl.settings import Settings

log = logging.getLogger(__name__)


def worker_id(name: str = "w") -> str:
    """A readable id naming the host and process."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}"


def run_worker(
    settings: Settings, name: str, queues: list[str] | None, stop: threading.Event
) -> None:
    """Run one worker in this process until ``stop`` is set."""
    platform = Platform.from_settings(settings)
    runner = Runner(platform, worker_id(name), queues=queues)
    waker = make_waker(platform.store.engine)
    log.info("worker %s started (queues: %s)", runner.worker_id, queues or "all")
    try:
        runner.serve(stop, waker)
    finally:
        waker.close()
        runner.close()
        platform.close()
        log.info("worker %s stopped", runner.worker_id)


def _child(
    settings_json: str, name: str, queues: list[str] | None, stop: MpEvent, level: int
) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The parent decides when children stop; a terminal's Ctrl+C must not kill a task midway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local = threading.Event()

    def _on_term(*_: Any) -> None:
        local.set()

    signal.signal(signal.SIGTERM, _on_term)

    def _relay() -> None:
        stop.wait()
        local.set()

    threading.Thread(target=_relay, daemon=True).start()
    run_worker(Settings.model_validate_json(settings_json), name, queues, local)


class WorkerPool:
    """N worker processes, restarted if one dies, stopped together."""

    def __init__(self, settings: Settings, concurrency: int, queues: list[str] | None = None):
        self.settings = settings
        self.concurrency = concurrency
        self.queues = queues
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()
        self._procs: dict[str, mp.process.BaseProcess] = {}

    def start(self) -> None:
        """Start every worker process."""
        for i in range(self.concurrency):
            self._spawn(f"w{i}")

    def _spawn(self, name: str) -> None:
        proc = self._ctx.Process(
            target=_child,
            args=(
                self.settings.model_dump_json(),
                name,
                self.queues,
                self._stop,
                logging.getLogger().getEffectiveLevel(),
            ),
            name=f"geoetl-worker-{name}",
            daemon=False,
        )
        proc.start()
        self._procs[name] = proc

    def supervise(self, stop: threading.Event, every: float = 1.0) -> None:
        """Restart workers that died, until ``stop`` is set; then stop them all."""
        try:
            while not stop.wait(every):
                for name, proc in list(self._procs.items()):
                    if not proc.is_alive():
                        log.warning("worker %s exited with %s; restarting", name, proc.exitcode)
                        self._spawn(name)
        finally:
            self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask workers to finish their current tasks, then wait for them."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for proc in self._procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self._procs.values() if p.pid is not None]
