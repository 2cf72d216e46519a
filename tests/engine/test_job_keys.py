"""Migration 0010 (integer job keys) on a store with jobs in flight, on both backends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.dialects.postgresql import JSONB

from geoetl.engine import ids
from geoetl.engine.db import make_engine
from geoetl.engine.migrate import _config, upgrade
from geoetl.engine.models import JobStatus
from geoetl.engine.queries import JobQueries
from geoetl.engine.runner import Runner
from geoetl.engine.store import JobStore
from geoetl.engine.workflow import validate_params
from geoetl.workflows import default_registry

Json = sa.JSON().with_variant(JSONB(), "postgresql")
N = 6

# The tables as revision 0009 had them (job ids in tasks and events).
OLD_JOBS = sa.table(
    "jobs",
    *(sa.column(c) for c in ("job_id", "base_id", "run", "workflow", "version", "status")),
    *(sa.column(c) for c in ("stage_index", "stage", "remaining", "created_at", "updated_at")),
    sa.column("started_at"),
    sa.column("params", Json),
    sa.column("result", Json),
)
OLD_TASKS = sa.table(
    "tasks",
    *(sa.column(c) for c in ("task_id", "job_id", "stage_index", "stage", "idx", "status")),
    *(sa.column(c) for c in ("queue", "attempt", "max_attempts", "lease_seconds", "lease_until")),
    *(sa.column(c) for c in ("available_at", "worker_id", "created_at", "started_at")),
    sa.column("finished_at"),
    sa.column("item", Json),
    sa.column("result", Json),
)
OLD_STAGES = sa.table(
    "job_stages",
    *(sa.column(c) for c in ("job_id", "stage_index", "stage", "queue", "total", "queued")),
    *(sa.column(c) for c in ("running", "succeeded", "failed", "cancelled", "attempts")),
)
OLD_EVENTS = sa.table(
    "job_events",
    *(sa.column(c) for c in ("job_id", "task_id", "at", "kind", "message")),
)


@pytest.fixture
def empty_url(backend: str, home: Path, request: pytest.FixtureRequest) -> str:
    """An empty database on ``backend``."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_schema_url"))
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home}/old.db"


def _job(seed: int) -> tuple[str, dict[str, Any]]:
    wf = default_registry().get("fan_out_demo")
    params = validate_params(wf, {"n": N, "seed": seed}).model_dump(mode="json")
    return ids.job_id(wf.name, wf.version, params), params


def _write_old_store(conn: sa.Connection) -> tuple[str, str]:
    """Two fan_out_demo jobs as revision 0009 stored them: one done, one mid-stage.

    The running one has finished its plan and 2 work tasks; one work task is held by
    a worker that is gone (its lease ran out), and 3 are queued.
    """
    now = time.time()
    done, done_params = _job(1)
    running, running_params = _job(2)
    common = {"run": 1, "workflow": "fan_out_demo", "version": 1, "created_at": now - 60}
    conn.execute(
        sa.insert(OLD_JOBS),
        [
            {
                **common,
                "job_id": done,
                "base_id": done,
                "params": done_params,
                "status": "succeeded",
                "stage_index": 3,
                "stage": "sum",
                "remaining": 0,
                "result": {"sum": 15, "count": N},
                "started_at": now - 59,
                "updated_at": now - 50,
            },
            {
                **common,
                "job_id": running,
                "base_id": running,
                "params": running_params,
                "status": "running",
                "stage_index": 1,
                "stage": "work",
                "remaining": N - 2,
                "result": None,
                "started_at": now - 30,
                "updated_at": now - 20,
            },
        ],
    )
    task = {
        "queue": "default",
        "max_attempts": 3,
        "lease_seconds": 30.0,
        "lease_until": None,
        "worker_id": None,
        "available_at": now - 30,
        "created_at": now - 30,
        "started_at": None,
        "finished_at": None,
        "result": None,
    }
    rows = [
        {
            **task,
            "task_id": ids.task_id(running, "plan", 0),
            "job_id": running,
            "stage_index": 0,
            "stage": "plan",
            "idx": 0,
            "status": "succeeded",
            "attempt": 1,
            "item": None,
            "result": {"n": N},
        }
    ]
    for i in range(N):
        state = "succeeded" if i < 2 else "running" if i == 2 else "queued"
        rows.append(
            {
                **task,
                "task_id": ids.task_id(running, "work", i),
                "job_id": running,
                "stage_index": 1,
                "stage": "work",
                "idx": i,
                "status": state,
                "attempt": 0 if state == "queued" else 1,
                "item": i,
                "result": i if state == "succeeded" else None,
                "worker_id": "gone" if state == "running" else None,
                "lease_until": now - 1 if state == "running" else None,
            }
        )
    conn.execute(sa.insert(OLD_TASKS), rows)
    conn.execute(
        sa.insert(OLD_STAGES),
        [
            {"job_id": running, "stage_index": 0, "stage": "plan", "queue": "default"}
            | {"total": 1, "queued": 0, "running": 0, "succeeded": 1}
            | {"failed": 0, "cancelled": 0, "attempts": 1},
            {"job_id": running, "stage_index": 1, "stage": "work", "queue": "default"}
            | {"total": N, "queued": N - 3, "running": 1, "succeeded": 2}
            | {"failed": 0, "cancelled": 0, "attempts": 3},
        ],
    )
    events = [(done, None, "job_submitted"), (running, None, "job_submitted")]
    events += [(running, ids.task_id(running, "work", i), "task_succeeded") for i in range(2)]
    conn.execute(
        sa.insert(OLD_EVENTS),
        [
            {"job_id": j, "task_id": t, "at": now - 40 + k, "kind": kind, "message": f"m{k}"}
            for k, (j, t, kind) in enumerate(events)
        ],
    )
    return done, running


