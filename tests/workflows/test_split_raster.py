"""process_raster above raster_split_bytes: windows as tasks on any worker, one COG.

The COG assembled from the windows is checked against the single-pass conversion of the
same file (geoetl.raster.cog.write_cog): same grid, bands, nodata, mask, and the same
pixels at full resolution and in every overview.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from geoetl.engine.context import TaskContext
from geoetl.engine.models import JobStatus
from geoetl.engine.workflow import Workflow
from geoetl.platform import Platform
from geoetl.raster.cog import write_cog
from geoetl.raster.inspect import inspect_raster
from geoetl.raster.profiles import cog_profile
from geoetl.settings import Settings
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_janitor, make_runner
from geoetl.workflows import process_raster as pr
from tests.engine.helpers import Workers, wait_for

# 18 MB RGB: far above this, so windows of 512 rows (5 of them for 2304 rows). Its
# size halves exactly to the last overview: natively the parts carry the overviews.
SPLIT_BYTES = 1024 * 1024


@pytest.fixture
def split_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"raster_split_bytes": SPLIT_BYTES})


@pytest.fixture
def split_platform(split_settings: Settings) -> Iterator[Platform]:
    p = Platform.from_settings(split_settings)
    yield p
    p.close()


def rgb(path: Path, width: int = 2560, height: int = 2304) -> Path:
    """Smooth colours with noise, UTM, no nodata (a warp adds an alpha band)."""
    rng = np.random.default_rng(16)
    y, x = np.mgrid[0:height, 0:width]
    bands = [
        (x * 255 // width),
        (y * 255 // height),
        ((x + y) % 256),
    ]
    data = np.stack(bands).astype(np.int16) + rng.integers(-20, 20, (3, height, width))
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 30, 30),
        photometric="RGB",
    ) as ds:
        ds.write(np.clip(data, 0, 255).astype(np.uint8))
    return path


def dem(path: Path, size: int = 2600) -> Path:
    """float32 heights with a nodata hole, UTM."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:size, 0:size]
    data = (np.sin(x / 90) * 300 + np.cos(y / 70) * 200 + rng.random((size, size))).astype(
        np.float32
    )
    data[400:700, 200:900] = -9999
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 25, 25),
        nodata=-9999,
    ) as ds:
        ds.write(data[None])
        ds.set_band_description(1, "height")
    return path


def put(platform: Platform, path: Path) -> str:
    key = f"bronze/{sha256_file(path)}/{path.name}"
    platform.objects.put_file(path, key)
    return key


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    job_id, _ = platform.store.submit(params.pop("workflow", "process_raster"), params)
    runner = make_runner(platform, "split-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def single_pass(path: Path, target_crs: str | None, tmp: Path) -> Path:
    """The COG process_raster writes in one task (analysis tier)."""
    info = inspect_raster(path, path.name)
    profile = cog_profile(info.raster_type, "analysis", info.dtype, 85)
    out = tmp / f"single-{path.stem}-{target_crs is not None}.tif"
    write_cog(path, out, info, profile, target_crs, tmp / "work")
    return out


def assert_same_cog(a: str | Path, b: str | Path, *, rounding: bool = False) -> None:
    """Same COG layout and pixels; ``rounding``: floats warped may differ in the last bits.

    GDAL's bilinear kernel computes in float32 from the origin of each call's source
    window, which differs between a strip and the whole raster: a few float32 pixels then
    differ by a rounding (relative 1e-6). Integer data is identical.
    """
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.width, x.height, x.count, x.dtypes) == (y.width, y.height, y.count, y.dtypes)
        assert x.crs == y.crs
        assert x.transform == y.transform
        assert x.nodata == y.nodata or (np.isnan(x.nodata) and np.isnan(y.nodata))
        assert x.colorinterp == y.colorinterp
        assert x.descriptions == y.descriptions
        assert x.block_shapes == y.block_shapes
        levels = x.overviews(1)
        assert levels, "the COG has no overviews"
        assert levels == y.overviews(1)
        assert x.profile["compress"] == y.profile["compress"]
    for level in [None, *range(len(levels))]:
        with (
            rasterio.open(a, overview_level=level) as x,
            rasterio.open(b, overview_level=level) as y,
        ):
            xs, ys = x.read(), y.read()
            if rounding:
                same = (xs == ys) | (np.isnan(xs) & np.isnan(ys))
                assert np.count_nonzero(~same) <= xs.size // 10_000, f"overview {level}"
                assert np.allclose(xs, ys, rtol=1e-6, atol=1e-6, equal_nan=True)
                nodata = x.nodata
                assert np.array_equal(xs == nodata, ys == nodata)
            else:
                assert np.array_equal(xs, ys, equal_nan=True), f"overview {level}"
            assert np.array_equal(x.read_masks(), y.read_masks()), f"mask, overview {level}"


def tasks(platform: Platform, job_id: str, stage: str) -> list[Any]:
    return list(platform.queries.tasks(job_id, stage=stage, limit=100).items)


