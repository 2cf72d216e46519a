"""Job lifecycle on both backends: ids, idempotency, fan-in, failures, retries, fencing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from geoetl.engine import ids
from geoetl.engine.dispatch import PollingDispatcher
from geoetl.engine.models import Completion, JobStatus, TaskStatus
from geoetl.engine.runner import Runner
from geoetl.engine.waker import make_waker
from geoetl.engine.workflow import ParamsError, Registry, Stage, StageResults, Workflow
from geoetl.errors import Conflict, InputError, NotFound, StaleAttempt
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_janitor, make_runner
from geoetl.workflows import default_registry
from tests.conftest import settings_env
from tests.engine.helpers import (
    event_rows,
    expire_lease,
    make_runnable_now,
    task_rows,
    wait_for,
)


@pytest.fixture
def runner(platform: Platform) -> Iterator[Runner]:
    r = make_runner(platform, "test-runner")
    yield r
    r.close()


def test_identical_submissions_share_one_job(platform: Platform) -> None:
    first, idem1 = platform.store.submit("fan_out_demo", {"n": 3})
    second, idem2 = platform.store.submit("fan_out_demo", {"n": 3, "sleep_ms": 0})
    assert (idem1, idem2) == (False, True)
    assert first == second
    # The id is the hash of the validated params, defaults included.
    full = {"n": 3, "sleep_ms": 0.0, "fail_at": None, "flaky": None, "seed": 0}
    assert first == ids.job_id("fan_out_demo", 1, full)
    other, idem3 = platform.store.submit("fan_out_demo", {"n": 4})
    assert other != first
    assert not idem3


def test_bad_params_name_the_field(platform: Platform) -> None:
    with pytest.raises(ParamsError) as err:
        platform.store.submit("fan_out_demo", {"n": -5, "flaky": 2})
    locs = {tuple(e["loc"]) for e in err.value.errors}
    assert locs == {("n",), ("flaky",)}
    assert "n:" in str(err.value)


def test_unknown_workflow_lists_known_ones(platform: Platform) -> None:
    with pytest.raises(NotFound, match=r"known workflows: fan_out_demo, hello"):
        platform.store.submit("nope", {})


def test_fan_out_job_runs_to_exact_result(platform: Platform, runner: Runner) -> None:
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 250})
    assert runner.run_job(job_id) == JobStatus.succeeded
    view = platform.queries.job(job_id)
    assert view.result == {"sum": sum(range(250)), "count": 250}
    assert [(s.name, s.total, s.succeeded) for s in view.stages] == [
        ("plan", 1, 1),
        ("work", 250, 250),
        ("sum", 1, 1),
    ]
    rows = task_rows(platform, job_id)
    assert len(rows) == 252
    assert {r.status for r in rows} == {TaskStatus.succeeded}
    assert {r.attempt for r in rows} == {1}
    assert rows[0].task_id == ids.task_id(job_id, rows[0].stage, rows[0].idx)
    kinds = [e.kind for e in event_rows(platform, job_id) if e.task_id is None]
    assert kinds[0] == "job_submitted"
    assert kinds.count("stage_started") == 3
    assert kinds[-1] == "job_succeeded"
    # Completed jobs return their cached result on resubmission of the same params.
    again, idem = platform.store.submit("fan_out_demo", {"n": 250})
    assert (again, idem) == (job_id, True)
    assert platform.queries.job(again).result == view.result


def test_finished_tasks_are_not_reported_as_lost_leases(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch commits its finished tasks as it goes and the heartbeat keeps renewing the
    rest; a task that finished is not a lost lease, and operators must not be told so."""
    fast = settings.model_copy(update={"heartbeat_seconds": 0.01})
    platform = Platform.from_settings(fast)
    runner = make_runner(platform, "beating")
    try:
        job_id, _ = platform.store.submit("fan_out_demo", {"n": 300, "sleep_ms": 4})
        with caplog.at_level("WARNING", logger="geoetl"):
            assert runner.run_job(job_id) == JobStatus.succeeded
    finally:
        runner.close()
        platform.close()
    assert platform.queries.job(job_id).result == {"sum": sum(range(300)), "count": 300}
    lost = [r.getMessage() for r in caplog.records if "lost the lease" in r.getMessage()]
    assert lost == []