def test_jobs_in_flight_go_on_after_the_job_key_migration(empty_url: str, tmp_path: Path) -> None:
    engine = make_engine(empty_url)
    try:
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0009")
        with engine.begin() as conn:
            done, running = _write_old_store(conn)

        upgrade(engine)

        store = JobStore(engine, default_registry())
        queries = JobQueries(store)
        assert store.job_key(done) != store.job_key(running)
        # Events and tasks stay with their jobs, in order.
        assert [(e.kind, e.message) for e in queries.events(done)] == [("job_submitted", "m0")]
        assert [(e.kind, e.task_id, e.message) for e in queries.events(running)] == [
            ("job_submitted", None, "m1"),
            ("task_succeeded", ids.task_id(running, "work", 0), "m2"),
            ("task_succeeded", ids.task_id(running, "work", 1), "m3"),
        ]
        page = queries.tasks(running, limit=100)
        assert [(t.stage, t.index, t.status) for t in page.items] == [
            ("plan", 0, "succeeded"),
            *(("work", i, "succeeded") for i in range(2)),
            ("work", 2, "running"),
            *(("work", i, "queued") for i in range(3, N)),
        ]
        assert {t.job_id for t in page.items} == {running}
        assert queries.tasks(done).total == 0
        work = queries.job(running).stages[1]
        assert (work.total, work.queued, work.running, work.succeeded) == (N, 3, 1, 2)

        # The lost task is re-queued by lease expiry, and the job runs to its end.
        assert store.expire_leases() == ([ids.task_id(running, "work", 2)], [])
        with store.write() as conn:
            conn.exec_driver_sql("UPDATE tasks SET available_at = 0 WHERE status = 'queued'")
        runner = Runner(store, "after-migration", scratch_root=tmp_path / "scratch")
        try:
            assert runner.run_job(running) == JobStatus.succeeded
            assert queries.job(running).result == {"sum": sum(range(N)), "count": N}
            # A job submitted after the migration gets a key of its own and runs too.
            fresh, _ = store.submit("fan_out_demo", {"n": 3, "seed": 3})
            assert store.job_key(fresh) not in (store.job_key(done), store.job_key(running))
            assert runner.run_job(fresh) == JobStatus.succeeded
            assert queries.job(fresh).result == {"sum": 3, "count": 3}
        finally:
            runner.close()
        succeeded = [e.task_id for e in queries.events(running) if e.kind == "task_succeeded"]
        # The 2 recorded before the upgrade, the other work tasks, and the sum.
        assert succeeded[:2] == [ids.task_id(running, "work", i) for i in range(2)]
        assert sorted(succeeded[2:-1]) == [ids.task_id(running, "work", i) for i in range(2, N)]
        assert succeeded[-1] == ids.task_id(running, "sum", 0)
    finally:
        engine.dispose()


def test_the_job_key_migration_goes_down_and_up_again(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine)
        job_id, _ = JobStore(engine, default_registry()).submit("fan_out_demo", {"n": 3})
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009")
        with engine.begin() as conn:
            counts = [
                conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE job_id = :j"), {"j": job_id}
                ).scalar()
                for table in ("tasks", "job_events")
            ]
        assert counts == [1, 2]  # the plan task; job_submitted and stage_started
        upgrade(engine)
        store = JobStore(engine, default_registry())
        [task] = store.claim("w", 5, job_id=job_id)
        assert (task.job_id, task.stage) == (job_id, "plan")
    finally:
        engine.dispose()
