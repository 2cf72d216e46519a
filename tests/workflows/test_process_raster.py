"""process_raster end to end on both backends: sample rasters in, COGs and STAC items out."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import stac_pydantic
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from geoetl.catalog.models import SearchRequest
from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_janitor, make_runner

DATA = Path(__file__).parents[2] / "examples" / "data"
EXPECTED = {
    "L7_ETMs.tif": "multispectral",
    "elev.tif": "dem",
    "lc.tif": "categorical",
    "olinda_dem_utm25s.tif": "dem",
}


def put(platform: Platform, path: Path) -> str:
    key = f"bronze/{sha256_file(path)}/{path.name}"
    platform.objects.put_file(path, key)
    return key


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    job_id, _ = platform.store.submit("process_raster", params)
    runner = make_runner(platform, "raster-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def silver_and_items(platform: Platform) -> tuple[list[str], int]:
    _items, total = platform.catalog.search(SearchRequest(limit=100))
    return platform.objects.list("silver"), total


@pytest.mark.parametrize(("name", "raster_type"), EXPECTED.items())
def test_sample_is_published_as_cog_and_item(
    platform: Platform, name: str, raster_type: str
) -> None:
    key = put(platform, DATA / name)
    job_id, status = run(platform, {"source": key, "access_level": "PUBLIC"})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    result = view.result
    assert result["raster_type"] == raster_type
    assert result["cog"] == f"silver/cogs/system-rasters/{Path(name).stem.lower()}_analysis.tif"
    cog = platform.objects.gdal_path(result["cog"])
    assert cog_validate(cog, quiet=True)[0]
    with rasterio.open(DATA / name) as src, rasterio.open(cog) as out:
        assert out.crs == CRS.from_epsg(4326)
        if src.nodata is None and src.dtypes[0].startswith("float"):
            assert np.isnan(out.nodata)  # reprojected corners of float data are NaN
        else:
            assert out.nodata == src.nodata
        if name == "lc.tif":
            assert out.colormap(1) == src.colormap(1)
    item_doc = platform.catalog.get_item("system-rasters", result["item_id"])
    # Two independent readers: stac-pydantic validates the STAC structure, pystac parses it.
    stac_pydantic.Item.model_validate(item_doc)
    stac_pydantic.Collection.model_validate(platform.catalog.get_collection("system-rasters"))
    item = pystac.Item.from_dict(item_doc)
    assert item.datetime is not None
    assert item.properties["geoetl:job_id"] == job_id
    assert item.properties["geoetl:access_level"] == "public"
    assert item.properties["geoetl:source"]["sha256"] == sha256_file(DATA / name)
    # The catalog's href names that object: its key, or (pgSTAC, read by other tools
    # too) the storage URL and the key.
    assert platform.objects.key_of(item.assets["data"].href) == result["cog"]
    assert item.assets["data"].extra_fields["file:checksum"] == "1220" + sha256_file(Path(cog))
    assert "proj:code" in item.properties or "proj:epsg" in item.properties
    assert (
        "raster:bands" in item.assets["data"].extra_fields or "bands" in item_doc["assets"]["data"]
    )
    # Nothing staged is left once the janitor has run.
    make_janitor(platform).run_once()
    assert platform.objects.list("tmp") == []


def test_native_crs_lossless_is_pixel_identical(platform: Platform) -> None:
    key = put(platform, DATA / "olinda_dem_utm25s.tif")
    job_id, status = run(platform, {"source": key, "target_crs": None, "output_tier": "archive"})
    assert status == JobStatus.succeeded
    result = platform.queries.job(job_id).result
    assert result["reprojected"] is False
    with (
        rasterio.open(DATA / "olinda_dem_utm25s.tif") as a,
        rasterio.open(platform.objects.gdal_path(result["cog"])) as b,
    ):
        assert np.array_equal(a.read(), b.read())


def test_same_file_same_job_other_tier_second_item(platform: Platform) -> None:
    key = put(platform, DATA / "elev.tif")
    first, _ = run(platform, {"source": key})
    again, idempotent = platform.store.submit("process_raster", {"source": key})
    assert (again, idempotent) == (first, True)
    second, status = run(platform, {"source": key, "output_tier": "archive"})
    assert status == JobStatus.succeeded
    assert second != first
    ids = {
        platform.queries.job(first).result["item_id"],
        platform.queries.job(second).result["item_id"],
    }
    assert ids == {"elev", "elev_archive"}


def test_all_tiers_make_one_item_with_an_asset_per_tier(platform: Platform) -> None:
    key = put(platform, DATA / "lc.tif")
    job_id, status = run(platform, {"source": key, "output_tier": "all", "collection_id": "lc"})
    assert status == JobStatus.succeeded
    result = platform.queries.job(job_id).result
    assert set(result["tiers"]) == {"analysis", "archive"}
    item = platform.catalog.get_item("lc", result["item_id"])
    assert set(item["assets"]) == {"data", "archive"}
    collection = platform.catalog.get_collection("lc")
    assert collection["extent"]["spatial"]["bbox"][0] == pytest.approx(item["bbox"])


@pytest.mark.parametrize(
    ("make", "params", "message"),
    [
        (lambda p: p.write_text("not a raster"), {}, "not a raster GDAL can read"),
        (
            lambda p: p.write_bytes((DATA / "L7_ETMs.tif").read_bytes()[:300_000]),
            {},
            "truncated",
        ),
        (None, {"strict_mode": True}, "strict mode"),
    ],
)
def test_bad_input_fails_cleanly(
    platform: Platform, tmp_path: Path, make: Any, params: dict[str, Any], message: str
) -> None:
    path = tmp_path / "bad.tif"
    if make is None:
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=8,
            height=8,
            count=1,
            dtype="float64",
            crs="EPSG:4326",
            transform=rasterio.transform.from_origin(0, 10, 1, 1),
        ) as ds:
            ds.write(np.zeros((1, 8, 8)))
    else:
        make(path)
    key = put(platform, path)
    job_id, status = run(platform, {"source": key, **params})
    assert status == JobStatus.failed
    error = platform.queries.job(job_id).error
    assert error is not None
    assert message in error.message
    # Users see object keys, never where this machine keeps its files.
    assert str(platform.settings.home) not in error.message
    if "GDAL can read" in message:
        assert f"'{key}'" in error.message
    assert error.stage == "validate"
    assert silver_and_items(platform) == ([], 0)


def test_missing_crs_needs_input_crs(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "nocrs.tif"
    with rasterio.open(DATA / "elev.tif") as src:
        profile = {**src.profile, "crs": None}
        data = src.read()
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    key = put(platform, path)
    job_id, status = run(platform, {"source": key})
    assert status == JobStatus.failed
    assert "pass input_crs" in platform.queries.job(job_id).error.message
    assert silver_and_items(platform) == ([], 0)
    job_id, status = run(platform, {"source": key, "input_crs": "EPSG:4326"})
    assert status == JobStatus.succeeded


def test_bad_access_level_is_a_params_error(platform: Platform) -> None:
    from geoetl.engine.workflow import ParamsError

    with pytest.raises(ParamsError, match="access_level"):
        platform.store.submit(
            "process_raster", {"source": "bronze/x/a.tif", "access_level": "secret"}
        )


def _running_write(platform: Platform, job_id: str) -> bool:
    """Whether the cog task has reported that GDAL is writing (some progress, not done)."""
    for task in platform.queries.tasks(job_id, stage="cog").items:
        progress = task.progress
        if task.status == "running" and progress is not None and 0 < progress.done < 1:
            return True
    return False


def test_cancelling_stops_the_cog_write_within_seconds(platform: Platform, tmp_path: Path) -> None:
    """A cancelled ingest stops GDAL's write (issue 14, item 13); nothing is published."""
    size = 6000  # float32 noise: several seconds of warping and compressing on 2 cores
    path = tmp_path / "noise.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs="EPSG:32633",
        transform=rasterio.transform.from_origin(300000, 5000000, 10, 10),
        nodata=-1,
    ) as ds:
        ds.write(np.random.default_rng(5).random((1, size, size), dtype=np.float32))
    job_id, _ = platform.store.submit("process_raster", {"source": put(platform, path)})
    runner = make_runner(platform, "cancel-test")
    ended: list[JobStatus] = []
    worker = threading.Thread(target=lambda: ended.append(runner.run_job(job_id)))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while not _running_write(platform, job_id):
            assert worker.is_alive(), "the job ended without reporting the COG write's progress"
            assert time.monotonic() < deadline, "the COG write never began"
            time.sleep(0.02)
        cancelled_at = time.monotonic()
        platform.store.cancel(job_id)
        worker.join(timeout=60)
        stopped_after = time.monotonic() - cancelled_at
    finally:
        worker.join(timeout=60)
        runner.close()
    assert ended == [JobStatus.cancelled]
    # The heartbeat (every 0.5 s here) sees the cancellation; GDAL stops at its next report.
    assert stopped_after < 3.0, f"the write went on for {stopped_after:.1f} s after cancel"
    assert silver_and_items(platform) == ([], 0)
    assert platform.objects.list(f"tmp/{job_id}") == []
    cog = platform.queries.tasks(job_id, stage="cog").items[0]
    assert cog.status == "cancelled"
    assert cog.progress is not None
    assert cog.progress.done < 1
