"""Queue routing with real worker processes: a task runs only on a worker of its queue.

Raster stages are on the ``raster`` queue and vector stages on ``vector``
(``geoetl worker --queues``), so heavy raster work can be given big-memory machines.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil

from geoetl.engine.models import JobStatus, TaskStatus
from geoetl.platform import Platform
from tests.engine.helpers import Workers, event_rows, task_rows, wait_for

DATA = Path(__file__).parents[2] / "examples" / "data"


def _pids(proc: subprocess.Popen[bytes]) -> set[int]:
    """The process and its worker children (a pool runs its runners in children)."""
    return {proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))}


def _pid(worker_id: str) -> int:
    return int(worker_id.split(":")[1])


def _untouched(platform: Platform, job_id: str) -> bool:
    rows = task_rows(platform, job_id)
    return bool(rows) and all(r.status == TaskStatus.queued and r.attempt == 0 for r in rows)


def test_a_task_waits_for_a_worker_of_its_queue(platform: Platform, workers: Workers) -> None:
    raster_key = platform.objects.put_content_addressed(DATA / "elev.tif")[0]
    vector_key = platform.objects.put_content_addressed(DATA / "nc.gpkg")[0]
    raster, _ = platform.store.submit("process_raster", {"source": raster_key})
    hello, _ = platform.store.submit("hello", {"name": "nobody serves default"})

    vector_worker = workers.start("vector")
    vector, _ = platform.store.submit("process_vector", {"source": vector_key})
    # The vector worker is up and claiming: it runs the vector job to the end…
    wait_for(
        lambda: platform.store.job_status(vector) in (JobStatus.succeeded, JobStatus.failed),
        timeout=180,
        what="the vector worker to run the vector job",
    )
    assert platform.store.job_status(vector) == JobStatus.succeeded, workers.output()
    assert {_pid(r.worker_id) for r in task_rows(platform, vector)} == {vector_worker.pid}
    # …and never touched the raster job's tasks (nor the default queue's) meanwhile.
    assert _untouched(platform, raster)
    assert _untouched(platform, hello)
    assert platform.queries.job(raster).status == JobStatus.queued

    raster_worker = workers.start("raster", concurrency=2)
    wait_for(
        lambda: platform.store.job_status(raster) in (JobStatus.succeeded, JobStatus.failed),
        timeout=180,
        what="the raster workers to run the raster job",
    )
    assert platform.store.job_status(raster) == JobStatus.succeeded, workers.output()
    rows = task_rows(platform, raster)
    assert {r.queue for r in rows} == {"raster"}
    assert {_pid(r.worker_id) for r in rows} <= _pids(raster_worker)
    # Every start of a raster task was on a raster worker, first attempts included.
    starts = [e.message for e in event_rows(platform, raster, "task_started")]
    assert starts
    assert not [m for m in starts if f":{vector_worker.pid}:" in m]
    # Neither worker serves the default queue: the hello job still waits.
    assert _untouched(platform, hello)
    assert "Traceback" not in workers.output()
