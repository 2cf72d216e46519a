"""Real worker processes: concurrency, a kill -9 mid-task, and the janitor's recovery."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from geoetl.engine.models import JobStatus, TaskStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_janitor
from tests.conftest import start_geoetl
from tests.engine.helpers import Workers, event_rows, task_rows, wait_for


def test_four_workers_run_a_thousand_tasks_exactly_once(
    platform: Platform, workers: Workers
) -> None:
    for _ in range(4):
        workers.start()
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 1000, "sleep_ms": 2})
    # One read per poll: two reads could see "queued" and then "running" and stop early.
    wait_for(
        lambda: platform.store.job_status(job_id) not in (JobStatus.queued, JobStatus.running),
        timeout=120,
        what="the 1,000-task job",
    )
    view = platform.queries.job(job_id)
    assert view.status == JobStatus.succeeded, workers.output()
    assert view.result == {"sum": 499500, "count": 1000}
    rows = task_rows(platform, job_id)
    assert len(rows) == 1002
    assert {r.status for r in rows} == {TaskStatus.succeeded}
    explained = {e.task_id for e in event_rows(platform, job_id, "task_retry")}
    unexplained = [r.task_id for r in rows if r.attempt > 1 and r.task_id not in explained]
    assert unexplained == []
    # Each task's success was recorded once.
    succeeded = [e.task_id for e in event_rows(platform, job_id, "task_succeeded")]
    assert len(succeeded) == len(set(succeeded)) == 1002
    # The work was shared: more than one worker process ran tasks.
    assert len({r.worker_id for r in rows}) > 1
    assert "Traceback" not in workers.output()


def test_killed_worker_task_is_finished_by_another(platform: Platform, workers: Workers) -> None:
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
    # The janitor re-queues the task once the dead worker's lease (3 s) runs out.
    wait_for(
        lambda: task_id in make_janitor(platform).run_once().requeued,
        timeout=20,
        what="the janitor to re-queue the dead worker's task",
    )
    wait_for(
        lambda: platform.store.job_status(job_id) == JobStatus.succeeded,
        timeout=60,
        what="the survivor to finish the job",
    )
    assert survivor.poll() is None
    assert platform.queries.job(job_id).result == {"sum": 1, "count": 2}
    [row] = [r for r in task_rows(platform, job_id) if r.task_id == task_id]
    assert row.status == TaskStatus.succeeded
    assert row.attempt >= 2
    assert f":{survivor.pid}:" in row.worker_id
    causes = [e.message for e in event_rows(platform, job_id, "task_retry")]
    assert any(f":{victim.pid}:" in c and "stopped renewing the lease" in c for c in causes)


def test_worker_pool_shares_work_and_stops_cleanly(platform: Platform, workers: Workers) -> None:
    pool = workers.start(concurrency=2)
    # Slow enough tasks (batch of one) that the second process joins in whatever its start-up.
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 40, "sleep_ms": 150})
    wait_for(
        lambda: platform.store.job_status(job_id) == JobStatus.succeeded,
        timeout=60,
        what="the pool to finish the job",
    )
    rows = task_rows(platform, job_id)
    assert len({r.worker_id for r in rows}) == 2
    pool.send_signal(signal.SIGINT)
    assert pool.wait(30) == 0


def test_a_worker_on_another_machine_cleans_its_own_scratch(
    platform: Platform, settings: Settings, tmp_path: Path
) -> None:
    # A worker whose home (scratch) is its own, sharing only the database: leftovers of
    # ended jobs in its scratch go, those of a job still open stay.
    ended, _ = platform.store.submit("hello", {"name": "ended"})
    platform.store.cancel(ended)
    open_job, _ = platform.store.submit("fan_out_demo", {"n": 3})  # queue nobody serves here
    home = tmp_path / "machine-b"
    scratch = home / "scratch"
    for job_id in (ended, open_job):
        (scratch / job_id / "task").mkdir(parents=True)
        (scratch / job_id / "task" / "part.tif").write_bytes(b"x" * 1024)
    other = settings.model_copy(update={"home": home, "janitor_interval_seconds": 0.2})
    proc = start_geoetl(other, "worker", "--queues", "vector", log=tmp_path / "b.log")
    try:
        wait_for(lambda: not (scratch / ended).exists(), 30, "the ended job's scratch removed")
        assert (scratch / open_job / "task" / "part.tif").exists()
        assert platform.store.job_status(open_job) == JobStatus.queued
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
