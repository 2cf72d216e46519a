"""The engine at scale, on both backends: bulk stage creation, counted progress, claims
through the partial index, and event retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from geoetl.engine import ids
from geoetl.engine.models import Completion, JobStatus, TaskStatus
from geoetl.engine.schema import jobs, tasks
from geoetl.engine.store import SQLITE_INSERT_ROWS, key_of
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_janitor, make_runner
from geoetl.workflows import default_registry
from tests.engine.helpers import (
    event_rows,
    expire_lease,
    make_runnable_now,
    task_rows,
)

# More than one multi-row INSERT on SQLite, with a partial last one.
WIDE = 2 * SQLITE_INSERT_ROWS + 321


class Wide(BaseModel):
    n: int = WIDE


def _items(params: Wide, results: StageResults) -> list[Any]:
    # Every JSON shape an item may have, including text COPY must escape.
    shapes: list[Any] = [
        None,
        0,
        -1.5,
        "tab\there, newline\nthere, back\\slash",
        {"k": [1, {"x": None}]},
        [],
        True,
        "ünïcødé ✓",
    ]
    return [shapes[i % len(shapes)] if i % 3 else {"i": i} for i in range(params.n)]


def _noop(params: Wide, ctx: Any) -> int:
    return 1


WIDE_WORKFLOW = Workflow(
    "wide",
    params=Wide,
    stages=[Stage("fan", _noop, plan=_items, queue="bulk", retry=Retry(attempts=4))],
)


@pytest.fixture
def wide(settings: Settings) -> Iterator[Platform]:
    registry = default_registry()
    registry.add(WIDE_WORKFLOW)
    p = Platform.from_settings(settings, registry)
    yield p
    p.close()


def real_counts(platform: Platform, job_id: str) -> list[dict[str, int]]:
    """Each stage's task counts, counted from the tasks table."""
    with platform.store.read() as conn:
        rows = conn.execute(
            sa.select(
                tasks.c.stage_index,
                tasks.c.status,
                sa.func.count().label("n"),
                sa.func.sum(tasks.c.attempt).label("attempts"),
            )
            .where(tasks.c.job_key == key_of(job_id))
            .group_by(tasks.c.stage_index, tasks.c.status)
        ).all()
    stages: dict[int, dict[str, int]] = {}
    for r in rows:
        s = stages.setdefault(r.stage_index, {"total": 0, "attempts": 0})
        s[r.status] = r.n
        s["total"] += r.n
        s["attempts"] += int(r.attempts or 0)
    statuses = ("queued", "running", "succeeded", "failed", "cancelled")
    return [
        {k: stages.get(i, {}).get(k, 0) for k in ("total", *statuses, "attempts")}
        for i in range(max(stages) + 1 if stages else 0)
    ]


def shown_counts(platform: Platform, job_id: str) -> list[dict[str, int]]:
    """Each stage's task counts as the job view (API, CLI) shows them."""
    keys = ("total", "queued", "running", "succeeded", "failed", "cancelled", "attempts")
    stages = platform.queries.job(job_id).stages
    shown = [{k: getattr(s, k) for k in keys} for s in stages]
    while shown and shown[-1]["total"] == 0:
        shown.pop()  # stages not reached yet have no tasks to count
    return shown


def test_bulk_stage_creation_gives_exactly_the_planned_tasks(wide: Platform) -> None:
    job_id, _ = wide.store.submit("wide", {})
    planned = _items(Wide(), StageResults(lambda name: None, []))
    rows = sorted(task_rows(wide, job_id), key=lambda r: r.idx)
    assert [r.idx for r in rows] == list(range(WIDE))
    assert [r.task_id for r in rows] == [ids.task_id(job_id, "fan", i) for i in range(WIDE)]
    assert [r.item for r in rows] == planned
    assert {(r.stage, r.stage_index, r.queue, r.status) for r in rows} == {
        ("fan", 0, "bulk", TaskStatus.queued)
    }
    assert {(r.attempt, r.max_attempts, r.lease_seconds) for r in rows} == {(0, 4, 3.0)}
    view = wide.queries.job(job_id)
    assert (view.stages[0].total, view.stages[0].queued) == (WIDE, WIDE)
    # Tasks are handed out in the plan's order, and their items arrive intact.
    claimed = wide.store.claim("w", 50, queues=["bulk"])
    assert [c.index for c in claimed] == list(range(50))
    assert [c.item for c in claimed] == planned[:50]
    assert wide.queries.counts()["queued_tasks"] == {"bulk": WIDE - 50}
    assert wide.queries.counts()["running_tasks"] == {"all": 50}


