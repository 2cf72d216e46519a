"""Engine benchmark: no-op ``fan_out_demo`` throughput, stage-hop latency, bytes per task.

For each backend (SQLite, PostgreSQL) and worker count, a fresh job store is made,
``geoetl worker --concurrency N`` is started as a subprocess and warmed up with a
``hello`` job, and then:

* for each size ``n``, a no-op ``fan_out_demo`` job (``plan`` -> ``n`` x ``work`` ->
  ``sum``) is submitted ``--repeats`` times (a new ``seed`` each time) and followed to
  the end; its result is checked (sum = n(n-1)/2, count = n), and so is every task
  (succeeded, first attempt);
* a series of small jobs (``--hop-jobs`` jobs with ``n = --hop-n``) is run one after
  another to collect stage hops: the first task of stage k+1 starting minus the last
  task of stage k finishing, read from the ``tasks`` table.

Throughput is ``n / (max(finished_at) - min(started_at))`` over the job's tasks; the wall
time from ``submit()`` to the poller seeing ``succeeded`` is reported next to it. Bytes per
task are the growth of the engine's tables (PostgreSQL: ``pg_total_relation_size`` of the
schema's tables; SQLite: ``page_count * page_size``, free pages included) over the job,
divided by n. From ``LARGE_N`` tasks a job runs ``--large-repeats`` times, and the claim's
query plan is recorded while its work stage is queued.

Run from the repository root (the engine-at-scale matrix; the 1,000,000-task jobs take
about ten minutes per backend)::

    .venv/bin/python benchmarks/engine.py --sizes 1000,10000,100000,1000000 --workers 2 \\
        --backends sqlite,postgres --repeats 3 --out benchmarks/out/engine.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform as pyplatform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from geoetl.engine.models import JobStatus
from geoetl.engine.schema import job_events, jobs, tasks
from geoetl.engine.store import key_of
from geoetl.platform import Platform
from geoetl.settings import Settings
from harness import BenchmarkError, git_revision, percentile

PG_DSN = os.environ.get("GEOETL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Engine at scale: no-op tasks/s with FLOOR_WORKERS workers, at every size, per backend.
FLOOR_TASKS_PER_S = {"sqlite": 3000.0, "postgres": 2000.0}
FLAT_WITHIN = 0.20  # the largest size's tasks/s within 20% of the smallest size's
FLOOR_HOP_P50_MS = 5.0  # stage hop p50
CEILING_BYTES_PER_TASK = {"sqlite": 600.0, "postgres": 1000.0}
FLOOR_WORKERS = 2
LARGE_N = 100_000
OLD_PLATFORM_GAP_S = (5.0, 8.0)  # the replaced platform, between sequential tasks

POLL_S = 0.02
WORKER_START_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 30.0

TERMINAL = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}
SUSPICIOUS = re.compile(
    r"WARNING|ERROR|CRITICAL|Traceback|dropped completion|lost the lease|restarting"
)

console = Console(width=None if sys.stdout.isatty() else 120)


# -- measuring one job ------------------------------------------------------------------------


@dataclass
class JobRun:
    """What one job did, read back from the job store."""

    n: int
    seed: int
    job_id: str
    wall_s: float
    span_s: float
    work_span_s: float
    queue_s: float
    hops_ms: list[float]
    tasks: int
    workers_used: int
    claims: int
    flushes: int
    per_worker: list[int]
    db_bytes_before: int = 0
    db_bytes_after: int = 0
    claim_plan: str | None = None

    @property
    def bytes_per_task(self) -> float:
        return (self.db_bytes_after - self.db_bytes_before) / self.n if self.n else math.nan

    @property
    def tasks_per_s(self) -> float:
        return self.n / self.span_s if self.span_s > 0 else math.inf

    @property
    def work_tasks_per_s(self) -> float:
        return self.n / self.work_span_s if self.work_span_s > 0 else math.inf

    @property
    def wall_tasks_per_s(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "seed": self.seed,
            "job_id": self.job_id,
            "wall_s": self.wall_s,
            "span_s": self.span_s,
            "work_span_s": self.work_span_s,
            "queue_s": self.queue_s,
            "tasks_per_s": self.tasks_per_s,
            "work_tasks_per_s": self.work_tasks_per_s,
            "wall_tasks_per_s": self.wall_tasks_per_s,
            "hops_ms": self.hops_ms,
            "tasks": self.tasks,
            "workers_used": self.workers_used,
            "claim_transactions": self.claims,
            "complete_transactions": self.flushes,
            "tasks_per_worker": self.per_worker,
            "db_bytes_before": self.db_bytes_before,
            "db_bytes_after": self.db_bytes_after,
            "bytes_per_task": self.bytes_per_task,
            "claim_plan": self.claim_plan,
        }


def wait_for(p: Platform, job_id: str, timeout: float) -> JobStatus:
    """Poll the job's status every ``POLL_S`` until it ends; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        status = p.store.job_status(job_id)
        if status in TERMINAL:
            return status
        if time.monotonic() > deadline:
            view = p.queries.job(job_id)
            raise BenchmarkError(
                f"job {job_id} still {status} after {timeout:.0f}s: "
                f"{view.model_dump_json(exclude={'result'})[:2000]}"
            )
        time.sleep(POLL_S)


