"""Celery executor benchmark: no-op ``fan_out_demo`` throughput beside the local executor.

Both executors run in one invocation, one after the other, on the same machine and the
same PostgreSQL server, each on a fresh job store (schema), each with ``geoetl worker
--concurrency N`` (default 2) as a subprocess warmed up with a ``hello`` job:

* ``local``: the default executor (claims in SQL, woken by NOTIFY, batches of up to 32);
* ``celery`` on each ``--brokers`` (Redis by default): one broker message per task, each
  claimed alone by the Celery pool process that got it (``run_once(task_ids=[id])``).

For each size ``n`` a no-op job (``plan`` -> ``n`` x ``work`` -> ``sum``) is run
``--repeats`` times and checked as ``benchmarks/engine.py`` checks it (result; every task
succeeded on attempt 1; no retries). Throughput is ``n / (max(finished_at) -
min(started_at))`` over the job's tasks; the wall time from ``submit()`` to the poller
seeing ``succeeded`` is reported next to it. The report gives each Celery configuration's
median tasks/s, its ratio to the local executor's, and the target (Redis, 2 workers:
at least 1,000 tasks/s).

Run from the repository root (about two minutes)::

    flock /tmp/geoetl-bench.lock .venv/bin/python benchmarks/celery.py --sizes 2000,10000 \\
        --repeats 3 --out benchmarks/out/celery.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is called celery.py: with its folder first on sys.path (as for any script run
# as a file), ``import celery`` would import this file instead of Celery. The folder moves
# to the end, where ``harness`` and ``engine`` are still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
import redis  # noqa: E402
from rich.table import Table  # noqa: E402

from engine import (  # noqa: E402
    PG_DSN,
    WORKER_START_TIMEOUT_S,
    BenchmarkError,
    JobRun,
    OtherLoad,
    Workers,
    console,
    machine_info,
    run_fan_out,
    wait_for,
    wait_quiet,
    worker_env,
)
from geoetl.engine.models import JobStatus  # noqa: E402
from geoetl.platform import Platform  # noqa: E402
from geoetl.settings import Settings  # noqa: E402

BROKERS = {
    "redis": os.environ.get("GEOETL_BENCH_REDIS", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("GEOETL_BENCH_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//"),
}
TARGET_TASKS_PER_S = {"redis": 1000.0}  # Celery on Redis, 2 worker processes, no-op tasks
TARGET_WORKERS = 2


class CeleryWorkers(Workers):
    """``geoetl worker`` with the Celery executor: started once it ran the warm-up job."""

    def wait_started(self, timeout: float = WORKER_START_TIMEOUT_S) -> None:
        self.check_alive()


@contextlib.contextmanager
def job_store() -> Iterator[tuple[Path, str]]:
    """A fresh home folder and a fresh PostgreSQL database (PostGIS and pgSTAC come with
    the first platform, as in a new deployment); both removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="geoetl-bench-celery-"))
    name = f"bench_celery_{uuid.uuid4().hex[:12]}"
    admin = PG_DSN.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield home, PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(home, ignore_errors=True)


def empty_broker(url: str) -> None:
    """Leftover messages of an earlier run would only be dropped, but they cost time."""
    if url.startswith("redis://"):
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


def run_executor(executor: str, broker: str | None, args: argparse.Namespace) -> dict[str, Any]:
    """One executor (and broker): fresh store, workers up, the sized jobs."""
    label = f"{executor}{f' on {broker}' if broker else ''}, {args.workers} worker(s)"
    console.rule(label)
    background = wait_quiet(args.quiet_wait)
    runs: list[JobRun] = []
    error: str | None = None
    logs = args.out.parent / "celery-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with OtherLoad() as others, job_store() as (home, url):
        env = worker_env(home, url)
        values: dict[str, Any] = {"home": home, "database_url": url}
        if broker is not None:
            empty_broker(BROKERS[broker])
            values.update(executor="celery", broker_url=BROKERS[broker])
            env.update(GEOETL_EXECUTOR="celery", GEOETL_BROKER_URL=BROKERS[broker])
        settings = Settings(**values)
        p = Platform.from_settings(settings)  # migrates before any worker connects
        kind = CeleryWorkers if broker else Workers
        workers = kind(args.workers, env, home / "workers.log")
        try:
            workers.start()
            workers.wait_started()
            t0 = time.monotonic()
            warm_id, _ = p.store.submit("hello", {"name": f"warmup-{time.time()}"})
            if wait_for(p, warm_id, WORKER_START_TIMEOUT_S) != JobStatus.succeeded:
                raise BenchmarkError(f"warm-up job {warm_id} did not succeed")
            console.print(f"workers up; warm-up job took {time.monotonic() - t0:.3f}s")
            seed = int(time.time() * 1000) % 1_000_000_000
            for n in args.sizes:
                for r in range(args.repeats):
                    seed += 1
                    run = run_fan_out(p, n, seed, timeout=max(args.job_timeout, n / 100.0))
                    workers.check_alive()
                    runs.append(run)
                    console.print(
                        f"n={n:>6} #{r + 1}: {run.tasks_per_s:8.0f} tasks/s "
                        f"(span {run.span_s:.3f}s, wall {run.wall_s:.3f}s, "
                        f"hops {run.hops_ms[0]:.1f}/{run.hops_ms[1]:.1f} ms, "
                        f"tasks per worker {run.per_worker}, {run.claims} claims, "
                        f"{run.flushes} completes)"
                    )
        except BenchmarkError as exc:
            error = str(exc)
            console.print(f"[red]FAILED: {label}:[/] {error[:3000]}", highlight=False)
        finally:
            workers.stop()
            p.close()
            (logs / f"{executor}-{broker or 'none'}.log").write_text(workers.log_text())
        suspicious = workers.suspicious_lines()
    console.print(
        f"other processes used {others.fraction:.0%} of the CPUs during this configuration; "
        f"PostgreSQL processes (anyone's) {others.postgres_cpu_s:.1f} CPU-s"
    )
    sizes = {
        str(n): {
            "tasks_per_s_median": statistics.median(r.tasks_per_s for r in mine),
            "tasks_per_s_min": min(r.tasks_per_s for r in mine),
            "wall_tasks_per_s_median": statistics.median(r.wall_tasks_per_s for r in mine),
            "plan_to_work_hop_ms_median": statistics.median(r.hops_ms[0] for r in mine),
            "runs": [r.as_dict() for r in mine],
        }
        for n in args.sizes
        if (mine := [r for r in runs if r.n == n])
    }
    return {
        "executor": executor,
        "broker": broker,
        "workers": args.workers,
        "error": error,
        "sizes": sizes,
        "cpu_busy_before": background,
        "other_processes_cpu_fraction": others.fraction,
        "postgres_processes_cpu_s": others.postgres_cpu_s,
        "worker_log_suspicious": suspicious[:200],
    }


