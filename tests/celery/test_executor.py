"""The Celery executor on real brokers (Redis, RabbitMQ) and PostgreSQL, through `geoetl worker`.

Celery only dispatches: every test checks in the job store that each task ran once (its
attempt is 1, one ``task_succeeded`` event) whatever messages the broker carried.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from geoetl.celery_executor import CeleryDispatcher, make_celery_app
from geoetl.engine.dispatch import Runnable
from geoetl.engine.models import JobStatus
from geoetl.ingest import store_in_bronze
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.celery.brokers import RedisServer, queue_depth
from tests.celery.conftest import Processes, celery_settings_for
from tests.engine.helpers import event_rows, task_rows, wait_for

DATA = Path(__file__).parents[2] / "examples" / "data"
TERMINAL = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}


def finished(platform: Platform, job_id: str, timeout: float = 90.0) -> JobStatus:
    """The job's status once it ended."""

    def ended() -> JobStatus | None:
        status = platform.store.job_status(job_id)
        return status if status in TERMINAL else None

    status: JobStatus = wait_for(ended, timeout, f"job {job_id[:12]} to end")
    return status


def assert_each_task_once(platform: Platform, job_id: str) -> list[Any]:
    """Every task succeeded on its first attempt, with exactly one task_succeeded event."""
    rows = task_rows(platform, job_id)
    assert rows
    assert {r.status for r in rows} == {"succeeded"}
    assert [r.task_id for r in rows if r.attempt != 1] == []
    succeeded = Counter(e.task_id for e in event_rows(platform, job_id, "task_succeeded"))
    assert succeeded == Counter({r.task_id: 1 for r in rows})
    return rows


def drained(broker_url: str, *queues: str) -> bool:
    return all(queue_depth(broker_url, q) == 0 for q in queues)


def worker_pids(proc: Any) -> set[int]:
    """The pids of a `geoetl worker` and its Celery pool processes."""
    parent = psutil.Process(proc.pid)
    return {parent.pid, *(c.pid for c in parent.children(recursive=True))}


def pid_of(worker_id: str) -> int:
    """The process id inside a worker id (``host:pid:name``)."""
    return int(worker_id.split(":")[-2])


