"""The database goes away mid-job: workers, the janitor and the API wait and carry on.

Also: ``geoetl worker`` alone recovers a crashed worker's task (its own lease expiry),
and SQLite's "database is locked" under heavy contention is waited out, never a failure.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest

from geoetl.engine import db
from geoetl.engine.models import JobStatus, TaskStatus
from geoetl.engine.waker import PollWaker
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_runner
from tests.conftest import bearer, serving
from tests.engine.helpers import Workers, event_rows, task_rows, wait_for
from tests.engine.pgcluster import own_cluster, wait_until_up


def _assert_each_task_succeeded_once(platform: Platform, job_id: str, tasks: int) -> None:
    """Every task succeeded; its success was recorded once, by its last attempt; every
    earlier attempt of it ended in a recorded retry (an interrupted attempt is retried,
    never silently run again, and no task runs after it succeeded)."""
    rows = task_rows(platform, job_id)
    assert len(rows) == tasks
    assert {r.status for r in rows} == {TaskStatus.succeeded}
    succeeded = event_rows(platform, job_id, "task_succeeded")
    assert len(succeeded) == len({e.task_id for e in succeeded}) == tasks
    last_attempt = {r.task_id: r.attempt for r in rows}
    assert {e.task_id: e.message for e in succeeded} == {
        t: f"attempt {a}" for t, a in last_attempt.items()
    }
    retries = Counter(e.task_id for e in event_rows(platform, job_id, "task_retry"))
    unexplained = {t: a for t, a in last_attempt.items() if a - 1 != retries[t]}
    assert unexplained == {}


# -- geoetl worker alone ------------------------------------------------------------------


def test_worker_alone_requeues_the_task_of_a_killed_worker(
    platform: Platform, workers: Workers
) -> None:
    """No janitor and no serve: the surviving worker's own lease expiry re-queues the task."""
    victim = workers.start()
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 2, "sleep_ms": 2500})

    def victim_task() -> str | None:
        for r in task_rows(platform, job_id):
            if r.stage == "work" and r.status == TaskStatus.running:
                return str(r.task_id)
        return None

    task_id = wait_for(victim_task, timeout=30, what="a work task to start on the victim")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = workers.start()
    wait_for(
        lambda: platform.store.job_status(job_id) == JobStatus.succeeded,
        timeout=60,
        what="the surviving worker to re-queue the task and finish the job",
    )
    assert platform.queries.job(job_id).result == {"sum": 1, "count": 2}
    [row] = [r for r in task_rows(platform, job_id) if r.task_id == task_id]
    assert row.attempt == 2
    assert f":{survivor.pid}:" in row.worker_id
    causes = [e.message for e in event_rows(platform, job_id, "task_retry")]
    assert any(f":{victim.pid}:" in c and "stopped renewing the lease" in c for c in causes)
    assert platform.store.get_meta("janitor") is None  # no janitor ever ran
    assert "leases ran out" in workers.output()
    assert "Traceback" not in workers.output()


# -- SQLite under contention --------------------------------------------------------------


