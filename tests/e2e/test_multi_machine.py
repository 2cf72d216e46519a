"""Machines that share nothing but URLs: two worker groups, one killed, the broker restarted.

Each group is what one machine would run: ``geoetl worker`` (Celery executor, two pool
processes) and ``geoetl janitor``, in a process group of its own, with a GEOETL_HOME (and
so a scratch folder) of its own. They share only the PostgreSQL database, the broker (a
private ``redis-server``, so the test may restart it) and an S3 server (moto). A raster
ingest, a vector ingest and a 2,000-task fan-out run while one whole group is killed with
SIGKILL and the broker is restarted (its messages lost: it keeps nothing on disk). The
jobs must end with exact results, every task succeeded exactly once (the job events),
and nothing half-published.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pyogrio
import pytest
import sqlalchemy as sa
from rio_cogeo.cogeo import cog_validate

from geoetl.catalog.models import SearchRequest
from geoetl.engine.models import JobStatus
from geoetl.engine.schema import job_stages
from geoetl.ingest import store_in_bronze
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.celery.brokers import RedisServer, start_janitor, start_worker
from tests.celery.conftest import celery_settings_for
from tests.engine.helpers import event_rows, task_rows, wait_for
from tests.servers import S3Server, moto_s3

DATA = Path(__file__).parents[2] / "examples" / "data"
FAN_OUT = 2000
VECTOR = "naturalearth_lowres.shp"
TERMINAL = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}

pytestmark = pytest.mark.timeout(240)


class Machine:
    """One worker group: ``geoetl worker`` and ``geoetl janitor`` in one process group."""

    def __init__(self, name: str, settings: Settings, logs: Path) -> None:
        self.name = name
        self.settings = settings
        self.log = logs / f"{name}-worker.log"
        self.worker = start_worker(settings, self.log, "--concurrency", "2")
        self.janitor = start_janitor(
            settings, logs / f"{name}-janitor.log", "--interval", "0.5", group=self.worker.pid
        )

    def pids(self) -> set[int]:
        """The group's processes (the Celery pool's included)."""
        found = {self.worker.pid, self.janitor.pid}
        for pid in (self.worker.pid, self.janitor.pid):
            try:
                found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return found

    def kill(self) -> None:
        """The machine is gone: SIGKILL to every process of the group at once."""
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()
        self.janitor.wait()

    def stop(self) -> None:
        for proc in (self.worker, self.janitor):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.worker, self.janitor):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pid_of(worker_id: str) -> int:
    return int(worker_id.split(":")[-2])


def work_done(platform: Platform, job_id: str) -> int:
    """Succeeded tasks of the fan-out's work stage (the stage counters)."""
    with platform.store.read() as conn:
        done = conn.execute(
            sa.select(job_stages.c.succeeded).where(
                job_stages.c.job_id == job_id, job_stages.c.stage == "work"
            )
        ).scalar_one_or_none()
    return int(done or 0)


def assert_each_task_succeeded_once(platform: Platform, job_id: str) -> list[Any]:
    rows = task_rows(platform, job_id)
    assert {r.status for r in rows} == {"succeeded"}, job_id
    succeeded = Counter(e.task_id for e in event_rows(platform, job_id, "task_succeeded"))
    assert succeeded == Counter({r.task_id: 1 for r in rows})
    return rows


@pytest.fixture
def s3() -> Iterator[S3Server]:
    """The object store both machines use: an S3 server (moto), reached by URL."""
    with moto_s3() as server:
        yield server


