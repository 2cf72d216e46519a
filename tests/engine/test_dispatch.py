"""The dispatcher seam: told after commit which tasks became runnable, never before.

A recording dispatcher stands in for the broker here (it is the engine's own seam);
the job store under it is the real SQLite or PostgreSQL database, and the recorder
reads the tasks back through another connection to prove the commit happened first.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from geoetl.engine import ids
from geoetl.engine.dispatch import NotifyDispatcher, PollingDispatcher, Runnable
from geoetl.engine.models import Completion, JobStatus, TaskStatus
from geoetl.engine.schema import tasks
from geoetl.engine.store import JobStore
from geoetl.engine.waker import ListenWaker
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.errors import TransientError
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_janitor, make_runner
from geoetl.workflows import default_registry
from tests.conftest import geoetl_cmd, settings_env
from tests.engine.helpers import expire_lease, task_rows, wait_for


class Count(BaseModel):
    n: int = 3
    flaky: bool = False


def _split(params: Count, ctx: Any) -> int:
    return params.n


def _items(params: Count, results: StageResults) -> list[int]:
    return list(range(results["split"]))


def _work(params: Count, ctx: Any) -> int:
    if params.flaky:
        raise TransientError("the object store is busy")
    return int(ctx.item)


def _lost_connection_plan(params: Count, results: StageResults) -> list[int]:
    # A database error inside the fan-in transaction: it must roll back whole.
    raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection lost mid-plan"))


ROUTED = Workflow(
    "routed",
    params=Count,
    stages=[
        Stage("split", _split, queue="light"),
        Stage("work", _work, plan=_items, queue="heavy", retry=Retry(attempts=3)),
    ],
)
DOOMED = Workflow(
    "doomed",
    params=Count,
    stages=[Stage("first", _split, queue="light"), Stage("fan", _work, plan=_lost_connection_plan)],
)


class Recorder:
    """A dispatcher that records each call and what another connection saw of its tasks."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.calls: list[list[Runnable]] = []
        self.seen: dict[str, str] = {}

    def dispatch(self, runnable: Sequence[Runnable]) -> None:
        wanted = [r.task_id for r in runnable]
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(tasks.c.task_id, tasks.c.status).where(tasks.c.task_id.in_(wanted))
            ).all()
        self.seen.update({r.task_id: r.status for r in rows})
        self.calls.append(list(runnable))

    def close(self) -> None:
        pass

    def take(self) -> list[Runnable]:
        """Everything dispatched since the last take, in order."""
        out = [r for call in self.calls for r in call]
        self.calls.clear()
        return out


@pytest.fixture
def routed(settings: Settings) -> Iterator[Platform]:
    registry = default_registry()
    registry.add(ROUTED)
    registry.add(DOOMED)
    p = Platform.from_settings(settings, registry)
    yield p
    p.close()


@pytest.fixture
def recorder(routed: Platform) -> Recorder:
    rec = Recorder(routed.store)
    routed.store.dispatcher = rec
    return rec


def _claim_one(platform: Platform, task_id: str) -> Any:
    [task] = platform.store.claim("t", task_ids=[task_id])
    return task


def _row(platform: Platform, job_id: str, task_id: str) -> Any:
    [row] = [r for r in task_rows(platform, job_id) if r.task_id == task_id]
    return row


def test_submit_dispatches_the_first_stage_once_committed(
    routed: Platform, recorder: Recorder
) -> None:
    before = time.time()
    job_id, _ = routed.store.submit("routed", {"n": 3})
    [split] = recorder.take()
    assert split.task_id == ids.task_id(job_id, "split", 0)
    assert split.queue == "light"
    assert before <= split.available_at <= time.time()
    assert split.available_at == _row(routed, job_id, split.task_id).available_at
    assert recorder.seen[split.task_id] == TaskStatus.queued  # visible: committed first
    # The same job again creates nothing, and dispatches nothing.
    assert routed.store.submit("routed", {"n": 3}) == (job_id, True)
    assert recorder.take() == []


def test_fan_in_dispatches_every_task_of_the_next_stage(
    routed: Platform, recorder: Recorder
) -> None:
    job_id, _ = routed.store.submit("routed", {"n": 3})
    recorder.take()
    split = _claim_one(routed, ids.task_id(job_id, "split", 0))
    assert recorder.take() == []  # a claim makes nothing runnable
    assert routed.store.complete([Completion(split.task_id, split.attempt, 3)]) == []
    work = recorder.take()
    assert [(r.task_id, r.queue) for r in work] == [
        (ids.task_id(job_id, "work", i), "heavy") for i in range(3)
    ]
    assert {recorder.seen[r.task_id] for r in work} == {TaskStatus.queued}