def test_sqlite_contention_never_fails_a_job(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten writers on one SQLite home, with a busy timeout far too short for that load."""
    # Writers now give up waiting for the lock after 5 ms (the default is a minute), so
    # "database is locked" is raised often: it must be waited out, never reach a job.
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_S", 0.005)
    settings = Settings(
        home=home,
        lease_seconds=10.0,
        heartbeat_seconds=0.2,
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
    )
    platforms = [Platform.from_settings(settings) for _ in range(7)]
    stop = threading.Event()
    failures: list[BaseException] = []

    def guarded(work: object) -> threading.Thread:
        def body() -> None:
            try:
                work()  # type: ignore[operator]
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread

    runners = [make_runner(p, f"contender-{i}") for i, p in enumerate(platforms[:6])]
    threads = [guarded(lambda r=r: r.serve(stop, PollWaker())) for r in runners]
    job_ids: list[str] = []

    def submit_and_watch(offset: int) -> None:
        store, queries = platforms[6].store, platforms[6].queries
        for seed in range(offset, offset + 5):
            job_id, _ = store.submit("fan_out_demo", {"n": 30, "seed": seed})
            job_ids.append(job_id)
            queries.job(job_id)

    submitters = [guarded(lambda o=o: submit_and_watch(o)) for o in (0, 100, 200, 300)]
    with caplog.at_level(logging.WARNING):
        try:
            for t in submitters:
                t.join(120)
            assert failures == []
            assert len(job_ids) == 20
            store = platforms[6].store
            wait_for(
                lambda: all(
                    store.job_status(j) in (JobStatus.succeeded, JobStatus.failed) for j in job_ids
                ),
                timeout=180,
                what="the 20 jobs",
            )
        finally:
            stop.set()
            for t in threads:
                t.join(30)
            for r in runners:
                r.close()
    try:
        assert failures == []
        views = [platforms[6].queries.job(j) for j in job_ids]
        assert {v.status for v in views} == {JobStatus.succeeded}
        assert all(v.result == {"sum": 435, "count": 30} for v in views)
        for j in job_ids:
            _assert_each_task_succeeded_once(platforms[6], j, 32)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        for p in platforms:
            p.close()


# -- a PostgreSQL restart mid-job ---------------------------------------------------------


@pytest.mark.postgres
def test_postgres_restart_mid_job(home: Path, tmp_path: Path) -> None:
    """2,000 tasks on 2 workers; the server stops for 3 s while they run, then comes back.

    What must hold: the job succeeds with the exact result; every task succeeded exactly
    once (one success event, by its last attempt; an attempt cut off by the outage may be
    retried, but only with a recorded reason, and no task runs again after it succeeded);
    the workers neither crash nor log tracebacks; the API answers 503 while the database
    is away and 200 again within seconds of its return.
    """
    with own_cluster() as cluster:
        settings = Settings(
            home=home,
            database_url=cluster.create_database("geoetl"),
            lease_seconds=3.0,
            heartbeat_seconds=0.5,
            retry_base_seconds=0.01,
            retry_max_seconds=0.05,
            redispatch_after_seconds=0.5,
            janitor_interval_seconds=0.5,
        )
        platform = Platform.from_settings(settings)  # installs the schema and pgSTAC once
        headers = bearer(settings)
        workers = Workers(settings, tmp_path)
        try:
            with serving(settings, tmp_path / "serve.log", "--workers", "0") as base:
                workers.start(concurrency=2)
                job_id, _ = platform.store.submit("fan_out_demo", {"n": 2000, "sleep_ms": 10})
                done = _succeeded_counter(cluster.url("geoetl"), job_id)
                wait_for(lambda: done() >= 400, timeout=120, what="400 tasks done")
                assert platform.store.job_status(job_id) == JobStatus.running

                cluster.stop("fast")
                stopped_at = time.monotonic()
                down = httpx.get(f"{base}/jobs/{job_id}", headers=headers, timeout=10)
                probes = [httpx.get(f"{base}/readyz", timeout=10) for _ in range(3)]
                time.sleep(max(0.0, 3.0 - (time.monotonic() - stopped_at)))
                cluster.start()
                back_at = time.monotonic()
                wait_until_up(cluster)
                answered = _first_ok(f"{base}/jobs/{job_id}", headers, timeout=60)
                api_back_after = answered - back_at
                done_at_return = done()

                wait_for(
                    lambda: (
                        platform.store.job_status(job_id) in (JobStatus.succeeded, JobStatus.failed)
                    ),
                    timeout=180,
                    what="the job to end after the restart",
                )
                finished_after = time.monotonic() - back_at
            view = platform.queries.job(job_id)
            output = workers.output()
            assert view.status == JobStatus.succeeded, output
            assert view.result == {"sum": 1999000, "count": 2000}
            _assert_each_task_succeeded_once(platform, job_id, 2002)
            assert done_at_return < 2000  # the restart did happen mid-job

            assert down.status_code == 503, down.text
            assert down.json()["code"] == "DatabaseUnavailable"
            assert "Retry-After" in down.headers
            assert api_back_after < 15, f"the API answered {api_back_after:.1f}s after restart"

            assert all(p.poll() is None for p in workers.procs), output  # nobody crashed
            assert "exited with" not in output  # the pool restarted no worker
            assert "the database is unavailable" in output
            assert "the database is back" in output
            assert "Traceback" not in output, output
            # No live worker had a task taken from it: after the outage each renewed its
            # leases before lease expiry looked at them (the work was not done twice).
            assert "the lease was lost" not in output, output
            assert [p.status_code for p in probes] == [503, 503, 503]
            assert probes[0].json()["database"] == "error"
            serve_log = (tmp_path / "serve.log").read_text()
            assert "Traceback" not in serve_log, serve_log  # readiness probes included
            assert serve_log.count("readiness: the database is unavailable") == 1, serve_log
            retried = [e.task_id for e in event_rows(platform, job_id, "task_retry")]
            print(
                f"restart: API back {api_back_after:.1f}s after the server started, "
                f"{done_at_return} tasks done then, job finished {finished_after:.1f}s later, "
                f"{len(retried)} attempt(s) retried"
            )
        finally:
            workers.stop()
            platform.close()


def _succeeded_counter(url: str, job_id: str) -> Callable[[], int]:
    """A function counting the job's succeeded tasks (0 while the database is away)."""

    def count() -> int:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM tasks JOIN jobs USING (job_key)"
                    " WHERE jobs.job_id = %s AND tasks.status = 'succeeded'",
                    (job_id,),
                ).fetchone()
                return int(row[0]) if row else 0
        except psycopg.OperationalError:
            return 0

    return count


def _first_ok(url: str, headers: dict[str, str], timeout: float) -> float:
    """Poll ``url`` until it answers 200; returns when (time.monotonic())."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, headers=headers, timeout=5)
            if answer.status_code == 200:
                return time.monotonic()
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"the API did not answer within {timeout}s: {last}")


@pytest.mark.postgres
def test_worker_started_during_an_outage_waits_for_the_database(home: Path, tmp_path: Path) -> None:
    """``geoetl worker`` started while PostgreSQL is down waits, then works; no crash loop."""
    with own_cluster() as cluster:
        settings = Settings(home=home, database_url=cluster.create_database("geoetl"))
        Platform.from_settings(settings).close()  # the schema, installed once
        cluster.stop("fast")
        workers = Workers(settings, tmp_path)
        try:
            proc = workers.start(concurrency=2)
            wait_for(
                lambda: workers.output().count("the database is unavailable") >= 2,
                timeout=60,
                what="both workers to notice the database is away",
            )
            cluster.start()
            platform = Platform.from_settings(settings)
            try:
                job_id, _ = platform.store.submit("fan_out_demo", {"n": 20})
                wait_for(
                    lambda: platform.store.job_status(job_id) == JobStatus.succeeded,
                    timeout=60,
                    what="the waiting workers to run the job",
                )
            finally:
                platform.close()
            assert proc.poll() is None
            output = workers.output()
            assert "exited with" not in output  # no worker crashed and was restarted
            assert "Traceback" not in output, output
        finally:
            workers.stop()