def test_fan_out_runs_every_task_exactly_once(
    celery_platform: Platform, celery_settings: Settings, processes: Processes
) -> None:
    worker = processes.worker(celery_settings, "--concurrency", "2")
    n = 300
    job_id, _ = celery_platform.store.submit("fan_out_demo", {"n": n})
    assert finished(celery_platform, job_id) == JobStatus.succeeded
    assert celery_platform.queries.job(job_id).result == {"sum": n * (n - 1) // 2, "count": n}
    rows = assert_each_task_once(celery_platform, job_id)
    assert len(rows) == n + 2
    # Run by the Celery pool's processes, both of them.
    pids = {pid_of(r.worker_id) for r in rows}
    assert pids <= worker_pids(worker)
    assert all(r.worker_id.endswith(":celery") for r in rows)


def test_messages_for_tasks_no_longer_queued_are_dropped(
    celery_platform: Platform, celery_settings: Settings, processes: Processes
) -> None:
    broker = celery_settings.broker_url
    assert broker is not None
    # Cancelled while its messages wait in the broker (no worker yet): they are dropped.
    cancelled, _ = celery_platform.store.submit("fan_out_demo", {"n": 3, "seed": 1})
    wait_for(lambda: queue_depth(broker, "default") == 1, 10, "the plan task's message")
    celery_platform.store.cancel(cancelled)
    processes.worker(celery_settings, "--concurrency", "2")
    wait_for(lambda: drained(broker, "default"), 60, "the worker to read the message")
    # Done: every message sent again, and one for a task that never existed.
    done, _ = celery_platform.store.submit("fan_out_demo", {"n": 20, "seed": 2})
    assert finished(celery_platform, done) == JobStatus.succeeded
    events_before = len(event_rows(celery_platform, done))
    again = [Runnable(r.task_id, r.queue, 0.0) for r in task_rows(celery_platform, done)]
    dispatcher = CeleryDispatcher(celery_settings)
    try:
        dispatcher.dispatch([*again, *again, Runnable("no-such-task", "default", 0.0)])
    finally:
        dispatcher.close()
    wait_for(lambda: drained(broker, "default"), 30, "the resent messages to be read")
    time.sleep(1.0)  # a task claimed by a message just read would be running by now
    assert_each_task_once(celery_platform, done)
    assert len(event_rows(celery_platform, done)) == events_before
    assert celery_platform.store.job_status(cancelled) == JobStatus.cancelled
    assert {r.attempt for r in task_rows(celery_platform, cancelled)} == {0}


def test_a_task_runs_only_on_a_worker_of_its_queue(
    celery_platform: Platform, celery_settings: Settings, processes: Processes
) -> None:
    broker = celery_settings.broker_url
    assert broker is not None
    vector_worker = processes.worker(celery_settings, "--queues", "vector")
    raster_key = store_in_bronze(celery_platform.objects, DATA / "elev.tif")
    vector_key = store_in_bronze(celery_platform.objects, DATA / "lux.shp")
    raster, _ = celery_platform.store.submit("process_raster", {"source": raster_key})
    vector, _ = celery_platform.store.submit("process_vector", {"source": vector_key})
    assert finished(celery_platform, vector) == JobStatus.succeeded
    # The raster job's first task waits for a raster worker, its message too.
    [validate] = task_rows(celery_platform, raster)
    assert (validate.status, validate.attempt) == ("queued", 0)
    assert queue_depth(broker, "raster") == 1
    # A raster task's message misrouted to the vector queue: read there, and dropped.
    dispatcher = CeleryDispatcher(celery_settings)
    try:
        dispatcher.dispatch([Runnable(validate.task_id, "vector", 0.0)])
    finally:
        dispatcher.close()
    wait_for(lambda: drained(broker, "vector"), 30, "the vector worker to read it")
    time.sleep(1.0)
    [validate] = task_rows(celery_platform, raster)
    assert (validate.status, validate.attempt) == ("queued", 0)
    raster_worker = processes.worker(celery_settings, "--queues", "raster")
    assert finished(celery_platform, raster) == JobStatus.succeeded
    raster_pids, vector_pids = worker_pids(raster_worker), worker_pids(vector_worker)
    for row in assert_each_task_once(celery_platform, raster):
        assert row.queue == "raster"
        assert pid_of(row.worker_id) in raster_pids
    for row in assert_each_task_once(celery_platform, vector):
        assert row.queue == "vector"
        assert pid_of(row.worker_id) in vector_pids


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_tasks_longer_than_the_visibility_timeout_run_once(
    home: Path, pg_database_url: str, broker_url: str, processes: Processes
) -> None:
    # Redis hands an unacknowledged message to another consumer after the visibility
    # timeout; acknowledged before its task runs, a message is never handed out again.
    settings = celery_settings_for(
        home, pg_database_url, broker_url, broker_transport_options={"visibility_timeout": 1}
    )
    platform = Platform.from_settings(settings)
    try:
        processes.worker(settings, "--concurrency", "2")
        job_id, _ = platform.store.submit("fan_out_demo", {"n": 4, "sleep_ms": 2500})
        assert finished(platform, job_id) == JobStatus.succeeded
        assert_each_task_once(platform, job_id)
        assert len(event_rows(platform, job_id, "task_started")) == len(task_rows(platform, job_id))
    finally:
        platform.close()


def _seed_with_retries(n: int, flaky: float, attempts: int) -> int:
    """A fan_out_demo seed whose flaky tasks all succeed within ``attempts``, some retried."""
    for seed in range(1000):
        fails = [
            next(
                (
                    a
                    for a in range(1, attempts + 1)
                    if random.Random(f"{seed}:{i}:{a}").random() >= flaky
                ),
                None,
            )
            for i in range(n)
        ]
        if None not in fails and sum(a > 1 for a in fails if a) >= n // 5:
            return seed
    raise AssertionError("no seed found")


def test_retries_are_sent_when_due_without_the_janitor(
    home: Path, pg_database_url: str, broker_url: str, processes: Processes
) -> None:
    # Re-dispatch far away and no janitor: only the dispatcher's timer can send retries.
    settings = celery_settings_for(
        home,
        pg_database_url,
        broker_url,
        retry_base_seconds=0.3,
        retry_max_seconds=0.6,
        redispatch_after_seconds=600,
    )
    platform = Platform.from_settings(settings)
    try:
        processes.worker(settings, "--concurrency", "2")
        n, flaky = 40, 0.4
        seed = _seed_with_retries(n, flaky, attempts=5)
        started = time.monotonic()
        job_id, _ = platform.store.submit("fan_out_demo", {"n": n, "flaky": flaky, "seed": seed})
        assert finished(platform, job_id, timeout=60) == JobStatus.succeeded
        assert time.monotonic() - started < 60
        rows = task_rows(platform, job_id)
        retried = [r for r in rows if r.attempt > 1]
        assert len(retried) >= n // 5
        assert len(event_rows(platform, job_id, "task_retry")) == sum(r.attempt - 1 for r in rows)
        succeeded = Counter(e.task_id for e in event_rows(platform, job_id, "task_succeeded"))
        assert succeeded == Counter({r.task_id: 1 for r in rows})
    finally:
        platform.close()


def test_broker_down_at_submit_is_recovered_by_the_janitor(
    home: Path, pg_database_url: str, processes: Processes, tmp_path: Path
) -> None:
    broker = RedisServer(tmp_path / "redis")
    broker.start()
    try:
        settings = celery_settings_for(home, pg_database_url, broker.url)
        platform = Platform.from_settings(settings)
        try:
            processes.worker(settings, "--concurrency", "2")
            processes.janitor(settings, "--interval", "0.5")
            warm, _ = platform.store.submit("fan_out_demo", {"n": 5, "seed": 1})
            assert finished(platform, warm) == JobStatus.succeeded
            broker.stop()
            started = time.monotonic()
            job_id, _ = platform.store.submit("fan_out_demo", {"n": 50, "seed": 2})
            # The submit neither raised nor waited for the broker.
            assert time.monotonic() - started < 5
            time.sleep(1.0)
            assert {r.attempt for r in task_rows(platform, job_id)} == {0}
            broker.start()
            assert finished(platform, job_id, timeout=60) == JobStatus.succeeded
            assert platform.queries.job(job_id).result == {"sum": 50 * 49 // 2, "count": 50}
            assert_each_task_once(platform, job_id)
        finally:
            platform.close()
    finally:
        broker.stop()


def test_app_acknowledges_early_with_a_prefetch_of_one(celery_settings: Settings) -> None:
    settings = celery_settings.model_copy(
        update={"broker_transport_options": {"peek_lock_seconds": 120}}
    )
    app = make_celery_app(settings)
    try:
        assert app.conf.task_acks_late is False
        assert app.conf.worker_prefetch_multiplier == 1
        assert app.conf.result_backend is None
        assert app.conf.task_serializer == "json"
        assert app.conf.broker_transport_options["peek_lock_seconds"] == 120
        assert "geoetl.run" in app.tasks
    finally:
        app.close()