ENGINE_TABLES = ("jobs", "tasks", "job_stages", "job_events", "engine_meta")


def db_bytes(p: Platform) -> int:
    """Bytes the engine's tables take (with their indexes and, on PostgreSQL, TOAST)."""
    with p.store.read() as conn:
        if p.store.postgres:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "JOIN pg_namespace ns ON ns.oid = c.relnamespace "
                        "WHERE ns.nspname = current_schema() AND c.relkind = 'r' "
                        "AND c.relname IN :names"
                    ).bindparams(sa.bindparam("names", expanding=True)),
                    {"names": list(ENGINE_TABLES)},
                ).scalar_one()
            )
        # The whole file (other tables are empty here), free pages included: SQLite does
        # not give them back to the file system.
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int(pages) * int(size)


def claim_plan(p: Platform, job_id: str, timeout: float) -> str:
    """The claim's query plan while the job's work stage is queued."""
    deadline = time.monotonic() + timeout
    while p.queries.job(job_id).stage != "work":
        if time.monotonic() > deadline:
            raise BenchmarkError(f"job {job_id} never reached its work stage")
        time.sleep(POLL_S)
    engine = p.store.engine
    statement = p.store.claim_statement("explain", 32, time.time())
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if p.store.postgres:
            return "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
        return "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


