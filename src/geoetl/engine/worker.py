"""Worker processes on this machine: each runs a Runner that claims from the database.

Generic: what a worker process runs is named by the application as a
``"module:function"`` entry point (spawned children import it), called as
``entry(config, name, queues, stop)``; ``geoetl.workers`` builds geoetl's runner there.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import multiprocessing as mp
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from geoetl.engine.db import Outage, is_transient, outage_within
from geoetl.engine.janitor import META_KEY, clean_scratch
from geoetl.engine.runner import Runner
from geoetl.engine.store import JobStore
from geoetl.engine.waker import Waker

log = logging.getLogger(__name__)


def worker_id(name: str = "w", pid: int | None = None) -> str:
    """A readable id naming the host and process (this one, unless ``pid``)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}:{name}"


Entry = Callable[[Any, str, list[str] | None, threading.Event], None]


def serve_runner(
    runner: Runner, stop: threading.Event, waker: Waker, sweeper: LeaseSweeper
) -> None:
    """Run ``runner`` until ``stop`` is set, with ``sweeper`` on a thread; closes all three."""
    sweeping = threading.Thread(
        target=sweeper.run_forever, args=(stop,), name="geoetl-lease-sweeper", daemon=True
    )
    sweeping.start()
    log.info("worker %s started (queues: %s)", runner.worker_id, runner.queues or "all")
    try:
        runner.serve(stop, waker)
    finally:
        stop.set()  # serve() may have ended by an error: the sweeper stops with it
        sweeping.join(timeout=10)
        waker.close()
        runner.close()
        log.info("worker %s stopped", runner.worker_id)


class LeaseSweeper:
    """A worker's share of the janitor: tasks whose lease ran out are re-queued (or failed).

    So ``geoetl worker`` alone recovers the tasks of a crashed worker, without ``geoetl
    serve`` or ``geoetl janitor``. It stands aside while a janitor runs (its last pass is
    recent), and for one lease length after a database outage (workers could not renew
    their leases meanwhile). Several workers, on several machines, may sweep at once:
    the expiry takes each row under its lock (SKIP LOCKED) and re-checks the lease, and a
    task is re-queued with its attempt number, which fences its old worker's completion.
    """

    def __init__(
        self,
        store: JobStore,
        name: str,
        *,
        every: float,
        grace: float,
        scratch_root: Path | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.every = every
        self.grace = grace
        # Scratch is local to each machine, and a janitor elsewhere cannot reach it: each
        # worker removes the scratch folders of ended jobs on its own machine.
        self.scratch_root = scratch_root
        self._outage = Outage(f"worker {name}: lease expiry", log)

    def janitor_running(self) -> bool:
        """True when a janitor made a pass within the last two intervals."""
        last = self.store.get_meta(META_KEY)
        at = last.get("at") if isinstance(last, dict) else None
        if not at:
            return False
        age = (datetime.now(tz=UTC) - datetime.fromisoformat(at)).total_seconds()
        return age < 2 * self.every

    def sweep(self) -> tuple[list[str], list[str]]:
        """One pass: the (re-queued, failed) task ids; none while a janitor runs.

        The scratch folders of ended jobs on this machine are removed either way.
        """
        clean_scratch(self.store, self.scratch_root)
        if self.janitor_running():
            return [], []
        requeued, failed = self.store.expire_leases()
        if requeued or failed:
            log.warning(
                "worker %s: leases ran out (their worker crashed or stalled): "
                "re-queued %d task(s)%s, failed %d%s",
                self.name,
                len(requeued),
                _some(requeued),
                len(failed),
                _some(failed),
            )
        return requeued, failed

    def run_forever(self, stop: threading.Event, *, at_once: bool = False) -> None:
        """Sweep about every janitor interval (jittered: workers spread out) until ``stop``.

        ``at_once``: the first pass now, not one interval from now.
        """
        wait = 0.0 if at_once else self.every * random.uniform(0.75, 1.25)
        while not stop.wait(wait):
            wait = self.every * random.uniform(0.75, 1.25)
            try:
                if self._outage.since is not None or outage_within(self.grace):
                    # The grace runs from when the database answers again, not before.
                    self.store.ping()  # raises while the database is still away
                    self._outage.ended()
                else:
                    self.sweep()
            except Exception as exc:
                if is_transient(exc):
                    self._outage.failed(exc)
                else:
                    log.exception("worker %s: lease expiry failed; trying again", self.name)


def _some(task_ids: list[str]) -> str:
    """For the log: the first few of ``task_ids``."""
    if not task_ids:
        return ""
    more = " …" if len(task_ids) > 5 else ""
    return f" ({', '.join(task_ids[:5])}{more})"


# A worker whose parent died gets this long to finish its batch; a task still running
# then is abandoned: its lease runs out and the janitor re-queues it for another worker.
ORPHAN_GRACE_SECONDS = 5.0
# Exit status of a worker that abandoned its batch because its parent died.
EXIT_ORPHANED = 3
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _signal_on_parent_death(sig: int) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent dies.

    The kernel sends it when the *thread* that started this process ends; a signal that
    arrives while the parent is still alive is therefore handled as an ordinary stop.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0:
            return True
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)
    return False


