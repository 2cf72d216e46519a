"""Worker processes never outlive ``geoetl serve``, even when it is killed with SIGKILL.

A worker whose parent died stops: a task that ends within the grace period
(``ORPHAN_GRACE_SECONDS``) is finished and recorded; a longer one is abandoned, its
lease runs out and the janitor re-queues it for another worker, so no task is lost.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from geoetl.engine.models import JobStatus, TaskStatus
from geoetl.engine.worker import ORPHAN_GRACE_SECONDS
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_janitor
from tests.conftest import geoetl_cmd, serve_pid, serving, settings_env, start_geoetl
from tests.engine.helpers import task_rows, wait_for

# The grace period, then a few seconds for the process to wind down and be seen gone.
GONE_WITHIN = ORPHAN_GRACE_SECONDS + 5.0


def _is_worker(proc: psutil.Process) -> bool:
    try:
        return any("spawn_main" in part for part in proc.cmdline())
    except psutil.NoSuchProcess:
        return False


def _connected(proc: psutil.Process, settings: Settings) -> bool:
    """The worker has loaded its platform: it holds the job store open."""
    url = str(settings.database_url)
    try:
        if url.startswith("sqlite:///"):
            return any(f.path == url.removeprefix("sqlite:///") for f in proc.open_files())
        port = sa.make_url(url).port or 5432
        return any(c.raddr and c.raddr.port == port for c in proc.net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


def _workers(
    serve: psutil.Process, count: int, settings: Settings | None = None
) -> list[psutil.Process]:
    """The serve process's ``count`` workers, once they exist.

    With ``settings``, once each has also connected to the job store.
    """

    def found() -> list[psutil.Process] | None:
        workers = [p for p in serve.children() if _is_worker(p)]
        if len(workers) != count:
            return None
        if settings and not all(_connected(w, settings) for w in workers):
            return None
        return workers

    return list(wait_for(found, timeout=60, what=f"{count} worker processes"))


def _gone(proc: psutil.Process) -> bool:
    """Exited: no such process any more, or a zombie its new parent has not reaped yet."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {proc.status()} ppid {proc.ppid()} {' '.join(proc.cmdline())[-60:]}"
    except psutil.NoSuchProcess:
        return f"{proc.pid} gone"


def _kill_and_expect_gone(serve: psutil.Process, procs: list[psutil.Process]) -> float:
    """SIGKILL ``serve``; every process in ``procs`` must be gone within GONE_WITHIN s."""
    started = time.monotonic()
    serve.send_signal(signal.SIGKILL)
    deadline = started + GONE_WITHIN
    while time.monotonic() < deadline and not all(_gone(p) for p in procs):
        time.sleep(0.05)
    alive = [p for p in procs if not _gone(p)]
    described = [_describe(p) for p in alive]
    for p in alive:  # never leave them behind, whatever the outcome
        p.kill()
    assert described == [], f"processes outlived geoetl serve by {GONE_WITHIN}s: {described}"
    return time.monotonic() - started


