"""``geoetl ingest`` as a user runs it: a real subprocess on the embedded default."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import rasterio
import shapely
import sqlalchemy as sa
from rio_cogeo.cogeo import cog_validate

from geoetl.engine.schema import tasks
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import parcels
from tests.conftest import geoetl_cmd, settings_env
from tests.engine.helpers import event_rows, task_rows

DATA = Path(__file__).parents[2] / "examples" / "data"


def ingest(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**settings_env(settings), "COLUMNS": "200"}
    return subprocess.run(
        geoetl_cmd("ingest", *args), env=env, capture_output=True, text=True, timeout=120
    )


def test_ingest_prints_where_the_raster_is_served(settings: Settings) -> None:
    run = ingest(settings, str(DATA / "lc.tif"), "--access-level", "Public")
    assert run.returncode == 0, run.stderr
    assert "published system-rasters/lc" in run.stdout
    assert "/raster/collections/system-rasters/items/lc/WebMercatorQuad/map.html" in run.stdout
    cog_line = next(line for line in run.stdout.splitlines() if "COG" in line)
    cog = cog_line.split()[-1]
    assert cog_validate(cog, quiet=True)[0]
    with rasterio.open(cog) as ds:
        assert ds.colormap(1)


def test_ingest_json_is_idempotent_and_tiers_make_items(settings: Settings) -> None:
    first = ingest(settings, str(DATA / "elev.tif"), "--json")
    assert first.returncode == 0, first.stderr
    job = json.loads(first.stdout)
    assert job["status"] == "succeeded"
    assert job["result"]["raster_type"] == "dem"
    again = json.loads(ingest(settings, str(DATA / "elev.tif"), "--json").stdout)
    assert again["job_id"] == job["job_id"]
    archive = json.loads(
        ingest(settings, str(DATA / "elev.tif"), "--json", "--tier", "archive").stdout
    )
    assert archive["job_id"] != job["job_id"]
    assert archive["result"]["item_id"] == "elev_archive"


def test_ingest_of_a_bad_file_is_one_readable_line(settings: Settings, tmp_path: Path) -> None:
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster\n")
    run = ingest(settings, str(notes))
    assert run.returncode != 0
    assert "notes.tif is not a raster GDAL can read" in run.stderr
    assert "Traceback" not in run.stderr
    missing = ingest(settings, str(tmp_path / "nope.tif"))
    assert missing.returncode != 0
    assert "is not a file" in missing.stderr


def test_ingest_without_crs_needs_input_crs(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "nocrs.tif"
    with rasterio.open(DATA / "elev.tif") as src:
        profile = {**src.profile, "crs": None}
        data = src.read()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    run = ingest(settings, str(path))
    assert run.returncode != 0
    assert "no coordinate reference system; pass input_crs" in run.stderr + run.stdout
    ok = ingest(settings, str(path), "--input-crs", "EPSG:4326")
    assert ok.returncode == 0, ok.stderr


def test_ingest_runs_load_chunks_side_by_side_with_the_same_result(
    settings: Settings, platform: Platform, tmp_path: Path
) -> None:
    """GEOETL_RUN_WORKERS=2 (the default): a helper process takes load chunks too.

    The published rows are the same, in the same order, as when the command runs
    every task itself.
    """
    source = parcels(tmp_path / "parcels.gpkg", 40_000)
    args = ("--json", "--chunk-size", "5000", "--access-level", "public")
    alone = ingest(
        settings.model_copy(update={"run_workers": 1}), str(source), *args, "--dataset-id", "alone"
    )
    assert alone.returncode == 0, alone.stderr
    shared = ingest(settings, str(source), *args, "--dataset-id", "shared")
    assert shared.returncode == 0, shared.stderr
    outputs = []
    for run, processes in ((alone, 1), (shared, 2)):
        job = json.loads(run.stdout)
        assert job["status"] == "succeeded"
        assert job["result"]["tables"][0]["features"] == 40_000
        loads = [r for r in task_rows(platform, job["job_id"]) if r.stage == "load"]
        assert len(loads) == 8
        pids = {r.worker_id.split(":")[1] for r in loads}
        assert len(pids) == processes, sorted(r.worker_id for r in loads)
        assert all(r.attempt == 1 for r in loads)  # a task given back used no attempt
        if processes > 1:
            assert event_rows(platform, job["job_id"], "tasks_returned")
        [key] = job["result"]["urls"]["geoparquet"].values()
        outputs.append(gpd.read_parquet(platform.objects.gdal_path(key)))
    one, two = outputs
    assert one["n"].tolist() == two["n"].tolist() == list(range(40_000))
    assert shapely.equals_exact(one.geometry.values, two.geometry.values, 0).all()


def start_ingest(settings: Settings, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``geoetl ingest ARGS`` started, its output piped (``popen``: more for Popen)."""
    options = {"stdout": subprocess.PIPE, **popen}
    return subprocess.Popen(
        geoetl_cmd("ingest", *args), env=settings_env(settings), text=True, **options
    )


