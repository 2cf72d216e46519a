"""process_raster_collection on both backends: many rasters in, one collection out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from geoetl.catalog.models import SearchRequest
from geoetl.engine.models import JobStatus
from geoetl.engine.workflow import ParamsError
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner
from tests.cli.helpers import geoetl
from tests.engine.helpers import helper_pids

DATA = Path(__file__).parents[2] / "examples" / "data"


def put(platform: Platform, path: Path) -> str:
    key = f"bronze/{sha256_file(path)}/{path.name}"
    platform.objects.put_file(path, key)
    return key


def quadrants(folder: Path) -> list[Path]:
    """elev.tif cut into four GeoTIFFs (NW, NE, SW, SE) that tile it exactly."""
    out = []
    with rasterio.open(DATA / "elev.tif") as src:
        half_w, half_h = src.width // 2, src.height // 2
        for name, col, row, w, h in (
            ("nw", 0, 0, half_w, half_h),
            ("ne", half_w, 0, src.width - half_w, half_h),
            ("sw", 0, half_h, half_w, src.height - half_h),
            ("se", half_w, half_h, src.width - half_w, src.height - half_h),
        ):
            window = Window(col, row, w, h)
            profile = {
                **src.profile,
                "width": w,
                "height": h,
                "transform": src.window_transform(window),
            }
            path = folder / f"elev_{name}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(window=window))
            out.append(path)
    return out


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    job_id, _ = platform.store.submit("process_raster_collection", params)
    runner = make_runner(platform, "collection-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def test_tiles_become_one_collection_whose_extent_covers_them(
    platform: Platform, tmp_path: Path
) -> None:
    sources = [put(platform, p) for p in quadrants(tmp_path)]
    params = {"sources": sources, "collection_id": "elev-tiles", "access_level": "public"}
    job_id, status = run(platform, params)
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    result = view.result
    assert result["published"] == 4
    assert [i["item_id"] for i in result["items"]] == ["elev_nw", "elev_ne", "elev_sw", "elev_se"]
    assert (
        result["urls"]["tilejson"] == "/raster/collections/elev-tiles/WebMercatorQuad/tilejson.json"
    )
    # One validation and one COG task per file: the work fans out.
    stages = {s.name: s.total for s in view.stages}
    assert stages["validate"] == 4
    assert stages["cog"] == 4

    items, total = platform.catalog.search(SearchRequest(collections=["elev-tiles"], limit=10))
    assert total == 4
    for item in items:
        key = platform.objects.key_of(item["assets"]["data"]["href"])
        assert key is not None
        assert cog_validate(platform.objects.gdal_path(key), quiet=True)[0]
    collection = platform.catalog.get_collection("elev-tiles")
    west, south, east, north = collection["extent"]["spatial"]["bbox"][0]
    with rasterio.open(DATA / "elev.tif") as src:
        b = src.bounds
    tolerance = 0.01
    assert west <= b.left + tolerance
    assert south <= b.bottom + tolerance
    assert east >= b.right - tolerance
    assert north >= b.top - tolerance
    for item in items:  # and every item lies inside it
        ix0, iy0, ix1, iy1 = item["bbox"]
        assert west - tolerance <= ix0 <= ix1 <= east + tolerance
        assert south - tolerance <= iy0 <= iy1 <= north + tolerance

    # Running it again publishes nothing new: every item is unchanged.
    again = platform.store.resubmit(job_id)
    runner = make_runner(platform, "collection-test-2")
    try:
        assert runner.run_job(again) == JobStatus.succeeded
    finally:
        runner.close()
    rerun = platform.queries.job(again).result
    assert rerun["published"] == 0
    assert rerun["unchanged"] == 4
    assert [v.version for v in platform.versions.history("elev-tiles", "elev_nw")] == [1]


def test_files_that_do_not_make_one_layer_are_refused_by_name(
    platform: Platform, tmp_path: Path
) -> None:
    nw = quadrants(tmp_path)[0]
    sources = [put(platform, nw), put(platform, DATA / "lc.tif")]
    job_id, status = run(
        platform, {"sources": sources, "collection_id": "mixed", "access_level": "public"}
    )
    assert status == JobStatus.failed
    error = platform.queries.job(job_id).error
    assert error is not None
    assert error.stage == "check"
    assert "do not share one CRS" in error.message
    assert "lc.tif" in error.message
    # Nothing of it is published.
    _, total = platform.catalog.search(SearchRequest(collections=["mixed"], limit=10))
    assert total == 0


def test_sources_are_checked_before_any_work(platform: Platform) -> None:
    key = put(platform, DATA / "elev.tif")
    with pytest.raises(ParamsError, match="listed twice"):
        platform.store.submit(
            "process_raster_collection", {"sources": [key, key], "collection_id": "c"}
        )
    with pytest.raises(ParamsError, match="bronze"):
        platform.store.submit(
            "process_raster_collection", {"sources": ["/etc/passwd"], "collection_id": "c"}
        )


def test_geoetl_ingest_mosaic_publishes_a_folder_as_one_collection(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "Flood Tiles"
    folder.mkdir()
    quadrants(folder)
    done = geoetl(settings, "ingest", str(folder), "--mosaic", "--access-level", "public")
    assert done.returncode == 0, done.stderr
    assert "published 4 rasters as collection flood_tiles" in done.stdout
    assert "/raster/collections/flood_tiles/WebMercatorQuad/map.html" in done.stdout
    platform = Platform.from_settings(settings)
    try:
        _, total = platform.catalog.search(SearchRequest(collections=["flood_tiles"], limit=10))
        [job] = platform.queries.jobs().items
        helpers = helper_pids(platform, job.job_id, {"validate", "cog"})
    finally:
        platform.close()
    assert total == 4
    # GEOETL_RUN_WORKERS=2: a helper process took some of the rasters' tasks.
    assert len(helpers) == 1
