"""Measurement helpers shared by the benchmark scripts in this folder.

The scripts are run as files (``.venv/bin/python benchmarks/raster.py …``), which puts
this folder first on ``sys.path``, so they import this module as ``harness``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform as pyplatform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class BenchmarkError(RuntimeError):
    """A run that failed or produced something it should not have."""


def console_factory() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


# -- statistics --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(ms: list[float]) -> dict[str, float]:
    """p50, p95 and mean of latencies in milliseconds."""
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": statistics.fmean(ms),
    }


# -- files -------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def warm_cache(path: Path) -> None:
    """Read the file once so every tool starts with it in the page cache."""
    with path.open("rb") as fh:
        while fh.read(16 << 20):
            pass


# -- the machine -------------------------------------------------------------------------------


def busy_cpu_s() -> float:
    """CPU seconds the whole machine spent busy since boot (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait_s: float, threshold_cpu: float = 0.3) -> float:
    """Wait (at most ``max_wait_s``) for a 1 s sample with < ``threshold_cpu`` CPUs busy.

    Returns the last sample (busy CPUs, 0..cpu_count); other sessions may share the box.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = busy_cpu_s()
        time.sleep(1.0)
        busy = busy_cpu_s() - b0
        if busy < threshold_cpu or time.monotonic() >= deadline:
            return busy


def git_revision() -> str | None:
    """HEAD's short hash, with ``+dirty src`` when ``src`` has changes; None without git."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(ROOT)]
        rev = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("+dirty src" if dirty else "")
    return None


def machine_info() -> dict[str, Any]:
    """CPUs, CPU model, memory, Python, OS and the git revision (key ``git``)."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": pyplatform.python_version(),
        "platform": pyplatform.platform(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = int(line.split()[1]) / 1024**2
                break
    rev = git_revision()
    if rev is not None:
        info["git"] = rev
    return info


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- running a tool ----------------------------------------------------------------------------

# Started with ``python -S -c``: spawn argv[2:], wait4 it, write its rusage to argv[1].
LAUNCHER = r"""
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t_epoch = time.time()
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(out, "w") as fh:
    json.dump({"start_epoch": t_epoch, "wall_s": wall, "maxrss_kib": ru.ru_maxrss,
               "utime_s": ru.ru_utime, "stime_s": ru.ru_stime,
               "returncode": os.waitstatus_to_exitcode(status)}, fh)
"""


def launch(argv: list[str], run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv`` through the wait4 launcher: wall time, rusage and return code.

    ``other_cpu_s`` is the CPU time the rest of the machine used meanwhile (noise).
    """
    result = run_dir / "rusage.json"
    busy0 = busy_cpu_s()
    with (run_dir / "stdout").open("wb") as out, (run_dir / "stderr").open("wb") as err:
        subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(result), *argv],
            stdout=out,
            stderr=err,
            env=env,
            check=True,
        )
    busy = busy_cpu_s() - busy0
    usage: dict[str, Any] = json.loads(result.read_text())
    usage["other_cpu_s"] = max(0.0, busy - usage["utime_s"] - usage["stime_s"])
    if usage["returncode"] != 0:
        tail = (run_dir / "stderr").read_text(errors="replace")[-2000:]
        raise BenchmarkError(f"{argv[0]} exited with {usage['returncode']}: {tail}")
    return usage