def test_retry_is_dispatched_with_its_backoff(routed: Platform, recorder: Recorder) -> None:
    job_id, _ = routed.store.submit("routed", {"n": 1, "flaky": True})
    runner = make_runner(routed, "flaky")
    try:
        runner.run_once(job_id)  # split: succeeds, and the work stage is dispatched
        recorder.take()
        failed_at = time.time()
        runner.run_once(job_id)  # work: a transient error, re-queued with a backoff
    finally:
        runner.close()
    [retry] = recorder.take()
    task_id = ids.task_id(job_id, "work", 0)
    assert (retry.task_id, retry.queue) == (task_id, "heavy")
    row = _row(routed, job_id, task_id)
    assert (row.status, row.attempt) == (TaskStatus.queued, 1)
    assert retry.available_at == row.available_at
    assert retry.available_at > failed_at  # runnable only once its backoff has passed


def test_expired_lease_and_resubmit_are_dispatched(routed: Platform, recorder: Recorder) -> None:
    job_id, _ = routed.store.submit("routed", {"n": 1})
    recorder.take()
    split = _claim_one(routed, ids.task_id(job_id, "split", 0))
    expire_lease(routed, split.task_id)
    assert routed.store.expire_leases() == ([split.task_id], [])
    [again] = recorder.take()
    assert (again.task_id, again.queue) == (split.task_id, "light")
    assert recorder.seen[split.task_id] == TaskStatus.queued

    new_id = routed.store.resubmit(job_id)
    [first] = recorder.take()
    assert (first.task_id, first.queue) == (ids.task_id(new_id, "split", 0), "light")
    assert recorder.seen[first.task_id] == TaskStatus.queued


def test_a_rolled_back_transaction_dispatches_nothing(routed: Platform, recorder: Recorder) -> None:
    job_id, _ = routed.store.submit("doomed", {"n": 2})
    recorder.take()
    first = _claim_one(routed, ids.task_id(job_id, "first", 0))
    with pytest.raises(sa.exc.OperationalError):
        routed.store.complete([Completion(first.task_id, first.attempt, 2)])
    assert recorder.take() == []
    # Rolled back whole: the task is still running with its attempt, no fan task exists.
    rows = task_rows(routed, job_id)
    assert [(r.task_id, r.status) for r in rows] == [(first.task_id, TaskStatus.running)]


def test_janitor_redispatches_tasks_queued_too_long(routed: Platform, recorder: Recorder) -> None:
    job_id, _ = routed.store.submit("routed", {"n": 1})
    recorder.take()
    janitor = make_janitor(routed)
    report = wait_for(lambda: janitor.run_once().redispatched, timeout=10, what="a stale task")
    task_id = ids.task_id(job_id, "split", 0)
    assert report == [task_id]
    [again] = recorder.take()
    assert (again.task_id, again.queue) == (task_id, "light")
    assert again.available_at == _row(routed, job_id, task_id).available_at


def test_geoetl_janitor_once_redispatches_a_stale_task(
    settings: Settings, platform: Platform
) -> None:
    job_id, _ = platform.store.submit("hello", {"name": "forgotten"})
    time.sleep(settings.redispatch_after_seconds + 0.2)
    out = subprocess.run(
        geoetl_cmd("janitor", "--once"),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "re-dispatched 1" in out.stdout
    assert f"re-dispatched: {ids.task_id(job_id, 'greet', 0)}" in out.stdout


def test_claim_takes_only_the_named_tasks_still_queued(routed: Platform) -> None:
    store = routed.store
    job_id, _ = store.submit("routed", {"n": 4})
    split = _claim_one(routed, ids.task_id(job_id, "split", 0))
    store.complete([Completion(split.task_id, split.attempt, 4)])
    work = [ids.task_id(job_id, "work", i) for i in range(4)]

    # Every named task that is runnable, whatever the limit; nothing else.
    claimed = store.claim("w", task_ids=[work[1], work[2]])
    assert sorted(t.task_id for t in claimed) == [work[1], work[2]]
    # No longer queued: nothing. Unknown ids: nothing.
    assert store.claim("w", task_ids=[work[1]]) == []
    assert store.claim("w", task_ids=["no-such-task"]) == []
    assert store.claim("w", task_ids=[]) == []
    # A worker of another queue does not take it.
    assert store.claim("w", task_ids=[work[0]], queues=["light"]) == []
    # A retry waiting for its backoff is not available yet.
    store.fail(work[1], 1, {"kind": "x", "message": "busy"}, retryable=True)
    store.retry_base_seconds = store.retry_max_seconds = 60.0
    [w2] = [t for t in claimed if t.task_id == work[2]]
    store.fail(w2.task_id, w2.attempt, {"kind": "x", "message": "busy"}, retryable=True)
    assert store.claim("w", task_ids=[work[2]]) == []
    # Cancelled: nothing.
    store.cancel(job_id)
    assert store.claim("w", task_ids=[work[0], work[3]]) == []
    statuses = {r.task_id: r.status for r in task_rows(routed, job_id)}
    assert {statuses[t] for t in work} == {TaskStatus.cancelled}


def test_runner_runs_exactly_the_named_tasks(routed: Platform) -> None:
    job_id, _ = routed.store.submit("routed", {"n": 3})
    runner = make_runner(routed, "named")
    try:
        assert runner.run_once(task_ids=[ids.task_id(job_id, "split", 0)]) == 1
        work = [ids.task_id(job_id, "work", i) for i in range(3)]
        assert runner.run_once(task_ids=[work[0], work[2]]) == 2
        assert runner.run_once(task_ids=[work[0]]) == 0  # done already: nothing to run
        statuses = {r.task_id: r.status for r in task_rows(routed, job_id)}
        assert [statuses[t] for t in work] == [
            TaskStatus.succeeded,
            TaskStatus.queued,
            TaskStatus.succeeded,
        ]
        assert runner.run_once(task_ids=[work[1]]) == 1
    finally:
        runner.close()
    assert routed.store.job_status(job_id) == JobStatus.succeeded
    assert routed.queries.job(job_id).result == [0, 1, 2]


# -- PostgreSQL NOTIFY ---------------------------------------------------------------------


@pytest.fixture
def pg_routed(routed: Platform, backend: str) -> Platform:
    if backend != "postgres":
        pytest.skip("NOTIFY is PostgreSQL's")
    assert isinstance(routed.store.dispatcher, NotifyDispatcher)
    return routed


def _listen(platform: Platform) -> psycopg.Connection[Any]:
    dsn = platform.store.engine.url.set(drivername="postgresql")
    conn = psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True)
    conn.execute("LISTEN geoetl_tasks")
    return conn