class _ParentWatch:
    """Stops the worker when its parent dies; abandons the batch after ``grace`` seconds.

    Portable: waits on the pipe multiprocessing keeps from the parent (EOF when the parent
    exits, however it exits) and checks the parent pid every second. Its first check also
    closes the race where the parent died before ``prctl`` was called.
    """

    def __init__(self, parent_pid: int, name: str, stop: threading.Event, grace: float) -> None:
        self.parent_pid = parent_pid
        self.name = name
        self.stop = stop
        self.grace = grace
        self._parent = mp.parent_process()
        self._announced = False
        self._lock = threading.Lock()

    def parent_alive(self, wait: float = 0.0) -> bool:
        """False once the parent died, waiting up to ``wait`` seconds for it to.

        Dead means its pipe reached EOF, or this process was re-parented.
        """
        if os.getppid() != self.parent_pid:
            return False
        if self._parent is None:
            return True
        if wait:
            self._parent.join(wait)
        return self._parent.is_alive()

    def announce(self) -> None:
        """Say (once) why this worker stops."""
        with self._lock:
            if self._announced:
                return
            self._announced = True
        log.warning(
            "worker %s: its parent process %d is gone; stopping (a batch not finished within "
            "%.0f s is abandoned: its leases run out and other workers retry its tasks)",
            self.name,
            self.parent_pid,
            self.grace,
        )

    def run(self) -> None:
        """The watching thread's body."""
        while self.parent_alive():
            if self._parent is not None:
                self._parent.join(1.0)  # returns at once when the parent's end closes
            else:
                time.sleep(1.0)
        self.announce()
        self.stop.set()
        # A daemon thread: when the worker stops within the grace period, the process
        # exits normally and this sleep ends with it.
        time.sleep(self.grace)
        log.warning(
            "worker %s: batch not finished %.0f s after its parent died; abandoning it",
            self.name,
            self.grace,
        )
        logging.shutdown()
        os._exit(EXIT_ORPHANED)


def resolve_entry(entry: str) -> Entry:
    """The function a ``"module:function"`` entry point names."""
    module, _, attr = entry.partition(":")
    target: Entry = getattr(importlib.import_module(module), attr)
    return target