def run_fan_out(p: Platform, n: int, seed: int, timeout: float) -> JobRun:
    """Submit a no-op fan_out_demo, follow it to the end, check it and measure it."""
    before = db_bytes(p)
    t0 = time.time()
    job_id, idempotent = p.store.submit("fan_out_demo", {"n": n, "seed": seed})
    if idempotent:
        raise BenchmarkError(f"fan_out_demo n={n} seed={seed} was not a fresh job ({job_id})")
    plan = claim_plan(p, job_id, timeout) if n >= LARGE_N else None
    status = wait_for(p, job_id, timeout)
    wall = time.time() - t0
    view = p.queries.job(job_id)
    if status != JobStatus.succeeded:
        raise BenchmarkError(f"job {job_id} (n={n}) ended {status}: {view.error}")
    expected = {"sum": n * (n - 1) // 2, "count": n}
    if view.result != expected:
        raise BenchmarkError(f"job {job_id}: result {view.result!r}, expected {expected!r}")
    run = measure(p, job_id, n, seed, wall)
    run.db_bytes_before, run.db_bytes_after, run.claim_plan = before, db_bytes(p), plan
    return run


def measure(p: Platform, job_id: str, n: int, seed: int, wall: float) -> JobRun:
    """Timings and sanity checks of a finished job, from its tasks and events."""
    t = tasks.c
    with p.store.read() as conn:
        rows = conn.execute(
            sa.select(
                t.stage_index,
                t.idx,
                t.status,
                t.attempt,
                t.started_at,
                t.finished_at,
                t.worker_id,
            ).where(t.job_key == key_of(job_id))
        ).all()
        job = conn.execute(
            sa.select(jobs.c.created_at, jobs.c.started_at, jobs.c.finished_at).where(
                jobs.c.job_id == job_id
            )
        ).one()
        retries = conn.execute(
            sa.select(sa.func.count())
            .select_from(job_events)
            .where(job_events.c.job_key == key_of(job_id), job_events.c.kind == "task_retry")
        ).scalar_one()
    if len(rows) != n + 2:
        raise BenchmarkError(f"job {job_id}: {len(rows)} tasks, expected {n + 2}")
    bad = [r for r in rows if r.status != "succeeded" or r.attempt != 1]
    if bad or retries:
        sample = [(r.stage_index, r.idx, r.status, r.attempt) for r in bad[:10]]
        raise BenchmarkError(
            f"job {job_id}: {len(bad)} task(s) not succeeded on attempt 1 "
            f"({retries} retry event(s)); e.g. (stage, idx, status, attempt) {sample}"
        )
    stages: dict[int, list[Any]] = {}
    for r in rows:
        stages.setdefault(r.stage_index, []).append(r)
    if sorted(stages) != [0, 1, 2]:
        raise BenchmarkError(f"job {job_id}: stages {sorted(stages)}, expected [0, 1, 2]")
    hops = [
        (min(r.started_at for r in stages[k + 1]) - max(r.finished_at for r in stages[k])) * 1000.0
        for k in (0, 1)
    ]
    return JobRun(
        n=n,
        seed=seed,
        job_id=job_id,
        wall_s=wall,
        span_s=max(r.finished_at for r in rows) - min(r.started_at for r in rows),
        work_span_s=max(r.finished_at for r in stages[1]) - min(r.started_at for r in stages[1]),
        queue_s=job.started_at - job.created_at,
        hops_ms=hops,
        tasks=len(rows),
        workers_used=len({r.worker_id for r in rows}),
        # Each claim stamps its tasks' started_at with one time; each complete() batch
        # stamps one finished_at: the distinct stamps count the transactions.
        claims=len({(r.worker_id, r.started_at) for r in rows}),
        flushes=len({(r.worker_id, r.finished_at) for r in rows}),
        per_worker=sorted(Counter(r.worker_id for r in rows).values(), reverse=True),
    )


# -- backends and workers ---------------------------------------------------------------------


@contextlib.contextmanager
def job_store(backend: str, pg_settings: str = "") -> Iterator[tuple[Path, str | None]]:
    """A fresh home folder and, for PostgreSQL, a fresh database; both removed afterwards.

    A database, not a schema: the platform installs PostGIS and pgSTAC on first use, and
    those need a database of their own. ``pg_settings`` (``name=value,...``) become
    session settings of every connection, through the URL's ``options``: a way to try
    server settings without touching code.
    """
    home = Path(tempfile.mkdtemp(prefix=f"geoetl-bench-{backend}-"))
    database: str | None = None
    try:
        url: str | None = None
        if backend == "postgres":
            database = f"geoetl_bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {database}")
            base = PG_DSN.rsplit("/", 1)[0]
            url = f"{base}/{database}"
            options = [f"-c{kv.strip()}" for kv in pg_settings.split(",") if kv.strip()]
            if options:
                url += "?options=" + quote(" ".join(options), safe="-")
        elif backend != "sqlite":
            raise ValueError(f"unknown backend {backend!r}")
        yield home, url
    finally:
        if database is not None:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Workers:
    """``geoetl worker --concurrency N`` as a subprocess, logging to a file."""

    concurrency: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "geoetl", "-v", "worker"]
        cmd += ["--concurrency", str(self.concurrency)]
        # A session of its own: a Ctrl+C at the terminal reaches only this script,
        # which then stops the workers itself.
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout: float = WORKER_START_TIMEOUT_S) -> None:
        """Wait until every worker process logged that it started."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            started = len(re.findall(r"worker \S+ started", self.log_text()))
            if started >= self.concurrency:
                return
            if self.proc.poll() is not None:
                raise BenchmarkError(
                    f"workers exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"{started}/{self.concurrency} workers started after {timeout:.0f}s:\n"
                    f"{self.log_text()[-3000:]}"
                )
            time.sleep(0.05)

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchmarkError(
                f"workers exited early with {self.proc.returncode}:\n{self.log_text()[-3000:]}"
            )

    def stop(self) -> None:
        """SIGINT (finish the current task, exit), then SIGTERM, then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        try:
            for sig, wait in (
                (signal.SIGINT, WORKER_STOP_TIMEOUT_S),
                (signal.SIGTERM, 10.0),
                (signal.SIGKILL, 10.0),
            ):
                if proc.poll() is not None:
                    break
                if sig == signal.SIGINT:
                    proc.send_signal(sig)  # the CLI's own stop: finish current tasks, exit
                else:
                    # The process group is ours (start_new_session): the pool's children too.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
                if proc.poll() is None:
                    console.print(f"[yellow]workers ignored {sig.name} for {wait:.0f}s[/]")
            self.exit_code = proc.returncode
        finally:
            if self._log is not None:
                self._log.close()
            self.proc = None

    def suspicious_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if SUSPICIOUS.search(line)]


