"""End to end: ``geoetl serve`` with two worker processes, driven over HTTP and by the CLI.

Each test starts a real server on a free port against the ``settings`` database (SQLite
or PostgreSQL); the fixture kills it, and every process it started, when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from geoetl.settings import Settings
from tests.conftest import bearer, geoetl_cmd, settings_env, start_geoetl

STARTUP_SECONDS = 30.0
JOB_SECONDS = 60.0
DONE = {"succeeded", "failed", "cancelled"}


# -- processes ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid``, with its command line."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            parents.setdefault(stat[1], []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found[child] = _cmdline(child)
                todo.append(child)
    return found


def still_running(procs: dict[int, str]) -> dict[int, str]:
    """The processes of ``procs`` that still run (same pid and command line, not a zombie)."""
    alive = {}
    for pid, cmdline in procs.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[0] != "Z" and _cmdline(pid) == cmdline:
            alive[pid] = cmdline
    return alive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``geoetl serve`` and an HTTP client for it."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    settings: Settings
    http: httpx.Client
    started: dict[int, str] = field(default_factory=dict)

    def log_text(self) -> str:
        """The end of the server's log, without the access log lines of our polling."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if not line.startswith("INFO:     127."))[-6000:]

    def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``check`` until it returns something truthy; fail with the server log."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            if self.proc.poll() is not None:
                pytest.fail(f"geoetl serve exited ({self.proc.returncode}):\n{self.log_text()}")
            time.sleep(0.1)
        pytest.fail(f"timed out after {timeout}s waiting for {what}\nlog:\n{self.log_text()}")

    def submit(self, workflow: str, params: dict[str, Any]) -> str:
        response = self.http.post(f"/jobs/{workflow}", json=params)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def wait_done(self, job_id: str, timeout: float = JOB_SECONDS) -> dict[str, Any]:
        """The job's view once it has ended."""
        view: dict[str, Any] = self.wait_for(
            lambda: (v := self.job(job_id))["status"] in DONE and v,
            timeout,
            f"job {job_id} to end",
        )
        return view

    def workers(self) -> dict[int, str]:
        """The worker processes serve started (multiprocessing spawn children)."""
        return {pid: cmd for pid, cmd in descendants(self.proc.pid).items() if "spawn_main" in cmd}


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[Server]:
    """``geoetl serve --workers 2`` on a free port, up and answering /livez."""
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_geoetl(settings, "serve", "--port", str(port), "--workers", "2", log=log)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=10.0, headers=bearer(settings))
    srv = Server(proc=proc, url=url, log=log, settings=settings, http=http)
    try:

        def live() -> bool:
            try:
                return http.get("/livez").status_code == 200
            except httpx.TransportError:
                return False

        srv.wait_for(live, STARTUP_SECONDS, "/livez of geoetl serve")
        srv.wait_for(lambda: len(srv.workers()) == 2, STARTUP_SECONDS, "two worker processes")
        srv.started = descendants(proc.pid)
        yield srv
    finally:
        http.close()
        family = {**srv.started, **descendants(proc.pid)}
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in still_running(family):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def cli(settings: Settings, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``geoetl ARGS`` against ``settings`` (wide output, so lines are not wrapped)."""
    env = {**settings_env(settings), "COLUMNS": "200"}
    return subprocess.run(
        geoetl_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def cli_json(settings: Settings, *args: str) -> Any:
    done = cli(settings, *args)
    assert done.returncode == 0, f"geoetl {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


# -- tests -------------------------------------------------------------------------------


def test_served_jobs_run_and_the_cli_sees_them(server: Server) -> None:
    n = 200
    big = server.submit("fan_out_demo", {"n": n})
    bad = server.submit("fan_out_demo", {"n": 20, "fail_at": 7})

    big_view = server.wait_done(big)
    bad_view = server.wait_done(bad)

    assert big_view["status"] == "succeeded", big_view
    assert big_view["result"] == {"sum": n * (n - 1) // 2, "count": n}
    assert [(s["name"], s["total"], s["succeeded"]) for s in big_view["stages"]] == [
        ("plan", 1, 1),
        ("work", n, n),
        ("sum", 1, 1),
    ]
    assert bad_view["status"] == "failed", bad_view
    assert bad_view["error"]["stage"] == "work"
    assert "work item 7" in bad_view["error"]["message"]
    assert bad_view["result"] is None
    settings = server.settings

    # `jobs list` reads the same database the server writes.
    page = cli_json(settings, "jobs", "list", "--json", "--limit", "100")
    listed = {j["job_id"]: j["status"] for j in page["items"]}
    assert page["total"] == 2
    assert listed == {big: "succeeded", bad: "failed"}

    # `jobs show PREFIX` gives the API's view.
    for job_id, api_view in ((big, big_view), (bad, bad_view)):
        shown = cli_json(settings, "jobs", "show", job_id[:12], "--json")
        for key in ("job_id", "status", "result", "error", "stages", "params", "run"):
            assert shown[key] == api_view[key], key

    # `jobs events` prints the task log.
    events = cli(settings, "jobs", "events", big[:12])
    assert events.returncode == 0, events.stderr
    succeeded_lines = [line for line in events.stdout.splitlines() if "task_succeeded" in line]
    assert len(succeeded_lines) == n + 2
    assert any(f"{big[:16]}-work-00199" in line for line in succeeded_lines)
    assert "job_succeeded" in events.stdout

    # `submit --wait` runs a job here, and the server sees it.
    hello = cli(settings, "submit", "hello", "--params", '{"name":"e2e"}', "--wait", "--json")
    assert hello.returncode == 0, hello.stderr
    hello_view = json.loads(hello.stdout)
    assert hello_view["status"] == "succeeded"
    assert hello_view["result"] == {"message": "Hello, e2e!"}
    assert server.job(hello_view["job_id"])["result"] == {"message": "Hello, e2e!"}
    # ... and submitting it over HTTP now finds the same job.
    again = server.http.post("/jobs/hello", json={"name": "e2e"}).json()
    assert (again["job_id"], again["idempotent"]) == (hello_view["job_id"], True)


def test_cli_errors_are_one_readable_line(server: Server) -> None:
    settings = server.settings
    finished = server.submit("hello", {"name": "done"})
    assert server.wait_done(finished)["status"] == "succeeded"

    bad_params = cli(settings, "submit", "fan_out_demo", "--params", '{"n": "x"}')
    assert bad_params.returncode != 0
    assert "Traceback" not in bad_params.stderr
    assert len(bad_params.stderr.strip().splitlines()) == 1, bad_params.stderr
    assert "n:" in bad_params.stderr
    assert "fan_out_demo" in bad_params.stderr

    bad_json = cli(settings, "submit", "fan_out_demo", "--params", "{n: 1}")
    assert bad_json.returncode != 0
    assert "Traceback" not in bad_json.stderr
    assert "not valid JSON" in bad_json.stderr

    unknown = cli(settings, "submit", "nope")
    assert unknown.returncode != 0
    assert "Traceback" not in unknown.stderr
    assert "nope" in unknown.stderr
    assert "fan_out_demo" in unknown.stderr
    assert "hello" in unknown.stderr

    cancel = cli(settings, "jobs", "cancel", finished[:12])
    assert cancel.returncode != 0
    assert "Traceback" not in cancel.stderr
    assert "already succeeded" in cancel.stderr
    assert server.job(finished)["status"] == "succeeded"

    missing = cli(settings, "jobs", "show", "abcdef123456")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr
    assert "abcdef123456" in missing.stderr

    # None of these created a job.
    assert server.http.get("/jobs").json()["total"] == 1


def running_workers(server: Server, job_id: str) -> set[str]:
    """Worker ids of the job's running work-stage tasks (not the plan task)."""
    page = server.http.get(
        f"/jobs/{job_id}/tasks", params={"status": "running", "stage": "work"}
    ).json()
    return {t["worker_id"] for t in page["items"]}


def stop_with_sigint(server: Server, within: float) -> float:
    """Ctrl+C the server; it must exit cleanly in ``within`` s, leaving no process behind."""
    family = descendants(server.proc.pid)
    assert len([cmd for cmd in family.values() if "spawn_main" in cmd]) == 2, family
    started = time.monotonic()

    server.proc.send_signal(signal.SIGINT)

    try:
        code = server.proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"geoetl serve still running {within} s after SIGINT:\n{server.log_text()}")
    took = time.monotonic() - started
    assert code == 0, server.log_text()
    deadline = time.monotonic() + 10
    while still_running(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_running(family) == {}, f"left running after serve exited: {still_running(family)}"
    with pytest.raises(httpx.TransportError):
        server.http.get("/livez")
    return took


def test_cancel_stops_running_tasks(server: Server) -> None:
    sleep_s = 20
    long_job = server.submit("fan_out_demo", {"n": 4, "sleep_ms": sleep_s * 1000})
    server.wait_for(lambda: running_workers(server, long_job), JOB_SECONDS, "work tasks to run")
    running_since = time.monotonic()

    response = server.http.post(f"/jobs/{long_job}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    server.wait_for(
        lambda: not running_workers(server, long_job), 10, "no task of the job to be running"
    )
    view = server.job(long_job)
    assert view["status"] == "cancelled"
    work = view["stages"][1]
    assert (work["succeeded"], work["running"], work["queued"], work["cancelled"]) == (0, 0, 0, 4)
    assert server.http.post(f"/jobs/{long_job}/cancel").status_code == 409
    # New work still runs.
    quick = server.submit("hello", {"name": uuid.uuid4().hex})
    assert server.wait_done(quick, timeout=10)["status"] == "succeeded"
    assert server.job(long_job)["stages"][1]["succeeded"] == 0

    # serve waits for tasks in flight before it exits (see the next test), so a prompt exit
    # shows that no worker is still sleeping in a cancelled task.
    stop_with_sigint(server, within=10)
    assert time.monotonic() - running_since < sleep_s - 2, "too slow to tell"


def test_sigint_lets_the_running_task_finish_then_stops_the_workers(server: Server) -> None:
    sleep_s = 4
    job_id = server.submit("fan_out_demo", {"n": 1, "sleep_ms": sleep_s * 1000})
    server.wait_for(lambda: running_workers(server, job_id), JOB_SECONDS, "the work task to run")
    running_since = time.monotonic()

    stop_with_sigint(server, within=30)

    assert time.monotonic() - running_since >= sleep_s - 1, "serve did not wait for the task"
    # The server is gone; the CLI reads what it left in the database.
    view = cli_json(server.settings, "jobs", "show", job_id, "--json")
    work = view["stages"][1]
    assert (work["succeeded"], work["running"], work["failed"]) == (1, 0, 0), view["stages"]
    assert view["status"] in ("running", "succeeded")  # the sum task may not have been claimed


def test_two_workers_share_a_fan_out_stage(server: Server) -> None:
    # Regression: on PostgreSQL a claim of k tasks used to take every queued task.
    n = 4
    job_id = server.submit("fan_out_demo", {"n": n, "sleep_ms": 3000})
    together: set[str] = set()  # the most workers seen running the job's tasks at once

    def done() -> dict[str, Any] | None:
        nonlocal together
        workers = running_workers(server, job_id)
        if len(workers) > len(together):
            together = workers
        view = server.job(job_id)
        return view if view["status"] in DONE else None

    view = server.wait_for(done, JOB_SECONDS, f"job {job_id} to end")

    assert view["status"] == "succeeded"
    assert view["result"] == {"sum": n * (n - 1) // 2, "count": n}
    assert len(together) == 2, f"tasks ran on {together} only"