def test_empty_fan_out_skips_the_stage(platform: Platform, runner: Runner) -> None:
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 0})
    assert runner.run_job(job_id) == JobStatus.succeeded
    assert platform.queries.job(job_id).result == {"sum": 0, "count": 0}
    assert event_rows(platform, job_id, "stage_skipped")


def test_resubmit_numbers_runs_deterministically(platform: Platform, runner: Runner) -> None:
    job_id, _ = platform.store.submit("hello", {"name": "a"})
    runner.run_job(job_id)
    run2 = platform.store.resubmit(job_id)
    params = platform.queries.job(job_id).params
    assert run2 == ids.job_id("hello", 1, params, run=2)
    assert platform.queries.job(run2).run == 2
    assert runner.run_job(run2) == JobStatus.succeeded
    run3 = platform.store.resubmit(job_id)  # from run 1 again: still the next number
    assert run3 == ids.job_id("hello", 1, params, run=3)
    # A plain submit now finds the latest run.
    assert platform.store.submit("hello", {"name": "a"}) == (run3, True)


def test_resubmit_of_an_active_job_cancels_it(platform: Platform) -> None:
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 5, "seed": 1})
    run2 = platform.store.resubmit(job_id)
    assert platform.store.job_status(job_id) == JobStatus.cancelled
    assert platform.store.job_status(run2) == JobStatus.queued
    assert {r.status for r in task_rows(platform, job_id)} == {TaskStatus.cancelled}


def test_input_error_fails_job_at_once_and_cancels_the_rest(
    platform: Platform, runner: Runner
) -> None:
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 50, "fail_at": 7})
    assert runner.run_job(job_id) == JobStatus.failed
    view = platform.queries.job(job_id)
    assert view.error is not None
    assert "work item 7 failed on purpose" in view.error.message
    assert view.error.stage == "work"
    assert view.error.kind == "input_error"
    assert view.error.task_id == ids.task_id(job_id, "work", 7)
    rows = {r.idx: r for r in task_rows(platform, job_id) if r.stage == "work"}
    assert rows[7].status == TaskStatus.failed
    assert rows[7].attempt == 1  # never retried
    assert all(
        r.status in (TaskStatus.succeeded, TaskStatus.cancelled) for i, r in rows.items() if i != 7
    )
    assert any(r.status == TaskStatus.cancelled for r in rows.values())
    assert not [r for r in task_rows(platform, job_id) if r.stage == "sum"]


def test_transient_errors_retry_and_succeed(platform: Platform, runner: Runner) -> None:
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 60, "flaky": 0.2})
    assert runner.run_job(job_id) == JobStatus.succeeded
    assert platform.queries.job(job_id).result == {"sum": sum(range(60)), "count": 60}
    retried = [r for r in task_rows(platform, job_id) if r.attempt > 1]
    assert retried, "with 20% seeded flakiness over 60 tasks some attempts fail"
    retry_events = {e.task_id for e in event_rows(platform, job_id, "task_retry")}
    # Every extra attempt has its recorded cause.
    assert {r.task_id for r in retried} <= retry_events
    assert all("transient" in (r.error or {}).get("message", "") for r in retried)


def test_cancel_stops_new_tasks(platform: Platform, runner: Runner) -> None:
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 20, "seed": 3})
    runner.run_once(job_id=job_id)  # the plan stage
    platform.store.cancel(job_id)
    assert runner.run_once(job_id=job_id) == 0
    assert platform.store.job_status(job_id) == JobStatus.cancelled
    work = [r for r in task_rows(platform, job_id) if r.stage == "work"]
    assert len(work) == 20
    assert {r.status for r in work} == {TaskStatus.cancelled}
    with pytest.raises(Conflict, match="already cancelled"):
        platform.store.cancel(job_id)