def worker_env(home: Path, url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOETL_")}
    env["GEOETL_HOME"] = str(home)
    if url is not None:
        env["GEOETL_DATABASE_URL"] = url
    return env


# -- the machine ----------------------------------------------------------------------------


def cpu_busy(sample_s: float = 1.0) -> float:
    """Fraction of all CPUs busy over ``sample_s`` (Linux ``/proc/stat``; NaN elsewhere)."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields)

    try:
        idle0, total0 = read()
        time.sleep(sample_s)
        idle1, total1 = read()
    except (OSError, ValueError, IndexError):
        return math.nan
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else math.nan


def wait_quiet(max_wait_s: float, threshold: float = 0.25) -> float:
    """Wait (up to ``max_wait_s``) until other processes leave the CPUs mostly idle."""
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    if busy > threshold:
        console.print(
            f"[yellow]the machine is {busy:.0%} busy before the run (other processes): "
            "results will be lower than on a quiet machine[/]"
        )
    return busy


class OtherLoad:
    """CPU time used by processes other than this benchmark, its workers and PostgreSQL.

    The machine may be shared (tests, other benchmarks): a thread samples ``/proc``
    every second, so a configuration's numbers can be read next to how busy others were.
    """

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self.ticks = 0
        self.pg_ticks = 0
        self.started = time.monotonic()
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="other-load", daemon=True)

    def __enter__(self) -> OtherLoad:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.elapsed = time.monotonic() - self.started

    @property
    def cpu_s(self) -> float:
        return self.ticks / os.sysconf("SC_CLK_TCK")

    @property
    def postgres_cpu_s(self) -> float:
        """CPU time of all PostgreSQL processes (this benchmark's backends and anyone else's)."""
        return self.pg_ticks / os.sysconf("SC_CLK_TCK")

    @property
    def fraction(self) -> float:
        """Share of all CPUs that other processes used."""
        if self.elapsed <= 0:
            return math.nan
        return self.cpu_s / (self.elapsed * (os.cpu_count() or 1))

    @staticmethod
    def _snapshot() -> dict[int, tuple[int, str, int]]:
        procs: dict[int, tuple[int, str, int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2 :].split()
            procs[int(entry.name)] = (int(rest[1]), comm, int(rest[11]) + int(rest[12]))
        return procs

    def _mine(self, procs: dict[int, tuple[int, str, int]]) -> set[int]:
        mine = {os.getpid()}
        grew = True
        while grew:
            grew = False
            for pid, (ppid, _, _) in procs.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    grew = True
        return mine

    def _loop(self) -> None:
        if not Path("/proc/self/stat").exists():
            return
        before = self._snapshot()
        while not self._stop.wait(self.every_s):
            now = self._snapshot()
            mine = self._mine(now)
            for pid, (_, comm, ticks) in now.items():
                if pid in mine or pid not in before:
                    continue
                delta = max(0, ticks - before[pid][2])
                if comm.startswith("postgres"):
                    self.pg_ticks += delta
                else:
                    self.ticks += delta
            before = now


# -- one configuration -----------------------------------------------------------------------


def diagnose(workers: Workers, url: str | None) -> str:
    """What the workers and the database are doing right now (for a stuck job)."""
    out: list[str] = []
    proc = workers.proc
    if proc is not None:
        ps = subprocess.run(
            [
                "ps",
                "-o",
                "pid,ppid,stat,pcpu,etime,args",
                "--ppid",
                str(proc.pid),
                "-p",
                str(proc.pid),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        out += ["== worker processes", ps.stdout]
        spy = shutil.which("py-spy") or os.environ.get("PY_SPY")
        if spy:
            pids = [
                proc.pid,
                *(int(x) for x in re.findall(r"^\s*(\d+)\s+" + str(proc.pid), ps.stdout, re.M)),
            ]
            for pid in pids:
                dump = subprocess.run(
                    [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
                )
                out += [f"== py-spy dump {pid}", dump.stdout, dump.stderr]
    if url is not None:
        try:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                out.append("== pg_stat_activity")
                for row in conn.execute(
                    "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, "
                    "left(query, 300) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ):
                    out.append(repr(row))
                out.append("== pg_locks not granted")
                for row in conn.execute(
                    "SELECT pid, locktype, mode, relation::regclass::text FROM pg_locks "
                    "WHERE NOT granted"
                ):
                    out.append(repr(row))
        except psycopg.Error as exc:
            out.append(f"(database diagnostics failed: {exc})")
    return "\n".join(out)


def run_config(backend: str, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    """Fresh store, workers up, then the sized jobs and the hop series."""
    label = f"{backend}, {concurrency} worker(s)"
    console.rule(label)
    background = wait_quiet(args.quiet_wait)
    load_before = os.getloadavg()
    console.print(f"CPU busy before start {background:.0%}, load average {load_before[0]:.2f}")
    seed_base = int(time.time() * 1000) % 1_000_000_000
    runs: list[JobRun] = []
    hop_runs: list[JobRun] = []
    error: str | None = None
    logs = args.out.parent / "engine-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_copy = logs / f"{backend}-w{concurrency}.log"
    with OtherLoad() as others, job_store(backend, args.pg_settings) as (home, url):
        settings = Settings(home=home, database_url=url)
        p = Platform.from_settings(settings)  # migrates before any worker connects
        workers = Workers(concurrency, worker_env(home, url), home / "workers.log")
        try:
            workers.start()
            workers.wait_started()
            t0 = time.monotonic()
            warm_id, _ = p.store.submit("hello", {"name": f"warmup-{seed_base}"})
            if wait_for(p, warm_id, WORKER_START_TIMEOUT_S) != JobStatus.succeeded:
                raise BenchmarkError(f"warm-up job {warm_id} did not succeed")
            console.print(f"workers up; warm-up job took {time.monotonic() - t0:.3f}s")

            seed = seed_base
            for n in args.sizes:
                for r in range(args.repeats if n < LARGE_N else args.large_repeats):
                    seed += 1
                    timeout = max(args.job_timeout, n / 200.0)
                    run = run_fan_out(p, n, seed, timeout=timeout)
                    workers.check_alive()
                    runs.append(run)
                    console.print(
                        f"n={n:>6} #{r + 1}: {run.tasks_per_s:8.0f} tasks/s "
                        f"(span {run.span_s:.3f}s, wall {run.wall_s:.3f}s, "
                        f"hops {run.hops_ms[0]:.1f}/{run.hops_ms[1]:.1f} ms, "
                        f"tasks per worker {run.per_worker}, {run.claims} claims, "
                        f"{run.flushes} completes, {run.bytes_per_task:.0f} bytes/task)"
                    )
                    if run.claim_plan:
                        console.print(run.claim_plan, markup=False, highlight=False)

            for _ in range(args.hop_jobs):
                seed += 1
                hop_runs.append(run_fan_out(p, args.hop_n, seed, timeout=args.job_timeout))
            workers.check_alive()
        except BenchmarkError as exc:
            error = str(exc)
            console.print(f"[red]FAILED: {label}:[/] {error[:3000]}", highlight=False)
            diagnostics = diagnose(workers, url)
            (logs / f"{backend}-w{concurrency}.diagnostics.txt").write_text(
                error + "\n\n" + diagnostics + "\n"
            )
            console.print(f"diagnostics written to {logs}")
        finally:
            workers.stop()
            p.close()
            shutil.copyfile(workers.log_path, log_copy)
        suspicious = workers.suspicious_lines()
        if suspicious:
            console.print(f"[yellow]{len(suspicious)} suspicious worker log line(s):[/]")
            for line in suspicious[:20]:
                console.print(f"  {line[:300]}", markup=False, highlight=False)
        if workers.exit_code not in (0, -signal.SIGINT, 130):
            console.print(f"[yellow]workers exited with {workers.exit_code}[/]")

    colour = "yellow" if others.fraction > 0.1 else "default"
    console.print(
        f"[{colour}]other processes used {others.fraction:.0%} of the CPUs "
        f"({others.cpu_s:.1f} CPU-s in {others.elapsed:.0f}s) during this configuration; "
        f"PostgreSQL processes (anyone's) {others.postgres_cpu_s:.1f} CPU-s[/]"
    )
    sizes: dict[str, Any] = {}
    for n in args.sizes:
        mine = [r for r in runs if r.n == n]
        if not mine:
            continue
        sizes[str(n)] = {
            "tasks_per_s_median": statistics.median(r.tasks_per_s for r in mine),
            "tasks_per_s_min": min(r.tasks_per_s for r in mine),
            "work_tasks_per_s_median": statistics.median(r.work_tasks_per_s for r in mine),
            "wall_s_median": statistics.median(r.wall_s for r in mine),
            "wall_tasks_per_s_median": statistics.median(r.wall_tasks_per_s for r in mine),
            "plan_to_work_hop_ms_median": statistics.median(r.hops_ms[0] for r in mine),
            "work_to_sum_hop_ms_median": statistics.median(r.hops_ms[1] for r in mine),
            "bytes_per_task_median": statistics.median(r.bytes_per_task for r in mine),
            "runs": [r.as_dict() for r in mine],
        }
    hop_summary: dict[str, Any] | None = None
    if hop_runs:
        hops = [h for run in hop_runs for h in run.hops_ms]
        hop_summary = {
            "jobs": len(hop_runs),
            "n": args.hop_n,
            "count": len(hops),
            "p50_ms": percentile(hops, 50),
            "p95_ms": percentile(hops, 95),
            "max_ms": max(hops),
            "plan_to_work_p50_ms": percentile([r.hops_ms[0] for r in hop_runs], 50),
            "work_to_sum_p50_ms": percentile([r.hops_ms[1] for r in hop_runs], 50),
            "wall_s_median": statistics.median(r.wall_s for r in hop_runs),
            "all_ms": hops,
        }
        console.print(
            f"{len(hops)} hops from {len(hop_runs)} jobs of n={args.hop_n}: "
            f"p50 {hop_summary['p50_ms']:.2f} ms, p95 {hop_summary['p95_ms']:.2f} ms, "
            f"max {hop_summary['max_ms']:.2f} ms"
        )
    return {
        "backend": backend,
        "workers": concurrency,
        "error": error,
        "sizes": sizes,
        "hops": hop_summary,
        "cpu_busy_before": background,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "other_processes_cpu_s": others.cpu_s,
        "other_processes_cpu_fraction": others.fraction,
        "postgres_processes_cpu_s": others.postgres_cpu_s,
        "duration_s": others.elapsed,
        "worker_exit_code": workers.exit_code,
        "worker_log": str(log_copy),
        "worker_log_suspicious": suspicious[:200],
    }


# -- report ------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": pyplatform.python_version(),
        "platform": pyplatform.platform(),
        "sqlite": sqlite3.sqlite_version,
    }
    with contextlib.suppress(psycopg.Error), psycopg.connect(PG_DSN, connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        info["postgresql"] = row[0] if row else None
    rev = git_revision()
    if rev is not None:
        info["commit"] = rev
    return info


def verdicts(configs: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """The targets, checked against every configuration they apply to.

    Per backend, with ``FLOOR_WORKERS`` workers: tasks/s at every size, the largest size
    within ``FLAT_WITHIN`` of the smallest, and bytes per task; hop p50 everywhere. A
    configuration that failed (wrong result, retries, a stuck job) misses them.
    """
    throughput: list[dict[str, Any]] = []
    flat: list[dict[str, Any]] = []
    space: list[dict[str, Any]] = []
    hops: list[dict[str, Any]] = []
    failures = [
        {"backend": c["backend"], "workers": c["workers"], "error": c["error"]}
        for c in configs
        if c["error"]
    ]
    for c in configs:
        backend = c["backend"]
        if c["workers"] == FLOOR_WORKERS:
            floor = FLOOR_TASKS_PER_S[backend]
            ceiling = CEILING_BYTES_PER_TASK[backend]
            for n in sizes:
                s = c["sizes"].get(str(n))
                if s is None:
                    throughput.append(
                        {"backend": backend, "n": n, "tasks_per_s": None, "met": False}
                    )
                    continue
                rate = s["tasks_per_s_median"]
                throughput.append(
                    {
                        "backend": backend,
                        "n": int(n),
                        "tasks_per_s": rate,
                        "ratio": rate / floor,
                        "met": rate >= floor,
                    }
                )
                per_task = s["bytes_per_task_median"]
                space.append(
                    {
                        "backend": backend,
                        "n": int(n),
                        "bytes_per_task": per_task,
                        "ceiling": ceiling,
                        "met": per_task <= ceiling,
                    }
                )
            done = [int(n) for n in sizes if str(n) in c["sizes"]]
            if len(done) > 1:
                small = c["sizes"][str(min(done))]["tasks_per_s_median"]
                large = c["sizes"][str(max(done))]["tasks_per_s_median"]
                flat.append(
                    {
                        "backend": backend,
                        "smallest_n": min(done),
                        "largest_n": max(done),
                        "ratio": large / small,
                        "met": large >= (1.0 - FLAT_WITHIN) * small,
                    }
                )
        if c["hops"] is None:
            hops.append({"backend": backend, "workers": c["workers"], "met": False})
            continue
        p50 = c["hops"]["p50_ms"]
        hops.append(
            {
                "backend": backend,
                "workers": c["workers"],
                "p50_ms": p50,
                "ratio": p50 / FLOOR_HOP_P50_MS,
                "met": p50 <= FLOOR_HOP_P50_MS,
                "times_faster_than_5s": OLD_PLATFORM_GAP_S[0] * 1000.0 / p50 if p50 else None,
            }
        )
    return {
        "tasks_per_s_floor": FLOOR_TASKS_PER_S,
        "tasks_per_s_floor_workers": FLOOR_WORKERS,
        "flat_within": FLAT_WITHIN,
        "bytes_per_task_ceiling": CEILING_BYTES_PER_TASK,
        "hop_p50_floor_ms": FLOOR_HOP_P50_MS,
        "old_platform_gap_s": list(OLD_PLATFORM_GAP_S),
        "throughput": throughput,
        "flat": flat,
        "bytes_per_task": space,
        "hops": hops,
        "failures": failures,
        "all_met": not failures and all(v["met"] for v in throughput + flat + space + hops),
    }


def print_report(configs: list[dict[str, Any]], verdict: dict[str, Any]) -> None:
    tput = Table(title="No-op fan_out_demo throughput and size (median of repeats)")
    cols = ("backend", "workers", "n", "tasks/s", "min tasks/s", "÷ floor", "wall s")
    for col in (*cols, "plan→work ms", "work→sum ms", "bytes/task"):
        tput.add_column(col, justify="right" if col != "backend" else "left")
    for c in configs:
        floor = FLOOR_TASKS_PER_S[c["backend"]]
        ceiling = CEILING_BYTES_PER_TASK[c["backend"]]
        for n, s in c["sizes"].items():
            rate = s["tasks_per_s_median"]
            scored = c["workers"] == FLOOR_WORKERS
            ratio = f"{rate / floor:.2f}"
            per_task = s["bytes_per_task_median"]
            size = f"{per_task:,.0f}"
            if scored:
                ratio = f"[{'green' if rate >= floor else 'red'}]{ratio}[/]"
                size = f"[{'green' if per_task <= ceiling else 'red'}]{size}[/]"
            tput.add_row(
                c["backend"],
                str(c["workers"]),
                f"{int(n):,}",
                f"{rate:,.0f}",
                f"{s['tasks_per_s_min']:,.0f}",
                ratio,
                f"{s['wall_s_median']:.2f}",
                f"{s['plan_to_work_hop_ms_median']:.1f}",
                f"{s['work_to_sum_hop_ms_median']:.1f}",
                size,
            )
    console.print(tput)
    for f in verdict["flat"]:
        colour = "green" if f["met"] else "red"
        console.print(
            f"{f['backend']}: tasks/s at n={f['largest_n']:,} is [{colour}]"
            f"{f['ratio']:.2f}x[/] that at n={f['smallest_n']:,} "
            f"(target ≥ {1 - FLAT_WITHIN:.2f}x)"
        )

    hop = Table(title="Stage hop: last task of stage k done -> first task of stage k+1 running")
    for col in (
        "backend",
        "workers",
        "hops",
        "p50 ms",
        "p95 ms",
        "max ms",
        f"p50 ÷ {FLOOR_HOP_P50_MS:.0f} ms",
        "5 s ÷ p50",
    ):
        hop.add_column(col, justify="right" if col != "backend" else "left")
    for c in configs:
        h = c["hops"]
        if h is None:
            continue
        ok = h["p50_ms"] <= FLOOR_HOP_P50_MS
        hop.add_row(
            c["backend"],
            str(c["workers"]),
            str(h["count"]),
            f"{h['p50_ms']:.2f}",
            f"{h['p95_ms']:.2f}",
            f"{h['max_ms']:.2f}",
            f"[{'green' if ok else 'red'}]{h['p50_ms'] / FLOOR_HOP_P50_MS:.2f}[/]",
            f"{OLD_PLATFORM_GAP_S[0] * 1000.0 / h['p50_ms']:,.0f}x",
        )
    console.print(hop)
    for f in verdict["failures"]:
        console.print(
            f"[red]FAILED[/] {f['backend']}, {f['workers']} worker(s): {f['error'][:500]}",
            highlight=False,
        )
    met = verdict["all_met"]
    floors = ", ".join(f"{b} ≥ {v:,.0f}" for b, v in FLOOR_TASKS_PER_S.items())
    ceilings = ", ".join(f"{b} ≤ {v:,.0f}" for b, v in CEILING_BYTES_PER_TASK.items())
    console.print(
        f"targets (tasks/s with {FLOOR_WORKERS} workers: {floors}; largest size within "
        f"{FLAT_WITHIN:.0%} of the smallest; bytes/task: {ceilings}; "
        f"hop p50 ≤ {FLOOR_HOP_P50_MS:.0f} ms): "
        + ("[green]all met[/]" if met else "[red]NOT all met[/]")
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    def names(text: str) -> list[str]:
        return [x.strip() for x in text.split(",") if x.strip()]

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes", type=ints, default=[1000, 10000, 100000, 1000000], help="work tasks per job"
    )
    ap.add_argument("--workers", type=ints, default=[FLOOR_WORKERS], help="worker processes")
    ap.add_argument("--backends", type=names, default=["sqlite", "postgres"])
    ap.add_argument("--repeats", type=int, default=3, help="jobs per size and configuration")
    ap.add_argument(
        "--large-repeats",
        type=int,
        default=1,
        help=f"jobs per size from {LARGE_N:,} tasks (each takes minutes)",
    )
    ap.add_argument("--hop-jobs", type=int, default=30, help="small jobs for hop latency")
    ap.add_argument("--hop-n", type=int, default=10, help="work tasks of each small job")
    ap.add_argument(
        "--pg-settings",
        default="",
        help="PostgreSQL session settings for every connection, e.g. "
        "plan_cache_mode=force_custom_plan (default: none)",
    )
    ap.add_argument(
        "--job-timeout",
        type=float,
        default=120.0,
        help="seconds a job may take before the configuration is declared stuck",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait, before each configuration, for other processes to go idle",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/engine.json"))
    args = ap.parse_args(argv)
    for b in args.backends:
        if b not in ("sqlite", "postgres"):
            ap.error(f"unknown backend {b!r}")
    if args.repeats < 1 or args.hop_jobs < 1:
        ap.error("--repeats and --hop-jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    info = machine_info()
    console.print(f"machine: {info}")
    configs: list[dict[str, Any]] = []
    for backend in args.backends:
        for concurrency in args.workers:
            configs.append(run_config(backend, concurrency, args))
    verdict = verdicts(configs, args.sizes)
    print_report(configs, verdict)
    report = {
        "benchmark": "engine",
        "issue": "engine at scale",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": started,
        "duration_s": time.time() - started,
        "machine": info,
        "params": {
            "sizes": args.sizes,
            "workers": args.workers,
            "backends": args.backends,
            "repeats": args.repeats,
            "large_repeats": args.large_repeats,
            "hop_jobs": args.hop_jobs,
            "hop_n": args.hop_n,
            "poll_s": POLL_S,
            "quiet_wait_s": args.quiet_wait,
            "job_timeout_s": args.job_timeout,
            "pg_settings": args.pg_settings,
        },
        "configs": configs,
        "floors": verdict,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0 if verdict["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