def running_loads(
    platform: Platform, proc: subprocess.Popen[Any], *where: sa.ColumnElement[bool]
) -> list[str]:
    """The workers running load chunks (``where``), as soon as there are any, while
    ``proc`` runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with platform.store.read() as conn:
            workers = conn.execute(
                sa.select(tasks.c.worker_id).where(
                    tasks.c.status == "running", tasks.c.stage == "load", *where
                )
            ).scalars()
            found = [str(w) for w in workers]
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError("no load chunk ran")


def test_a_helper_killed_mid_task_does_not_stall_the_command(
    settings: Settings, platform: Platform, tmp_path: Path
) -> None:
    """A helper process dies (the kernel's OOM killer, a crash in a library) while it runs
    a load chunk: the command sees it exit, puts its task back at once and finishes the
    job itself. Before, nobody renewed or expired that lease and the command waited
    forever."""
    source = parcels(tmp_path / "parcels.gpkg", 40_000)
    args = ("--json", "--chunk-size", "10000", "--access-level", "public")
    proc = start_ingest(settings, str(source), *args, stderr=subprocess.PIPE)
    try:
        [victim, *_] = running_loads(platform, proc, tasks.c.worker_id.not_like("%:cli"))
        os.kill(int(victim.split(":")[1]), signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    job = json.loads(out)
    assert job["status"] == "succeeded"
    assert job["result"]["tables"][0]["features"] == 40_000
    retries = [e.message for e in event_rows(platform, job["job_id"], "task_retry")]
    assert any(f"worker {victim} was killed by signal 9" in m for m in retries), retries
    assert "went back to the queue" in err


def test_running_the_command_again_after_it_was_killed_finishes_the_job(
    settings: Settings, platform: Platform, tmp_path: Path
) -> None:
    """``geoetl ingest`` killed outright (SIGKILL, the OOM killer, a closed session) with
    its helper, mid-load: running it again finds the same job and finishes it. The tasks
    the killed processes held go back to the queue once their leases run out: the
    command sweeps leases itself, as nobody else may (no worker, no janitor). Before, it
    waited for them forever."""
    source = parcels(tmp_path / "parcels.gpkg", 40_000)
    args = ("--json", "--chunk-size", "5000", "--access-level", "public")
    # In its own process group, so that its helper is killed with it.
    first = start_ingest(
        settings, str(source), *args, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        running_loads(platform, first)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    again = ingest(settings, str(source), *args)
    assert again.returncode == 0, again.stderr
    job = json.loads(again.stdout)
    assert job["idempotent"] is True  # the same job, finished
    assert job["status"] == "succeeded"
    assert job["result"]["tables"][0]["features"] == 40_000
    expired = event_rows(platform, job["job_id"], "task_retry")
    assert any("stopped renewing the lease" in e.message for e in expired), expired