def test_progress_counts_match_the_tasks_through_retries_failures_and_cancels(
    platform: Platform,
) -> None:
    store = platform.store
    runner = make_runner(platform, "counter")
    try:
        # Retries: some attempts fail and are re-queued.
        flaky, _ = store.submit("fan_out_demo", {"n": 60, "flaky": 0.2})
        runner.run_once(job_id=flaky)  # plan
        for _ in range(3):
            runner.run_once(job_id=flaky)
            assert shown_counts(platform, flaky) == real_counts(platform, flaky)
        assert runner.run_job(flaky) == JobStatus.succeeded
        counts = real_counts(platform, flaky)
        assert counts[1]["attempts"] > 60  # some tasks ran more than once
        assert shown_counts(platform, flaky) == counts

        # A failure: one task failed, the rest of the stage cancelled.
        failing, _ = store.submit("fan_out_demo", {"n": 60, "fail_at": 20})
        assert runner.run_job(failing) == JobStatus.failed
        counts = real_counts(platform, failing)
        assert (counts[1]["failed"], counts[1]["cancelled"] > 0) == (1, True)
        assert shown_counts(platform, failing) == counts

        # A cancel with tasks queued and running, then a lease that expires.
        cancelled, _ = store.submit("fan_out_demo", {"n": 40, "seed": 8})
        runner.run_once(job_id=cancelled)
        held = store.claim("other", 5, job_id=cancelled)
        assert shown_counts(platform, cancelled) == real_counts(platform, cancelled)
        store.cancel(cancelled)
        counts = real_counts(platform, cancelled)
        assert (counts[1]["cancelled"], counts[1]["running"]) == (40, 0)
        assert shown_counts(platform, cancelled) == counts
        assert store.fail(held[0].task_id, held[0].attempt, {"message": "x"}, retryable=True) == (
            "stale"
        )

        expiring, _ = store.submit("hello", {"name": "lease"})
        [task] = store.claim("crashy")
        expire_lease(platform, task.task_id)
        assert store.expire_leases() == ([task.task_id], [])
        assert shown_counts(platform, expiring) == real_counts(platform, expiring)
        make_runnable_now(platform)
        assert runner.run_job(expiring) == JobStatus.succeeded
        assert shown_counts(platform, expiring) == real_counts(platform, expiring)
        assert platform.queries.job(expiring).attempts == 2
    finally:
        runner.close()
    assert platform.queries.counts()["running_tasks"] == {"all": 0}
    assert platform.queries.counts()["queued_tasks"] == {}


def test_a_fan_out_logs_each_task_once_and_its_starts_per_claim(
    platform: Platform,
) -> None:
    n = 100
    job_id, _ = platform.store.submit("fan_out_demo", {"n": n})
    runner = make_runner(platform, "events")
    try:
        assert runner.run_job(job_id) == JobStatus.succeeded
    finally:
        runner.close()
    succeeded = event_rows(platform, job_id, "task_succeeded")
    assert sorted(e.task_id for e in succeeded) == sorted(
        r.task_id for r in task_rows(platform, job_id)
    )
    started = event_rows(platform, job_id, "task_started")
    assert 0 < len(started) < n  # batched claims: one event per claim
    assert all(e.data is None for e in [*succeeded, *started])
    single = [e for e in started if e.task_id is not None]
    assert single
    assert all(e.message.startswith("attempt 1 on events") for e in single)
    batches = [e for e in started if e.task_id is None]
    assert batches
    assert all(" tasks of work on events" in e.message for e in batches)
    told = sum(int(e.message.split()[0]) for e in batches) + len(single)
    # The first batch of the work stage (new to the runner) was cut to one task; the
    # others were given back unstarted, and said so.
    returned = event_rows(platform, job_id, "tasks_returned")
    assert returned
    given_back = sum(int(e.message.split()[0]) for e in returned)
    assert told - given_back == n + 2  # every start is in the log