def test_cancel_reaches_a_running_task(settings: Settings, platform: Platform) -> None:
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 1, "sleep_ms": 30_000})
    runner = make_runner(platform, "canceller")
    runner.run_once(job_id=job_id)  # plan
    done = threading.Event()
    thread = threading.Thread(target=lambda: (runner.run_once(job_id=job_id), done.set()))
    thread.start()
    wait_for(
        lambda: any(r.status == TaskStatus.running for r in task_rows(platform, job_id)),
        what="the sleeping task to start",
    )
    platform.store.cancel(job_id)
    # The heartbeat notices within a beat and the handler stops at its next progress report.
    assert done.wait(10), "the cancelled task kept running"
    thread.join()
    runner.close()
    assert platform.store.job_status(job_id) == JobStatus.cancelled


def test_a_batch_fans_in_only_the_attempts_it_recorded(platform: Platform) -> None:
    """A runner's batch names its stage (PostgreSQL then fans in with the same statement):
    a stale attempt in it is refused and not counted; the stage ends with its last task."""
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 3, "seed": 4242})
    [plan] = platform.store.claim("w")
    assert platform.store.complete([Completion(plan.task_id, 1, {"n": 3}, (job_id, 0))]) == []
    work = platform.store.claim("w", 3)
    assert sorted(t.index for t in work) == [0, 1, 2]
    late = work[2]
    expire_lease(platform, late.task_id)
    assert platform.store.expire_leases() == ([late.task_id], [])
    batch = [Completion(t.task_id, t.attempt, t.index, (job_id, 1)) for t in work]
    assert platform.store.complete(batch) == [late.task_id]
    stage = platform.queries.job(job_id).stages[1]
    assert (stage.total, stage.succeeded, stage.queued, stage.running) == (3, 2, 1, 0)
    assert platform.queries.job(job_id).stage == "work"  # not over: one task is queued again

    make_runnable_now(platform)
    [again] = platform.store.claim("w")
    assert (again.task_id, again.attempt) == (late.task_id, 2)
    assert platform.store.complete([Completion(again.task_id, 2, 2, (job_id, 1))]) == []
    view = platform.queries.job(job_id)
    assert view.stage == "sum"
    assert (view.stages[1].succeeded, view.stages[1].queued) == (3, 0)
    [total] = platform.store.claim("w")
    assert (
        platform.store.complete([Completion(total.task_id, 1, {"sum": 3, "count": 3}, (job_id, 2))])
        == []
    )
    view = platform.queries.job(job_id)
    assert view.status == JobStatus.succeeded
    assert view.result == {"sum": 3, "count": 3}


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_heartbeat_does_not_wait_for_the_completion_that_holds_its_tasks(
    platform: Platform,
) -> None:
    """A runner's heartbeat renews its finishing tasks only where their rows are free: its
    own completion, in another transaction, may hold them (waiting there deadlocked the
    two, and the database broke it after a second)."""
    platform.store.submit("fan_out_demo", {"n": 2, "seed": 77})
    [plan] = platform.store.claim("w")
    platform.store.complete([Completion(plan.task_id, 1, {"n": 2})])
    busy, free = platform.store.claim("w", 2)
    before = {r.task_id: r.lease_until for r in task_rows(platform, busy.job_id)}
    lost: list[set[tuple[str, int]]] = []
    beat = threading.Thread(
        target=lambda: lost.append(
            platform.store.heartbeat([], finishing=[(busy.task_id, 1), (free.task_id, 1)])
        )
    )
    with platform.store.engine.connect() as other, other.begin():
        # Another transaction (the completion in flight) holds ``busy``.
        other.exec_driver_sql("SELECT 1 FROM tasks WHERE task_id = %s FOR UPDATE", (busy.task_id,))
        beat.start()
        beat.join(5.0)
        waited = beat.is_alive()
    beat.join()
    assert not waited, "the heartbeat waited for the transaction holding a finishing task"
    assert lost == [set()]
    after = {r.task_id: r.lease_until for r in task_rows(platform, busy.job_id)}
    assert after[busy.task_id] == before[busy.task_id]  # locked: left for the next beat
    assert after[free.task_id] > before[free.task_id]  # renewed