@pytest.mark.parametrize("target_crs", [None, "EPSG:4326"], ids=["native", "reprojected"])
def test_big_raster_is_written_in_windows_identical_to_one_pass(
    split_platform: Platform, tmp_path: Path, target_crs: str | None
) -> None:
    path = rgb(tmp_path / "big.tif")
    job_id, status = run(
        split_platform, {"source": put(split_platform, path), "target_crs": target_crs}
    )
    view = split_platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    result = view.result
    windows = tasks(split_platform, job_id, "cog")
    assert len(windows) >= 4
    assert sorted(t.item["window"] for t in windows) == list(range(len(windows)))
    assert [t.item for t in tasks(split_platform, job_id, "assemble")] == ["analysis"]
    cog = split_platform.objects.gdal_path(result["cog"])
    assert cog_validate(cog, quiet=True)[0]
    assert result["reprojected"] is (target_crs is not None)
    assert_same_cog(cog, single_pass(path, target_crs, tmp_path))
    # The parts are gone once the item is staged; nothing is left in tmp/ after the janitor.
    assert split_platform.objects.list(f"tmp/{job_id}/parts") == []
    make_janitor(split_platform).run_once()
    assert split_platform.objects.list("tmp") == []


def test_float_with_nodata_and_every_tier(split_platform: Platform, tmp_path: Path) -> None:
    path = dem(tmp_path / "heights.tif")
    job_id, status = run(
        split_platform, {"source": put(split_platform, path), "output_tier": "all"}
    )
    view = split_platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    assert len(tasks(split_platform, job_id, "cog")) >= 4
    assert sorted(t.item for t in tasks(split_platform, job_id, "assemble")) == [
        "analysis",
        "archive",
    ]
    analysis = split_platform.objects.gdal_path(view.result["tiers"]["analysis"])
    assert_same_cog(analysis, single_pass(path, "EPSG:4326", tmp_path), rounding=True)
    with rasterio.open(analysis) as out:
        assert out.nodata == -9999
        assert out.descriptions == ("height",)


def test_small_raster_is_not_split(split_platform: Platform, tmp_path: Path) -> None:
    path = rgb(tmp_path / "small.tif", 300, 200)  # 180 kB
    job_id, status = run(split_platform, {"source": put(split_platform, path)})
    assert status == JobStatus.succeeded
    assert [t.item for t in tasks(split_platform, job_id, "cog")] == ["analysis"]
    assert tasks(split_platform, job_id, "assemble") == []


def test_bad_target_crs_is_refused_before_any_window(
    split_platform: Platform, tmp_path: Path
) -> None:
    key = put(split_platform, rgb(tmp_path / "big.tif"))
    job_id, status = run(split_platform, {"source": key, "target_crs": "EPSG:999999"})
    assert status == JobStatus.failed
    assert "target_crs" in split_platform.queries.job(job_id).error.message
    assert tasks(split_platform, job_id, "cog") == []


def crashing_workflow(events: dict[str, Any]) -> Workflow:
    """process_raster whose window 1 dies after storing its part, window 2 before."""

    def make_cog(params: pr.ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
        window = ctx.item["window"]
        key = f"tmp/{ctx.job_id}/parts/{window:05d}.tif"
        if window == 2 and ctx.attempt == 1:
            raise RuntimeError("worker died while writing window 2")
        if window == 1 and ctx.attempt == 2:
            events["checkpointed"] = "part" in ctx.checkpoints
            events["before"] = ctx.platform.objects.modified(key)
        result = pr.make_cog(params, ctx)
        if window == 1 and ctx.attempt == 1:
            raise RuntimeError("worker died after storing window 1")
        if window == 1:
            events["after"] = ctx.platform.objects.modified(key)
        return result

    stages = [
        dataclasses.replace(s, handler=make_cog) if s.name == "cog" else s
        for s in pr.process_raster.stages
    ]
    return Workflow(
        "process_raster_crashing",
        params=pr.ProcessRasterParams,
        stages=stages,
        finalize=pr.process_raster.finalize,
    )


def test_window_retried_after_a_crash_reuses_its_part(
    split_platform: Platform, tmp_path: Path
) -> None:
    events: dict[str, Any] = {}
    split_platform.workflows.add(crashing_workflow(events))
    path = rgb(tmp_path / "big.tif")
    job_id, status = run(
        split_platform,
        {"workflow": "process_raster_crashing", "source": put(split_platform, path)},
    )
    view = split_platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    attempts = {t.item["window"]: t.attempt for t in tasks(split_platform, job_id, "cog")}
    assert attempts[1] == 2
    assert attempts[2] == 2
    assert {w: a for w, a in attempts.items() if w not in (1, 2)} == dict.fromkeys(
        set(attempts) - {1, 2}, 1
    )
    # The retried window found its checkpoint and did not write its part again.
    assert events["checkpointed"] is True
    assert events["after"] == events["before"]
    cog = split_platform.objects.gdal_path(view.result["cog"])
    assert_same_cog(cog, single_pass(path, "EPSG:4326", tmp_path))


def test_windows_run_on_two_worker_processes(
    split_settings: Settings, split_platform: Platform, tmp_path: Path
) -> None:
    path = rgb(tmp_path / "big.tif", 3000, 3600)
    job_id, _ = split_platform.store.submit("process_raster", {"source": put(split_platform, path)})
    workers = Workers(split_settings, tmp_path)
    try:
        workers.start()
        workers.start()
        done = wait_for(
            lambda: (
                split_platform.queries.job(job_id).status in {"succeeded", "failed", "cancelled"}
            ),
            timeout=240,
            what="the job to end",
        )
        assert done
    finally:
        workers.stop()
    view = split_platform.queries.job(job_id)
    assert view.status == "succeeded", (view.error, workers.output())
    windows = tasks(split_platform, job_id, "cog")
    assert len(windows) >= 6
    ran_on = {t.worker_id for t in windows}
    assert len(ran_on) == 2, f"every window ran on {ran_on}"
    cog = split_platform.objects.gdal_path(view.result["cog"])
    assert_same_cog(cog, single_pass(path, "EPSG:4326", tmp_path))
