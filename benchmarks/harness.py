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