def test_fencing_rejects_a_worker_that_lost_its_lease(platform: Platform) -> None:
    job_id, _ = platform.store.submit("hello", {"name": "fence"})
    [old] = platform.store.claim("old-worker")
    expire_lease(platform, old.task_id)
    requeued, failed = platform.store.expire_leases()
    assert (requeued, failed) == ([old.task_id], [])
    make_runnable_now(platform)
    [new] = platform.store.claim("new-worker")
    assert (new.task_id, new.attempt) == (old.task_id, 2)
    # Everything the old attempt tries is refused.
    assert platform.store.complete([Completion(old.task_id, 1, {"message": "stale"})]) == [
        old.task_id
    ]
    assert platform.store.heartbeat([(old.task_id, 1)]) == {(old.task_id, 1)}
    with pytest.raises(StaleAttempt):
        platform.store.checkpoint(old.task_id, 1, "late", {})
    assert platform.store.fail(old.task_id, 1, {"message": "x"}, retryable=False) == "stale"
    # The new attempt completes and its result is the job's.
    assert platform.store.complete([Completion(new.task_id, 2, {"message": "fresh"})]) == []
    view = platform.queries.job(job_id)
    assert view.status == JobStatus.succeeded
    assert view.result == {"message": "fresh"}
    causes = event_rows(platform, job_id, "task_retry")
    assert len(causes) == 1
    assert "old-worker stopped renewing the lease" in causes[0].message


def test_lease_expiry_out_of_attempts_fails_the_job(platform: Platform) -> None:
    job_id, _ = platform.store.submit("hello", {"name": "doomed"})
    for attempt in range(1, 4):  # hello's stage allows 3 attempts
        make_runnable_now(platform)
        [task] = platform.store.claim(f"crashy-{attempt}")
        assert task.attempt == attempt
        expire_lease(platform, task.task_id)
        platform.store.expire_leases()
    view = platform.queries.job(job_id)
    assert view.status == JobStatus.failed
    assert view.error is not None
    assert view.error.kind == "lease_expired"
    assert "crashy-3" in view.error.message


# -- custom workflows: checkpoints, plan and finalize errors -------------------------------


class Empty(BaseModel):
    pass


def _checkpointing(params: Empty, ctx: Any) -> dict[str, Any]:
    seen = sorted(ctx.checkpoints)
    if "phase1" not in ctx.checkpoints:
        ctx.checkpoint("phase1", {"rows": 42})
        raise RuntimeError("crash after phase 1")
    return {"seen": seen, "rows": ctx.checkpoints["phase1"]["rows"], "attempt": ctx.attempt}


def _bad_plan(params: Empty, results: StageResults) -> list[int]:
    raise InputError("the plan cannot read the source: no layers")


def _bad_finalize(params: Empty, results: StageResults) -> None:
    raise ValueError("cannot summarize")


def _noop(params: Empty, ctx: Any) -> int:
    return 1


TEST_WORKFLOWS = [
    Workflow("checkpointed", params=Empty, stages=[Stage("only", _checkpointing)]),
    Workflow(
        "bad_plan",
        params=Empty,
        stages=[Stage("first", _noop), Stage("fan", _noop, plan=_bad_plan)],
    ),
    Workflow("bad_finalize", params=Empty, stages=[Stage("s", _noop)], finalize=_bad_finalize),
]


@pytest.fixture
def custom(settings: Settings) -> Iterator[Platform]:
    registry = default_registry()
    for wf in TEST_WORKFLOWS:
        registry.add(wf)
    p = Platform.from_settings(settings, registry)
    yield p
    p.close()


def test_retried_attempt_sees_checkpoints(custom: Platform) -> None:
    job_id, _ = custom.store.submit("checkpointed", {})
    runner = make_runner(custom, "cp")
    assert runner.run_job(job_id) == JobStatus.succeeded
    runner.close()
    result = custom.queries.job(job_id).result
    assert result == {"seen": ["phase1"], "rows": 42, "attempt": 2}
    assert [e.message for e in event_rows(custom, job_id, "checkpoint")] == ["phase1"]