def _payloads(conn: psycopg.Connection[Any], wait: float = 1.0) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=wait)]


def test_notify_names_each_queue_once_per_commit(pg_routed: Platform) -> None:
    listener = _listen(pg_routed)
    try:
        job_id, _ = pg_routed.store.submit("routed", {"n": 50})
        assert _payloads(listener) == ["light"]
        split = _claim_one(pg_routed, ids.task_id(job_id, "split", 0))
        assert _payloads(listener, 0.3) == []  # a claim makes nothing runnable
        pg_routed.store.complete([Completion(split.task_id, split.attempt, 50)])
        assert _payloads(listener) == ["heavy"]  # 50 tasks, one notification
    finally:
        listener.close()


def test_notify_wakes_a_listening_worker_once_committed(pg_routed: Platform) -> None:
    waker = ListenWaker(pg_routed.store.engine, "test")
    woken: list[tuple[bool, float]] = []

    def wait() -> None:
        woken.append((waker.wait(20.0), time.monotonic()))

    try:
        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)  # the waiter is blocked in its LISTEN connection
        # A notification in a transaction that rolls back reaches nobody.
        with pg_routed.store.engine.connect() as conn:
            conn.execute(sa.select(sa.func.pg_notify("geoetl_tasks", "uncommitted")))
            time.sleep(0.5)
            assert not woken
            conn.rollback()
        time.sleep(0.3)
        assert not woken
        submitted = time.monotonic()
        job_id, _ = pg_routed.store.submit("routed", {"n": 1})
        thread.join(10)
        assert woken, "the worker was not woken by the commit"
        assert woken[0][0]
        assert woken[0][1] - submitted < 2.0
        runner = make_runner(pg_routed, "woken", queues=["light"])
        try:
            assert runner.run_once() == 1  # the woken worker finds the task committed
        finally:
            runner.close()
        assert _row(pg_routed, job_id, ids.task_id(job_id, "split", 0)).status == "succeeded"
    finally:
        waker.close()


def test_a_worker_sleeps_through_other_queues_notifications(pg_routed: Platform) -> None:
    waker = ListenWaker(pg_routed.store.engine, "heavy only", queues=["heavy"])
    try:
        job_id, _ = pg_routed.store.submit("routed", {"n": 2})  # notifies "light"
        assert waker.wait(1.0) is False
        split = _claim_one(pg_routed, ids.task_id(job_id, "split", 0))
        pg_routed.store.complete([Completion(split.task_id, split.attempt, 2)])  # "heavy"
        started = time.monotonic()
        assert waker.wait(5.0) is True
        assert time.monotonic() - started < 1.0
    finally:
        waker.close()


def test_the_local_executor_notifies_on_postgresql_and_polls_on_sqlite(
    platform: Platform, backend: str
) -> None:
    dispatcher = platform.store.dispatcher
    expected = NotifyDispatcher if backend == "postgres" else PollingDispatcher
    assert type(dispatcher) is expected
    # Neither needs every task id of a million-task stage: one per queue is enough.
    assert getattr(dispatcher, "wants_ids", True) is False


def test_a_dispatcher_without_wants_ids_gets_one_task_per_queue(routed: Platform) -> None:
    class PerQueue(Recorder):
        wants_ids = False

    recorder = PerQueue(routed.store)
    routed.store.dispatcher = recorder
    job_id, _ = routed.store.submit("routed", {"n": 500})
    split = _claim_one(routed, ids.task_id(job_id, "split", 0))
    recorder.take()
    routed.store.complete([Completion(split.task_id, split.attempt, 500)])
    [one] = recorder.take()
    assert (one.task_id, one.queue) == (ids.task_id(job_id, "work", 0), "heavy")
    assert recorder.seen[one.task_id] == TaskStatus.queued
    assert routed.queries.job(job_id).stages[1].queued == 500