class Background:
    """``geoetl`` subprocesses started by a test, always stopped afterwards."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"{args[0]}-{len(self.procs)}.log"
        proc = start_geoetl(self.settings, *args, log=log)
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("*.log")))

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


@pytest.fixture
def background(settings: Settings, tmp_path: Path, platform: Platform) -> Iterator[Background]:
    b = Background(settings, tmp_path)
    yield b
    b.stop()


def _submit(settings: Settings, params: dict[str, object]) -> str:
    """``geoetl submit fan_out_demo`` as a user would; returns the job id."""
    out = subprocess.run(
        geoetl_cmd("submit", "fan_out_demo", "--params", json.dumps(params), "--json"),
        env=settings_env(settings),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return str(json.loads(out.stdout)["job_id"])


def _running_work(platform: Platform, job_id: str, count: int) -> list[str] | None:
    """The running work tasks once ``count`` of them run on ``count`` different workers.

    Not before: a worker that claimed both in one batch gives one back (the stage is
    new to it), and that one is queued again until the other worker takes it.
    """
    running = [
        r
        for r in task_rows(platform, job_id)
        if r.stage == "work" and r.status == TaskStatus.running
    ]
    workers = {r.worker_id for r in running}
    return [str(r.task_id) for r in running] if len(workers) == len(running) == count else None


def test_idle_workers_exit_when_serve_is_killed(settings: Settings, tmp_path: Path) -> None:
    with serving(settings, tmp_path / "serve.log", "--workers", "2") as base:
        serve = psutil.Process(serve_pid(base))
        workers = _workers(serve, 2, settings)
        # Everything serve started (the workers and multiprocessing's resource tracker).
        everything = serve.children(recursive=True)
        assert {w.pid for w in workers} <= {p.pid for p in everything}
        _kill_and_expect_gone(serve, everything)
    log = (tmp_path / "serve.log").read_text()
    assert log.count("parent process") >= 2, log  # each worker said why it stopped


def test_worker_started_just_before_serve_dies_exits(settings: Settings, tmp_path: Path) -> None:
    """Killed while its workers are still starting up (before or around their prctl call)."""
    with serving(settings, tmp_path / "serve.log", "--workers", "2") as base:
        serve = psutil.Process(serve_pid(base))
        workers = _workers(serve, 2, settings)
        # Kill the workers: the pool's supervisor restarts them within a second; kill serve as
        # soon as the replacements exist, while they are still importing.
        for w in workers:
            w.send_signal(signal.SIGKILL)
        fresh = wait_for(
            lambda: (
                (w := [p for p in serve.children() if _is_worker(p) and p not in workers])
                and len(w) == 2
                and w
            ),
            timeout=30,
            what="the pool to restart its workers",
        )
        _kill_and_expect_gone(serve, list(fresh))


def test_ctrl_c_stops_serve_after_a_worker_was_restarted(
    settings: Settings, tmp_path: Path
) -> None:
    """A worker that died is restarted, and Ctrl+C still stops everything promptly.

    (With the shared multiprocessing Event the pool used before, a worker killed while
    waiting on it left the Event counting a sleeper that never wakes: stopping hung.)
    """
    with serving(settings, tmp_path / "serve.log", "--workers", "2") as base:
        serve = psutil.Process(serve_pid(base))
        first = _workers(serve, 2, settings)[0]
        first.send_signal(signal.SIGKILL)
        wait_for(
            lambda: (
                len(
                    [
                        p
                        for p in serve.children()
                        if p != first and _is_worker(p) and _connected(p, settings)
                    ]
                )
                == 2
            ),
            timeout=30,
            what="the pool to restart the killed worker",
        )
        everything = serve.children(recursive=True)
        serve.send_signal(signal.SIGINT)
        assert serve.wait(20) == 0
        assert psutil.wait_procs(everything, timeout=5)[1] == []


def test_slow_tasks_of_a_killed_serve_are_retried_elsewhere(
    settings: Settings, tmp_path: Path, platform: Platform, background: Background
) -> None:
    # Each task runs well past the grace period: the orphaned workers abandon them.
    sleep_s = ORPHAN_GRACE_SECONDS + 10
    with serving(settings, tmp_path / "serve.log", "--workers", "2") as base:
        serve = psutil.Process(serve_pid(base))
        workers = _workers(serve, 2, settings)
        job_id = _submit(settings, {"n": 2, "sleep_ms": sleep_s * 1000})
        held = wait_for(
            lambda: _running_work(platform, job_id, 2), timeout=60, what="both workers busy"
        )
        killed_at = time.time()
        took = _kill_and_expect_gone(serve, workers)
    assert took >= ORPHAN_GRACE_SECONDS - 1  # they gave their tasks a chance first
    rows = {str(r.task_id): r for r in task_rows(platform, job_id)}
    assert all(killed_at - rows[t].started_at < sleep_s - GONE_WITHIN for t in held)
    # Abandoned, not failed: still running under the dead workers' leases.
    assert [(rows[t].status, rows[t].attempt) for t in held] == [(TaskStatus.running, 1)] * 2
    log = (tmp_path / "serve.log").read_text()
    assert "abandoning it" in log, log

    survivor = background.start("worker", "--concurrency", "2")
    requeued: set[str] = set()

    def leases_expired() -> bool:
        requeued.update(make_janitor(platform).run_once().requeued)
        return set(held) <= requeued

    wait_for(leases_expired, timeout=30, what="the janitor to re-queue the abandoned tasks")
    wait_for(
        lambda: platform.store.job_status(job_id) in (JobStatus.succeeded, JobStatus.failed),
        timeout=120,
        what="the new worker to finish the job",
    )
    view = platform.queries.job(job_id)
    assert view.status == JobStatus.succeeded, background.output()
    assert view.result == {"sum": 1, "count": 2}  # every task ran: none lost
    rows = {str(r.task_id): r for r in task_rows(platform, job_id)}
    survivors = {f":{p.pid}:" for p in psutil.Process(survivor.pid).children()}
    for task_id in held:
        assert rows[task_id].status == TaskStatus.succeeded
        assert rows[task_id].attempt == 2
        assert any(pid in rows[task_id].worker_id for pid in survivors)
    assert "Traceback" not in background.output()


def test_short_tasks_are_finished_by_orphaned_workers(
    settings: Settings, tmp_path: Path, platform: Platform, background: Background
) -> None:
    # Each task ends within the grace period: the orphaned workers finish and record them.
    sleep_ms = ORPHAN_GRACE_SECONDS * 1000 / 4
    with serving(settings, tmp_path / "serve.log", "--workers", "2") as base:
        serve = psutil.Process(serve_pid(base))
        workers = _workers(serve, 2, settings)
        job_id = _submit(settings, {"n": 2, "sleep_ms": sleep_ms})
        held = wait_for(
            lambda: _running_work(platform, job_id, 2), timeout=60, what="both workers busy"
        )
        _kill_and_expect_gone(serve, workers)
    rows = {str(r.task_id): r for r in task_rows(platform, job_id)}
    pids = {f":{w.pid}:" for w in workers}
    for task_id in held:
        assert rows[task_id].status == TaskStatus.succeeded
        assert rows[task_id].attempt == 1
        assert any(pid in rows[task_id].worker_id for pid in pids)
    # The next stage waits for a worker; a new one finishes the job.
    background.start("worker")
    wait_for(
        lambda: platform.store.job_status(job_id) == JobStatus.succeeded,
        timeout=60,
        what="the new worker to finish the job",
    )
    assert platform.queries.job(job_id).result == {"sum": 1, "count": 2}
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log, log