def test_plan_error_fails_job_with_its_message(custom: Platform) -> None:
    job_id, _ = custom.store.submit("bad_plan", {})
    runner = make_runner(custom, "p")
    assert runner.run_job(job_id) == JobStatus.failed
    runner.close()
    error = custom.queries.job(job_id).error
    assert error is not None
    assert (error.stage, error.kind) == ("fan", "input_error")
    assert error.message == "the plan cannot read the source: no layers"


def test_finalize_error_fails_job(custom: Platform) -> None:
    job_id, _ = custom.store.submit("bad_finalize", {})
    runner = make_runner(custom, "f")
    assert runner.run_job(job_id) == JobStatus.failed
    runner.close()
    error = custom.queries.job(job_id).error
    assert error is not None
    assert error.kind == "finalize_error"
    assert "cannot summarize" in error.message


def test_registry_rejects_duplicates() -> None:
    registry = Registry(TEST_WORKFLOWS)
    with pytest.raises(ValueError, match="already registered"):
        registry.add(TEST_WORKFLOWS[0])
    with pytest.raises(ValueError, match="already registered"):
        registry.add_lazy(TEST_WORKFLOWS[0].name, "geoetl.workflows.demo:hello")


def test_lazy_registry_imports_a_workflow_when_it_is_used() -> None:
    registry = Registry(lazy={"hello": "geoetl.workflows.demo:hello", "typo": "geoetl.nope:x"})
    assert registry.names() == ["hello", "typo"]
    assert "hello" in registry
    assert "missing" not in registry
    assert registry.get("hello").stage_names() == ["greet"]
    with pytest.raises(ModuleNotFoundError):
        registry.get("typo")
    with pytest.raises(NotFound, match="known workflows: hello, typo"):
        registry.get("missing")
    wrong = Registry(lazy={"hello": "geoetl.workflows.demo:fan_out_demo"})
    with pytest.raises(ValueError, match="is not the workflow 'hello'"):
        wrong.get("hello")