@pytest.mark.parametrize("restricted", [False, True], ids=["any-job", "one-job"])
def test_claim_walks_the_queued_index_without_sorting(wide: Platform, restricted: bool) -> None:
    job_id, _ = wide.store.submit("wide", {"n": 20_000})
    runner = make_runner(wide, "warm")
    try:
        for _ in range(5):
            runner.run_once(job_id=job_id)  # a few claimed and finished tasks, as in real life
    finally:
        runner.close()
    # A small job queued behind the wide one: claiming only its tasks must not walk
    # past the 20,000 queued before them.
    small, _ = wide.store.submit("wide", {"n": 50})
    statement = wide.store.claim_statement(
        "w", 32, time.time(), job_id=small if restricted else None
    )
    engine = wide.store.engine
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.begin() as conn:
        if wide.store.postgres:
            conn.exec_driver_sql("ANALYZE tasks")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
            index = "ix_tasks_job_queued" if restricted else "ix_tasks_queued"
            assert f"Index Scan using {index}" in plan, plan
            assert "Sort" not in plan, plan
        else:
            conn.exec_driver_sql("ANALYZE")
            plan = "\n".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            index = "ix_tasks_job_queued" if restricted else "ix_tasks_queued"
            assert f"USING INDEX {index}" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
        assert "Seq Scan on tasks" not in plan, plan


def test_claim_by_task_id_looks_up_the_key_on_a_fresh_stage(wide: Platform) -> None:
    # A Celery message names its tasks. Right after a big stage is inserted (statistics
    # not refreshed), the claim must still go by primary key, not read every queued row.
    job_id, _ = wide.store.submit("wide", {"n": 20_000})
    engine = wide.store.engine
    with engine.begin() as conn:
        some = conn.execute(
            sa.select(tasks.c.task_id).where(tasks.c.job_key == key_of(job_id)).limit(3)
        ).scalars()
        ids = list(some)
    statement = wide.store.claim_statement("w", 1, time.time(), task_ids=ids)
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.begin() as conn:
        if wide.store.postgres:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
            assert "ix_tasks_queued" not in plan, plan
            assert "tasks_pkey" in plan, plan
        else:
            plan = "\n".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "ix_tasks_queued" not in plan, plan
            assert "PRIMARY KEY" in plan or "sqlite_autoindex_tasks" in plan, plan
        assert "Seq Scan on tasks" not in plan, plan
    claimed = wide.store.claim("w", task_ids=ids)
    assert sorted(t.task_id for t in claimed) == sorted(ids)


def _age(platform: Platform, job_id: str, days: float) -> None:
    """Make a job look as if it had ended ``days`` ago."""
    with platform.store.write() as conn:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.job_id == job_id)
            .values(finished_at=time.time() - days * 86400)
        )


def test_event_retention_prunes_only_old_finished_jobs(settings: Settings) -> None:
    platform = Platform.from_settings(settings.model_copy(update={"event_retention_days": 30}))
    store = platform.store
    runner = make_runner(platform, "r")
    try:
        old, _ = store.submit("fan_out_demo", {"n": 5, "seed": 1})
        recent, _ = store.submit("fan_out_demo", {"n": 5, "seed": 2})
        for job_id in (old, recent):
            assert runner.run_job(job_id) == JobStatus.succeeded
        old_cancelled, _ = store.submit("fan_out_demo", {"n": 5, "seed": 3})
        store.cancel(old_cancelled)
        active, _ = store.submit("fan_out_demo", {"n": 5, "seed": 4})
        _age(platform, old, 31)
        _age(platform, old_cancelled, 45)
        with store.write() as conn:  # an active job submitted long ago is not "ended"
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_id == active)
                .values(created_at=time.time() - 90 * 86400)
            )
        kept = {j: len(event_rows(platform, j)) for j in (recent, active)}
        doomed = len(event_rows(platform, old)) + len(event_rows(platform, old_cancelled))
        old_view = platform.queries.job(old)

        report = make_janitor(platform).run_once()

        assert report.events_pruned == doomed
        assert event_rows(platform, old) == []
        assert event_rows(platform, old_cancelled) == []
        assert {j: len(event_rows(platform, j)) for j in (recent, active)} == kept
        assert platform.queries.events(old) == []
        # The job and its tasks stay, and so does what the job view shows.
        assert platform.queries.job(old) == old_view
        assert len(task_rows(platform, old)) == 7
        assert platform.store.get_meta("janitor")["events_pruned"] == doomed
        # The next pass has nothing left to do; a job ending later is pruned in its turn.
        assert make_janitor(platform).run_once().events_pruned == 0
        _age(platform, recent, 30.5)
        assert make_janitor(platform).run_once().events_pruned == kept[recent]
        assert len(event_rows(platform, active)) == kept[active]
    finally:
        runner.close()
        platform.close()