def verdicts(configs: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Ratios to the local executor, and the target for Celery on Redis."""
    local = next((c for c in configs if c["executor"] == "local"), None)
    rows: list[dict[str, Any]] = []
    all_met = all(c["error"] is None for c in configs)
    for config in configs:
        if config["executor"] != "celery":
            continue
        for n in sizes:
            mine = config["sizes"].get(str(n))
            if mine is None:
                continue
            rate = mine["tasks_per_s_median"]
            base = local["sizes"].get(str(n), {}).get("tasks_per_s_median") if local else None
            target = TARGET_TASKS_PER_S.get(config["broker"])
            met = None
            if target is not None and config["workers"] == TARGET_WORKERS:
                met = rate >= target
                all_met = all_met and met
            rows.append(
                {
                    "broker": config["broker"],
                    "n": n,
                    "tasks_per_s": rate,
                    "local_tasks_per_s": base,
                    "ratio_to_local": rate / base if base else None,
                    "target_tasks_per_s": target,
                    "met": met,
                }
            )
    return {"rows": rows, "all_met": all_met}


def print_report(verdict: dict[str, Any]) -> None:
    table = Table(title="Celery executor vs local (no-op tasks, median tasks/s)")
    for column in ("broker", "n", "celery", "local", "ratio", "target", "met"):
        table.add_column(column)
    for row in verdict["rows"]:
        table.add_row(
            row["broker"],
            f"{row['n']:,}",
            f"{row['tasks_per_s']:.0f}",
            f"{row['local_tasks_per_s']:.0f}" if row["local_tasks_per_s"] else "-",
            f"{row['ratio_to_local']:.2f}" if row["ratio_to_local"] else "-",
            f"{row['target_tasks_per_s']:.0f}" if row["target_tasks_per_s"] else "-",
            {True: "yes", False: "NO", None: "-"}[row["met"]],
        )
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=ints, default=[2000, 10000], help="work tasks per job")
    ap.add_argument("--workers", type=int, default=TARGET_WORKERS, help="worker processes")
    ap.add_argument(
        "--brokers",
        type=lambda t: [b.strip() for b in t.split(",") if b.strip()],
        default=["redis"],
        help=f"Celery brokers ({', '.join(BROKERS)})",
    )
    ap.add_argument("--repeats", type=int, default=3, help="jobs per size and executor")
    ap.add_argument("--job-timeout", type=float, default=120.0)
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/celery.json"))
    args = ap.parse_args(argv)
    unknown = [b for b in args.brokers if b not in BROKERS]
    if unknown:
        ap.error(f"unknown broker(s) {unknown}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    info = machine_info()
    console.print(f"machine: {info}")
    configs = [run_executor("local", None, args)]
    configs += [run_executor("celery", broker, args) for broker in args.brokers]
    verdict = verdicts(configs, args.sizes)
    print_report(verdict)
    report = {
        "benchmark": "celery",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": started,
        "duration_s": time.time() - started,
        "machine": info,
        "params": {
            "sizes": args.sizes,
            "workers": args.workers,
            "brokers": {b: BROKERS[b] for b in args.brokers},
            "repeats": args.repeats,
        },
        "configs": configs,
        "verdict": verdict,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0 if verdict["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