def test_raster_work_does_not_load_the_vector_stack(settings: Settings) -> None:
    """``geoetl ingest x.tif`` starts without geopandas, pandas or pygeofilter (~0.8 s)."""
    code = (
        "import sys\n"
        "from geoetl.settings import Settings\n"
        "from geoetl.platform import Platform\n"
        "p = Platform.from_settings(Settings())\n"
        "p.workflows.get('process_raster')\n"
        "heavy = sorted({'geopandas', 'pandas', 'pyogrio', 'pygeofilter'} & set(sys.modules))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("url", "modules"),
    [
        # Nothing listens on port 1: preloading must not connect.
        ("postgresql://nobody@127.0.0.1:1/none", ["psycopg", "geoetl.features.postgis"]),
        ("sqlite:///{home}/never.db", ["sqlite3", "geoetl.features.geopackage"]),
    ],
)
def test_preloading_the_backends_imports_them_without_connecting(
    url: str, modules: list[str], tmp_path: Path
) -> None:
    """What ``geoetl ingest`` loads before forking its helpers, so that they share it."""
    url = url.format(home=tmp_path)
    code = (
        "import sys\n"
        "from geoetl.platform import preload_backends\n"
        "from geoetl.settings import Settings\n"
        f"preload_backends(Settings(home={str(tmp_path)!r}, database_url={url!r}))\n"
        f"print(all(m in sys.modules for m in {modules!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "True"
    assert not (tmp_path / "never.db").exists()


# -- dispatch ------------------------------------------------------------------------------


def test_lost_wake_up_is_picked_up(settings: Settings, platform: Platform) -> None:
    """A task whose notification never went out still runs (poll or janitor)."""
    stop = threading.Event()
    worker = make_runner(platform, "idle-worker")
    waker = make_waker(platform.store.engine)
    thread = threading.Thread(target=worker.serve, args=(stop, waker))
    thread.start()
    try:
        dispatcher = platform.store.dispatcher
        platform.store.dispatcher = PollingDispatcher()  # the wake-up is lost
        job_id, _ = platform.store.submit("hello", {"name": "lost"})
        platform.store.dispatcher = dispatcher
        wait_for(
            lambda: platform.store.job_status(job_id) == JobStatus.succeeded,
            timeout=15,
            what="the undispatched job to run",
        )
    finally:
        stop.set()
        thread.join()
        waker.close()
        worker.close()


def test_janitor_redispatches_tasks_nobody_picked_up(platform: Platform) -> None:
    job_id, _ = platform.store.submit("hello", {"name": "orphan"})
    wait_for(
        lambda: make_janitor(platform).run_once().redispatched,
        timeout=10,
        what="the janitor to notice the unclaimed task",
    )
    report = make_janitor(platform).run_once()
    assert report.redispatched == [ids.task_id(job_id, "greet", 0)]
    assert platform.store.get_meta("janitor")["redispatched"] == 1


def test_janitor_removes_uploads_abandoned_long_ago(platform: Platform) -> None:
    """A server killed mid-upload leaves a partial file in tmp/uploads/; a day later the
    janitor removes it, while an upload still arriving is left alone."""
    objects = platform.objects
    old = objects.begin_upload("old.tif")
    old.write(b"partial")
    fresh = objects.begin_upload("fresh.tif")
    fresh.write(b"arriving")
    old_path = Path(objects.gdal_path(old.staging))
    day_ago = time.time() - 25 * 3600
    os.utime(old_path, (day_ago, day_ago))
    make_janitor(platform).run_once()
    assert not objects.exists(old.staging)
    assert objects.exists(fresh.staging)
    fresh.write(b" and done")
    key, _ = fresh.commit()
    assert objects.list("tmp/uploads") == []
    assert objects.exists(key)
    old.abort()  # the cut-off upload's handle; its file is already gone


def test_a_runner_gives_back_the_tasks_of_a_slow_stage_it_claimed(platform: Platform) -> None:
    """A batch grown on fast tasks does not keep a slow stage's tasks from other workers.

    ``first`` ran the fast plan stage, so it claims work tasks in a batch; the work
    stage is new to it, so it keeps one and gives the other back at once: ``second``
    runs that one while ``first`` still runs its own, and no attempt is used up.
    """
    job_id, _ = platform.store.submit("fan_out_demo", {"n": 2, "sleep_ms": 1500})
    first = make_runner(platform, "first")
    second = make_runner(platform, "second")
    try:
        assert first.run_once(job_id) == 1  # the plan task: fast, so the batch grows
        assert first.batch > 1
        running = threading.Thread(target=first.run_once, args=(job_id,))
        running.start()

        def given_back() -> Any:
            rows = [r for r in task_rows(platform, job_id) if r.stage == "work"]
            queued = [r for r in rows if r.status == TaskStatus.queued]
            held = [r for r in rows if r.status == TaskStatus.running]
            return queued if len(queued) == 1 and len(held) == 1 else None

        [back] = wait_for(given_back, timeout=10, what="one work task to be given back")
        assert (back.attempt, back.worker_id) == (0, None)
        assert second.run_once(job_id) == 1  # while the first runner's task still runs
        running.join()
        rows = {r.task_id: r for r in task_rows(platform, job_id) if r.stage == "work"}
        assert rows[back.task_id].worker_id == second.worker_id
        assert rows[back.task_id].attempt == 1
        [other] = [r for r in rows.values() if r.task_id != back.task_id]
        assert other.worker_id == first.worker_id
        assert rows[back.task_id].started_at < other.finished_at  # side by side
        [event] = event_rows(platform, job_id, "tasks_returned")
        assert "1 unstarted task(s) of work given back by first" in event.message
        while first.run_once(job_id):
            pass
        view = platform.queries.job(job_id)
        assert view.status == JobStatus.succeeded
        assert view.result == {"sum": 1, "count": 2}
        work = next(s for s in view.stages if s.name == "work")
        assert (work.succeeded, work.queued, work.running, work.attempts) == (2, 0, 0, 2)
        # Now known to be slow here: a batch of them is cut to one again.
        assert first._fast[("fan_out_demo", "work")] is False
    finally:
        first.close()
        second.close()