def test_two_machines_one_killed_broker_restarted(
    pg_database_url: str, s3: S3Server, tmp_path: Path
) -> None:
    broker = RedisServer(tmp_path / "redis")
    broker.start()
    machines: list[Machine] = []
    platform: Platform | None = None
    try:

        def settings(name: str) -> Settings:
            home = tmp_path / name
            return celery_settings_for(
                home,
                pg_database_url,
                broker.url,
                storage_url=s3.storage_url,
                **s3.settings(),
                lease_seconds=4.0,
                heartbeat_seconds=1.0,
            )

        control = settings("control")
        platform = Platform.from_settings(control)
        a = Machine("a", settings("machine-a"), tmp_path)
        b = Machine("b", settings("machine-b"), tmp_path)
        machines += [a, b]

        raster_key = store_in_bronze(platform.objects, DATA / "olinda_dem_utm25s.tif")
        vector_key = store_in_bronze(platform.objects, DATA / VECTOR)
        fan_out, _ = platform.store.submit("fan_out_demo", {"n": FAN_OUT, "sleep_ms": 8})
        raster, _ = platform.store.submit(
            "process_raster", {"source": raster_key, "access_level": "public"}
        )
        vector, _ = platform.store.submit(
            "process_vector", {"source": vector_key, "chunk_size": 20, "access_level": "public"}
        )
        jobs = {"fan_out": fan_out, "raster": raster, "vector": vector}

        # Both machines at work on the fan-out, then one of them is gone.
        wait_for(lambda: work_done(platform, fan_out) >= FAN_OUT // 5, 90, "a fifth of the work")
        b_pids = b.pids()

        def held_by_b() -> list[str]:
            return [
                r.task_id
                for job_id in jobs.values()
                for r in task_rows(platform, job_id)
                if r.status == "running" and pid_of(r.worker_id) in b_pids
            ]

        wait_for(held_by_b, 30, "machine B to hold a task")
        b.kill()
        # What B held when it died: its leases must run out and A run those tasks again.
        running_on_b = held_by_b()
        assert running_on_b, "machine B held no task when it was killed"
        broker.stop()
        time.sleep(1.0)
        broker.start()

        def all_ended() -> bool:
            return all(platform.store.job_status(j) in TERMINAL for j in jobs.values())

        wait_for(all_ended, 120, "the three jobs to end")
        views = {name: platform.queries.job(job_id) for name, job_id in jobs.items()}
        assert {name: v.status for name, v in views.items()} == dict.fromkeys(
            jobs, JobStatus.succeeded
        ), {name: v.error for name, v in views.items()}

        # Exact results, each task succeeded exactly once.
        assert views["fan_out"].result == {"sum": FAN_OUT * (FAN_OUT - 1) // 2, "count": FAN_OUT}
        rows = {name: assert_each_task_succeeded_once(platform, j) for name, j in jobs.items()}
        assert len(rows["fan_out"]) == FAN_OUT + 2
        # Machine B did work that counted, and A finished what B was running.
        b_done = [r for r in rows["fan_out"] if pid_of(r.worker_id) in b_pids]
        assert b_done
        by_id = {r.task_id: r for job_rows in rows.values() for r in job_rows}
        for task_id in running_on_b:
            assert pid_of(by_id[task_id].worker_id) not in b_pids
            assert by_id[task_id].attempt >= 2

        # Published once, whole: the raster's COGs are valid and catalogued ...
        raster_result = views["raster"].result
        assert raster_result is not None
        platform.catalog.get_item(raster_result["collection_id"], raster_result["item_id"])
        for tier, key in raster_result["tiers"].items():
            path = platform.objects.local_copy(key, tmp_path / "check" / f"{tier}.tif")
            valid, errors, _warnings = cog_validate(str(path))
            assert valid, errors
        # ... the vector dataset has every feature, in the database and in GeoParquet.
        vector_result = views["vector"].result
        assert vector_result is not None
        tables = vector_result["tables"]
        assert sum(t["features"] for t in tables) == pyogrio.read_info(DATA / VECTOR)["features"]
        parquet = sorted(k for k in platform.objects.list("silver") if k.endswith(".parquet"))
        assert len(parquet) == len(tables)
        rows_in_parquet = 0
        for i, key in enumerate(parquet):
            path = platform.objects.local_copy(key, tmp_path / "check" / f"{i}.parquet")
            rows_in_parquet += pq.read_metadata(path).num_rows
        assert rows_in_parquet == sum(t["features"] for t in tables)
        with platform.store.read() as conn:
            for t in tables:
                count = conn.execute(sa.text(f'SELECT count(*) FROM geo."{t["table"]}"'))
                assert count.scalar_one() == t["features"]
        # Nothing staged is left once the janitor of the surviving machine has passed.
        wait_for(lambda: not platform.objects.list("tmp"), 30, "staged objects to be removed")
        items, _total = platform.catalog.search(SearchRequest(limit=100))
        ids = Counter(item["id"] for item in items)
        assert raster_result["item_id"] in ids
        assert max(ids.values()) == 1
    finally:
        if platform is not None:
            platform.close()
        for machine in machines:
            machine.stop()
        broker.stop()
        for log in sorted(tmp_path.glob("*.log")):
            print(f"----- {log.name}\n{log.read_text(errors='replace')[-6000:]}")