def _child(
    entry: str,
    config: Any,
    name: str,
    queues: list[str] | None,
    stop: Connection,
    level: int,
    parent_pid: int,
    grace: float,
) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The parent decides when children stop; a terminal's Ctrl+C must not kill a task midway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local = threading.Event()
    # SIGTERM stops the worker after its batch. The handler only writes to a pipe that a
    # thread turns into ``local.set()``: a dying parent sends several SIGTERMs in a row,
    # and a handler that set the Event itself could run again inside its own set(), on
    # the Event's lock, and hang the process for good.
    term_r, term_w = os.pipe()
    os.set_blocking(term_w, False)

    def _on_term(*_: Any) -> None:
        with contextlib.suppress(OSError):  # the pipe is full: a stop is pending already
            os.write(term_w, b"t")

    def _term_relay() -> None:
        os.read(term_r, 1)
        local.set()

    threading.Thread(target=_term_relay, name="geoetl-sigterm", daemon=True).start()
    signal.signal(signal.SIGTERM, _on_term)
    # Die with the parent, even when it is killed with SIGKILL: the kernel sends SIGTERM
    # (Linux; handled above: finish the batch), and the watcher notices the parent's pipe
    # closing (everywhere) and bounds the wait. Its first check runs after prctl, closing
    # the race where the parent died before prctl was called.
    _signal_on_parent_death(signal.SIGTERM)
    watch = _ParentWatch(parent_pid, name, local, grace)
    threading.Thread(target=watch.run, name="geoetl-parent-watch", daemon=True).start()

    asked = threading.Event()

    def _relay() -> None:
        # The pool writes to the pipe to stop this worker; it reads EOF if the pool dies.
        with contextlib.suppress(EOFError, OSError):
            stop.recv_bytes()
            asked.set()
        local.set()

    threading.Thread(target=_relay, daemon=True).start()
    resolve_entry(entry)(config, name, queues, local)
    # Stopping already. A dying parent sends one SIGTERM per thread that exits (the kernel
    # re-parents this process to the next live thread, sending the signal again): ignore
    # them, or one arriving while the interpreter shuts down would kill it there.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not asked.is_set() and not watch.parent_alive(wait=1.0):
        watch.announce()  # stopped by the kernel's SIGTERM before the watcher said why


class ProcessPool:
    """N worker processes, restarted if one dies, stopped together; none outlives this one.

    Each process calls ``entry(config, name, queues, stop)`` (``entry`` a
    ``"module:function"`` string, ``config`` picklable) and returns once ``stop`` is set.
    """

    def __init__(
        self,
        entry: str,
        config: Any,
        concurrency: int,
        queues: Sequence[str] | None = None,
        *,
        orphan_grace: float = ORPHAN_GRACE_SECONDS,
        start_method: Literal["spawn", "fork"] = "spawn",
    ):
        self.entry = entry
        self.config = config
        self.concurrency = concurrency
        self.queues = list(queues) if queues else None
        self.orphan_grace = orphan_grace
        # spawn: a fresh interpreter (``config`` pickled). fork: a copy of this process
        # with what it imported, for a caller that has no other thread and no open
        # connection yet (JobHelpers).
        self._ctx: mp.context.SpawnContext | mp.context.ForkContext = (
            mp.get_context("fork") if start_method == "fork" else mp.get_context("spawn")
        )
        self._procs: dict[str, mp.process.BaseProcess] = {}
        # One pipe per worker to ask it to stop. (A shared multiprocessing Event was used
        # before: a worker that died while waiting on it left the Event's condition
        # counting a sleeper that never wakes, and set() then blocked forever.)
        self._stops: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        """Start every worker process."""
        for i in range(self.concurrency):
            self._spawn(f"w{i}")

    def _spawn(self, name: str) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_child,
            args=(
                self.entry,
                self.config,
                name,
                self.queues,
                reader,
                logging.getLogger().getEffectiveLevel(),
                os.getpid(),
                self.orphan_grace,
            ),
            name=f"geoetl-worker-{name}",
            daemon=False,
        )
        proc.start()
        reader.close()  # the child has its own copy; EOF must mean this process is gone
        old = self._stops.pop(name, None)
        if old is not None:
            old.close()
        self._procs[name] = proc
        self._stops[name] = writer

    def supervise(self, stop: threading.Event, every: float = 1.0) -> None:
        """Restart workers that died, until ``stop`` is set; then stop them all."""
        try:
            while not stop.wait(every):
                with self._lock:
                    if self._stopping:
                        break
                    for name, proc in list(self._procs.items()):
                        if not proc.is_alive():
                            log.warning("worker %s exited with %s; restarting", name, proc.exitcode)
                            self._spawn(name)
        finally:
            self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask workers to finish their current tasks, then wait for them."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
            for conn in self._stops.values():
                with contextlib.suppress(OSError):  # that worker has exited already
                    conn.send_bytes(b"stop")
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)

    def exited(self) -> list[tuple[str, int, int]]:
        """Workers that ended while the pool was not stopping: (name, pid, exit code).

        An exit code below zero is the signal that killed the worker (as ``-9``).
        """
        with self._lock:
            if self._stopping:
                return []
            return [
                (name, proc.pid, proc.exitcode)
                for name, proc in self._procs.items()
                if proc.pid is not None and proc.exitcode is not None
            ]

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self._procs.values() if p.pid is not None]