def clean_env() -> dict[str, str]:
    """The environment without ``GEOETL_*`` settings, for a fresh child process."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GEOETL_")}


def ingest_argv(bin_dir: Path, path: Path, *extra: str) -> list[str]:
    """``geoetl ingest PATH --json --access-level public EXTRA…`` from ``bin_dir``."""
    return [
        str(bin_dir / "geoetl"),
        "ingest",
        str(path),
        "--json",
        "--access-level",
        "public",
        *extra,
    ]


def stage_times(tasks: list[tuple[str, float, float]]) -> dict[str, float]:
    """Each stage's wall time from its tasks' ``(stage, started_at, finished_at)``.

    A runner claims several tasks at once and runs them in turn, so a task's
    ``started_at`` is its claim time: a task's own time runs from the end of the one
    before it in the same claim (or from the claim). Tasks of a stage run side by side
    in several processes: a stage's time is the wall time while any of them ran.
    """
    spans: dict[str, list[tuple[float, float]]] = {}
    previous_end: dict[float, float] = {}
    for stage, started, done in sorted(tasks, key=lambda t: t[2]):
        begin = max(started, previous_end.get(started, started))
        previous_end[started] = done
        spans.setdefault(stage, []).append((begin, done))
    stages: dict[str, float] = {}
    for stage, intervals in spans.items():
        total, reach = 0.0, -math.inf
        for begin, done in sorted(intervals):
            total += max(0.0, done - max(begin, reach))
            reach = max(reach, done)
        stages[stage] = total
    return stages


def installed_geoetl(work_dir: Path, console: Any) -> Path:
    """The ``bin`` folder of a virtualenv holding geoetl as a user installs it.

    ``pip install <repo>`` into ``work_dir/runtime-venv``: geoetl's own dependencies
    only (none of the test tools the repository's ``.venv`` adds), and geoetl itself as a
    built, byte-compiled package (an editable install under ``PYTHONDONTWRITEBYTECODE``
    compiles its modules on every start). Every call installs what the working tree's
    dependencies add and reinstalls geoetl from it, so the run measures this code.
    """
    venv = work_dir / "runtime-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    console.print(f"installing geoetl and its dependencies into {venv} …")
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
        check=True,
    )
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # pip's build folder for the wheel
    return venv / "bin"


def time_baselines(
    commands: dict[str, list[str]], runs_dir: Path, quiet_wait: float, console: Any
) -> dict[str, Any]:
    """Median wall time and peak RSS of each command over 3 runs (start-up baselines)."""
    out: dict[str, Any] = {}
    for i, (label, argv) in enumerate(commands.items()):
        walls, rss = [], []
        for j in range(3):
            run_dir = runs_dir / "baselines" / f"{i}-{j}"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            wait_quiet(min(quiet_wait, 10.0))
            usage = launch(argv, run_dir, clean_env())
            walls.append(usage["wall_s"])
            rss.append(usage["maxrss_kib"] / 1024.0)
        out[label] = {"wall_s_median": median(walls), "peak_rss_mib_median": median(rss)}
        console.print(f"  baseline {label:<38} {median(walls):5.2f} s {median(rss):6.0f} MiB")
    return out


# -- process trees, servers and HTTP timing (the PostgreSQL data plane benchmarks) -------------


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop servers and drop databases."""
    import signal

    def _raise(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


def launch_tree(
    argv: list[str],
    run_dir: Path,
    env: dict[str, str],
    interval_s: float = 0.05,
    server_match: str | None = None,
) -> dict[str, Any]:
    """:func:`launch`, plus the process tree sampled with psutil every ``interval_s``.

    Adds ``tree_peak_rss_mib`` (the largest RSS any one process of the tree had in a
    sample), ``tree_peak_sum_mib`` (the largest sum over the tree in one sample),
    ``tree_peak_cmd`` (the process that had the largest RSS), ``tree_processes`` and
    ``tree_samples``. ``maxrss_kib`` from ``wait4`` stays the exact per-process peak
    (the kernel keeps the largest over the child and its waited-for descendants).

    ``server_match``: processes outside the tree whose command line contains it (the
    PostgreSQL backends of the tool's database: ``postgres: … <dbname> …``) are sampled
    too; ``server_cpu_s`` is the CPU time they used (from their last sample: a backend
    that lives under ``interval_s`` is missed), ``server_peak_rss_mib`` their largest
    RSS, and ``other_cpu_s`` no longer counts them as noise.
    """
    import psutil

    result = run_dir / "rusage.json"
    busy0 = busy_cpu_s()
    peak_one = 0
    peak_sum = 0
    peak_cmd = ""
    seen: set[int] = set()
    samples = 0
    server_cpu: dict[int, float] = {}
    server_cpu0: dict[int, float] = {}
    server_rss = 0

    servers: dict[int, Any] = {}

    def sample_servers(discover: bool = True) -> None:
        nonlocal server_rss
        if discover:  # a scan of every process: not at every sample
            for p in psutil.process_iter(["cmdline"]):
                if server_match and server_match in " ".join(p.info["cmdline"] or []):
                    servers.setdefault(p.pid, p)
        for pid, p in list(servers.items()):
            try:
                cpu = p.cpu_times()
                server_cpu[pid] = cpu.user + cpu.system
                server_rss = max(server_rss, p.memory_info().rss)
            except psutil.Error:
                del servers[pid]  # gone: its last sample stays in server_cpu

    if server_match is not None:  # what the database's backends had used before
        sample_servers()
        server_cpu0.update(server_cpu)
    own0 = sum(os.times()[:2])  # this process's sampling is not the machine's noise
    with (run_dir / "stdout").open("wb") as out, (run_dir / "stderr").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, str(result), *argv],
            stdout=out,
            stderr=err,
            env=env,
        )
        try:
            launcher = psutil.Process(proc.pid)
            while proc.poll() is None:
                total = 0
                with contextlib.suppress(psutil.Error):
                    for child in launcher.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            rss = child.memory_info().rss
                            total += rss
                            seen.add(child.pid)
                            if rss > peak_one:
                                peak_one = rss
                                peak_cmd = " ".join(child.cmdline())[:200]
                if server_match is not None:
                    sample_servers(discover=samples % 10 == 0)
                samples += 1
                peak_sum = max(peak_sum, total)
                time.sleep(interval_s)
        finally:
            if proc.poll() is None:  # interrupted: stop the launcher and what it runs
                for child in psutil.Process(proc.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise BenchmarkError(f"launcher for {argv[0]} exited with {proc.returncode}")
    if server_match is not None:
        sample_servers()
    busy = busy_cpu_s() - busy0
    usage: dict[str, Any] = json.loads(result.read_text())
    server_s = sum(cpu - server_cpu0.get(pid, 0.0) for pid, cpu in server_cpu.items())
    own = sum(os.times()[:2]) - own0
    usage["other_cpu_s"] = max(0.0, busy - usage["utime_s"] - usage["stime_s"] - server_s - own)
    usage["sampler_cpu_s"] = own
    if server_match is not None:
        usage["server_cpu_s"] = server_s
        usage["server_processes"] = len(server_cpu)
        usage["server_peak_rss_mib"] = server_rss / 2**20
    usage["tree_peak_rss_mib"] = peak_one / 2**20
    usage["tree_peak_sum_mib"] = peak_sum / 2**20
    usage["tree_peak_cmd"] = peak_cmd
    usage["tree_processes"] = len(seen)
    usage["tree_samples"] = samples
    if usage["returncode"] != 0:
        tail = (run_dir / "stderr").read_text(errors="replace")[-2000:]
        raise BenchmarkError(f"{argv[0]} exited with {usage['returncode']}: {tail}")
    return usage


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` (``postgresql://…/db``) with its database replaced by ``name``."""
    base, _, query = admin_url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str = "geoetl_bench", *, keep: bool = False) -> Any:
    """A fresh database with PostGIS and pgSTAC (geoetl's installer); dropped afterwards.

    Yields its URL. ``admin_url`` names a database the role may connect to and run
    ``CREATE DATABASE`` from (``postgres``).
    """
    import psycopg

    from geoetl.catalog.pgstac_install import install
    from geoetl.engine.db import make_engine

    name = f"{prefix}_{os.getpid()}_{int(time.time()) % 100000}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(admin_url, name)
    try:
        engine = make_engine(url)
        try:
            install(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stop_process_group(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGINT, then SIGTERM after 20 s, then SIGKILL after 10 s more, to ``proc``'s group.

    ``proc`` must have been started with ``start_new_session=True`` (its own group).
    """
    import signal

    if proc.poll() is not None:
        return proc.returncode
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=wait)
    return proc.poll()


@contextlib.contextmanager
def http_server(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log: Path,
    ready_path: str,
    port: int,
    timeout_s: float = 120.0,
) -> Any:
    """Start a web server, wait for ``GET ready_path`` to answer 200, yield its base URL.

    The server runs in its own process group, stopped (and waited for) on exit, also
    when the body raises. Its output goes to ``log``.
    """
    import httpx

    log.parent.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise BenchmarkError(f"{name} exited with {proc.returncode}: {tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + ready_path, timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise BenchmarkError(f"{name}: {ready_path} not 200 in time: {tail}")
                time.sleep(0.2)
            yield base
        finally:
            stop_process_group(proc)


def timed_get(client: Any, url: str, params: dict[str, str]) -> tuple[float, Any, int]:
    """One GET: milliseconds until the whole body is read, the parsed JSON, its bytes."""
    t0 = time.perf_counter()
    response = client.get(url, params=params)
    body = response.content
    ms = (time.perf_counter() - t0) * 1000.0
    if response.status_code != 200:
        raise BenchmarkError(f"GET {response.url} -> {response.status_code}: {body[:500]!r}")
    return ms, json.loads(body), len(body)


def interleaved_latency(
    targets: dict[str, tuple[Any, str]],
    params_list: list[dict[str, str]],
    warmup: int,
    check: Any = None,
) -> dict[str, dict[str, Any]]:
    """Time the same GETs against several servers, alternating between them.

    ``targets`` maps a label to (httpx client with its base URL, path). Every request of
    ``params_list`` goes to each target in turn (the first target alternates each round),
    so background noise falls on all of them alike; ``warmup`` untimed rounds first.
    ``check(label, params, doc)`` may return a value kept per request (``checks``).
    Returns per label: p50/p95/mean/min/max, response sizes and the kept values.
    """
    labels = list(targets)
    for params in params_list[:warmup]:
        for label in labels:
            client, path = targets[label]
            timed_get(client, path, params)
    ms: dict[str, list[float]] = {label: [] for label in labels}
    kept: dict[str, list[Any]] = {label: [] for label in labels}
    sizes: dict[str, list[int]] = {label: [] for label in labels}
    for i, params in enumerate(params_list):
        order = labels if i % 2 == 0 else labels[::-1]
        for label in order:
            client, path = targets[label]
            elapsed, doc, size = timed_get(client, path, params)
            ms[label].append(elapsed)
            sizes[label].append(size)
            kept[label].append(check(label, params, doc) if check else None)
    return {
        label: {
            "requests": len(ms[label]),
            **summary(ms[label]),
            "min_ms": min(ms[label]),
            "max_ms": max(ms[label]),
            "mean_response_bytes": statistics.fmean(sizes[label]),
            "checks": kept[label],
        }
        for label in labels
    }
