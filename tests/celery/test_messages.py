"""How task ids go into messages, and how a process claims a message's ids."""

from __future__ import annotations

from collections import Counter

from geoetl.celery_executor import MAX_IDS_PER_MESSAGE, SPREAD, make_celery_app, messages
from geoetl.engine.dispatch import Runnable
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.celery.brokers import queue_depth
from tests.engine.helpers import task_rows


def runnable(n: int, queue: str = "default") -> list[Runnable]:
    return [Runnable(f"t{i}", queue, 0.0) for i in range(n)]


def test_a_few_tasks_get_a_message_each() -> None:
    assert messages(runnable(SPREAD * 2 - 1)) == [("default", [f"t{i}"]) for i in range(31)]


def test_a_large_stage_shares_messages_and_keeps_queues_apart() -> None:
    sent = messages([*runnable(2000), *runnable(3, "raster")])
    by_queue = Counter(queue for queue, _ in sent)
    assert by_queue["raster"] == 3
    assert SPREAD <= by_queue["default"] <= 2000 // SPREAD
    assert max(len(ids) for _, ids in sent) == MAX_IDS_PER_MESSAGE
    ids = [i for queue, ids in sent if queue == "default" for i in ids]
    assert ids == [f"t{i}" for i in range(2000)]  # each once, in order


def test_after_a_slow_task_the_unclaimed_ids_go_back_one_per_message(
    celery_platform: Platform, celery_settings: Settings
) -> None:
    broker = celery_settings.broker_url
    assert broker is not None
    app = make_celery_app(celery_settings)
    runners = app.geoetl_runners
    try:
        job_id, _ = celery_platform.store.submit("fan_out_demo", {"n": 3, "sleep_ms": 150})
        [plan] = task_rows(celery_platform, job_id)
        # This process plays a Celery worker's.
        assert runners.run([plan.task_id], "default") == 1
        work = [r.task_id for r in task_rows(celery_platform, job_id) if r.stage == "work"]
        before = queue_depth(broker, "default")
        claimed = runners.run(work, "default")
        assert 1 <= claimed <= 2  # the first claim takes 1 or 2, as fast as the plan was
        # The first slow task stopped it: the ids it did not claim went back, one message each.
        queued = [r.task_id for r in task_rows(celery_platform, job_id) if r.status == "queued"]
        assert queued == work[claimed:]
        assert queue_depth(broker, "default") == before + len(queued)
        # Claimed one at a time from now on (the tasks are slow).
        assert runners.run(queued, "default") == 1
        assert runners.run(queued, "default") == len(queued) - 1
        work_rows = [r for r in task_rows(celery_platform, job_id) if r.stage == "work"]
        assert [(r.status, r.attempt) for r in work_rows] == [("succeeded", 1)] * 3
    finally:
        runners.close()
        app.close()