def test_event_retention_zero_keeps_every_event(settings: Settings) -> None:
    platform = Platform.from_settings(settings.model_copy(update={"event_retention_days": 0}))
    try:
        job_id, _ = platform.store.submit("hello", {"name": "kept"})
        platform.store.cancel(job_id)
        _age(platform, job_id, 3650)
        before = event_rows(platform, job_id)
        assert make_janitor(platform).run_once().events_pruned == 0
        assert event_rows(platform, job_id) == before
    finally:
        platform.close()


@pytest.fixture
def empty_url(backend: str, home: Any, request: pytest.FixtureRequest) -> str:
    """An empty database on ``backend``."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_schema_url"))
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home}/old.db"


def test_migration_counts_the_tasks_of_existing_jobs(empty_url: str) -> None:
    """A store written before the stage counters existed shows the same progress after."""
    from alembic import command

    from geoetl.engine.db import make_engine
    from geoetl.engine.migrate import _config, upgrade
    from geoetl.engine.queries import JobQueries
    from geoetl.engine.store import JobStore

    engine = make_engine(empty_url)
    try:
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0005")
        job_id = "a" * 64
        statuses = ["succeeded"] * 5 + ["failed", "cancelled", "cancelled", "queued", "running"]
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO jobs (job_id, base_id, run, workflow, version, params, status,"
                    " stage_index, stage, remaining, created_at, updated_at) VALUES (:j, :j, 1,"
                    " 'fan_out_demo', 1, '{}', 'failed', 1, 'work', 0, 1, 1)"
                ),
                {"j": job_id},
            )
            rows = [(0, 0, "succeeded", 2)] + [
                (1, i, status, 1 + i % 3) for i, status in enumerate(statuses)
            ]
            for stage_index, idx, status, attempt in rows:
                stage = ("plan", "work")[stage_index]
                conn.execute(
                    sa.text(
                        "INSERT INTO tasks (task_id, job_id, stage_index, stage, idx, status,"
                        " queue, attempt, max_attempts, lease_seconds, available_at, created_at)"
                        " VALUES (:t, :j, :s, :stage, :i, :status, 'default', :a, 3, 30, 1, 1)"
                    ),
                    {
                        "t": ids.task_id(job_id, stage, idx),
                        "j": job_id,
                        "s": stage_index,
                        "stage": stage,
                        "i": idx,
                        "status": status,
                        "a": attempt,
                    },
                )
        upgrade(engine)
        queries = JobQueries(JobStore(engine, default_registry()))
        view = queries.job(job_id)
        keys = ("total", "queued", "running", "succeeded", "failed", "cancelled", "attempts")
        assert [[getattr(s, k) for k in keys] for s in view.stages[:2]] == [
            [1, 0, 0, 1, 0, 0, 2],
            [10, 1, 1, 5, 1, 2, sum(1 + i % 3 for i in range(10))],
        ]
        assert [s.status for s in view.stages] == ["succeeded", "failed", "pending"]
    finally:
        engine.dispose()


def test_a_completion_finds_its_tasks_by_key_among_many(wide: Platform) -> None:
    """Recording a batch of successes reads its tasks by primary key (or among the few
    running ones), whatever the number of tasks: one UPDATE ... FROM (VALUES ...)."""
    job_id, _ = wide.store.submit("wide", {"n": 20_000})
    claimed = wide.store.claim("w", 32, job_id=job_id)
    done = [Completion(t.task_id, t.attempt, t.index) for t in claimed]
    sql, params = wide.store._complete_statement(done, time.time())
    engine = wide.store.engine
    with engine.begin() as conn:
        if wide.store.postgres:
            conn.exec_driver_sql("ANALYZE tasks")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, params))
            assert any(
                f"Index Scan using {i} on tasks" in plan for i in ("tasks_pkey", "ix_tasks_running")
            ), plan
            assert "Seq Scan on tasks" not in plan, plan
        else:
            conn.exec_driver_sql("ANALYZE")
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
            plan = "\n".join(r[-1] for r in rows)
            assert "sqlite_autoindex_tasks_1 (task_id=?" in plan, plan
            assert "SCAN tasks" not in plan, plan
    assert wide.store.complete(done) == []
    rows = {r.task_id: r for r in task_rows(wide, job_id)}
    assert [(rows[c.task_id].status, rows[c.task_id].result) for c in done] == [
        (TaskStatus.succeeded, c.result) for c in done
    ]
    # A stale attempt (already recorded) is rejected, not recorded twice.
    assert wide.store.complete(done[:2]) == [done[0].task_id, done[1].task_id]
