"""process_raster_tiles (``layout=tiles``): one raster published as a grid of tile items.

Each tile is a COG of its own holding the single-pass conversion's pixels over its
window; the tiles are items of one collection, served as one mosaic layer that draws
what the raster drawn as one item draws. Both backends.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.windows import from_bounds
from rio_cogeo.cogeo import cog_validate

from geoetl.api.app import create_app
from geoetl.catalog.models import SearchRequest
from geoetl.engine.models import JobStatus
from geoetl.engine.workflow import ParamsError
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import geoetl
from tests.workflows.test_split_raster import put, rgb, single_pass

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    from geoetl.workers import make_runner

    job_id, _ = platform.store.submit("process_raster_tiles", params)
    runner = make_runner(platform, "tiles-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def tile_items(platform: Platform, collection: str) -> list[dict[str, Any]]:
    items, _ = platform.catalog.search(SearchRequest(collections=[collection], limit=100))
    return sorted(items, key=lambda item: str(item["id"]))


def cog_of(platform: Platform, item: dict[str, Any]) -> str:
    href = str(item["assets"]["data"]["href"])
    key = href[href.index("silver/") :]
    return platform.objects.gdal_path(key)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def platform_of(client: TestClient) -> Platform:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform


@pytest.mark.parametrize("target_crs", [None, "EPSG:4326"], ids=["native", "reprojected"])
def test_tiles_hold_the_pixels_of_the_one_cog(
    platform: Platform, tmp_path: Path, target_crs: str | None
) -> None:
    path = rgb(tmp_path / "scene.tif")  # 2560 x 2304 px
    params = {
        "source": put(platform, path),
        "collection_id": "scene-tiles",
        "target_crs": target_crs,
        "tile_size": 1024,
        "layout": "tiles",
        "access_level": "public",
    }
    job_id, status = run(platform, dict(params))
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    result = view.result
    grid = result["tiles"]
    assert grid["rows"] * grid["cols"] == len(result["items"]) == result["published"]
    assert grid["rows"] >= 2
    assert grid["cols"] >= 2
    cog_tasks = platform.queries.tasks(job_id, stage="cog", limit=100).items
    assert len(cog_tasks) == len(result["items"])  # one task per tile

    items = tile_items(platform, "scene-tiles")
    assert [i["id"] for i in items] == sorted(i["item_id"] for i in result["items"])
    assert items[0]["id"] == "scene_r000_c000"
    whole = single_pass(path, target_crs, tmp_path)
    with rasterio.open(whole) as one:
        covered = np.zeros((one.height, one.width), dtype=np.int32)
        for item in items:
            cog = cog_of(platform, item)
            assert_cog(cog)
            with rasterio.open(cog) as tile:
                assert tile.crs == one.crs
                assert tile.count == one.count
                assert tile.colorinterp == one.colorinterp
                assert tile.overviews(1), f"{item['id']} has no overviews"
                window = from_bounds(*tile.bounds, transform=one.transform).round_offsets()
                window = window.round_lengths()
                assert (window.width, window.height) == (tile.width, tile.height)
                expected = one.read(window=window)
                got = tile.read()
                if target_crs is None:
                    assert np.array_equal(got, expected), item["id"]
                else:
                    # Warped apart: GDAL's approximate transformer interpolates over each
                    # call's rows and columns, so a pixel's source position moves by a
                    # fraction of a pixel (this raster is noisy: a few values apart).
                    differ = np.abs(got.astype(int) - expected.astype(int))
                    assert differ[:3].mean() < 1, item["id"]
                    assert np.percentile(differ[:3], 99) <= 3, item["id"]
                    assert np.count_nonzero(differ[3]) <= differ[3].size // 10_000
                rows, cols = window.toslices()
                covered[rows, cols] += 1
        # The tiles cover the grid exactly once: no gap, no overlap.
        assert (covered == 1).all()

    # Again with the same source and options: nothing new.
    from geoetl.workers import make_runner

    again = platform.store.resubmit(job_id)
    runner = make_runner(platform, "tiles-test-2")
    try:
        assert runner.run_job(again) == JobStatus.succeeded
    finally:
        runner.close()
    redo = platform.queries.job(again).result
    assert redo["published"] == 0
    assert redo["unchanged"] == len(result["items"])
    assert platform.queries.tasks(again, stage="cog", limit=10).items == []
    assert [v.version for v in platform.versions.history("scene-tiles", items[0]["id"])] == [1]


def assert_cog(path: str) -> None:
    """A COG by GDAL's own account, in 512 px tiles at every level.

    rio-cogeo takes a raster or overview exactly one block wide (and taller) for a
    striped one, so a 1024 px wide tile's first overview fails its check; GDAL's layout
    tag and the block shapes say what it is.
    """
    valid, errors, _ = cog_validate(path, quiet=True)
    assert valid or all("not tiled" in e for e in errors), errors
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        levels = len(ds.overviews(1))
    for level in [None, *range(levels)]:
        with rasterio.open(path, overview_level=level) as ds:
            assert set(ds.block_shapes) == {(512, 512)}, (path, level)


def rendered(client: TestClient, url: str) -> np.ndarray[Any, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    with MemoryFile(response.content) as mem, mem.open() as img:
        data: np.ndarray[Any, Any] = img.read()
        return data


def test_the_tiles_are_served_as_one_layer_drawing_the_raster(
    client: TestClient, tmp_path: Path
) -> None:
    platform = platform_of(client)
    path = rgb(tmp_path / "scene.tif")
    key = put(platform, path)
    common = {"source": key, "access_level": "public", "target_crs": None}
    _, status = run(
        platform, {**common, "collection_id": "tiled", "layout": "tiles", "tile_size": 1024}
    )
    assert status == JobStatus.succeeded
    from geoetl.workers import make_runner

    job_id, _ = platform.store.submit("process_raster", {**common, "collection_id": "whole"})
    runner = make_runner(platform, "tiles-test")
    try:
        assert runner.run_job(job_id) == JobStatus.succeeded
    finally:
        runner.close()
    [item] = tile_items(platform, "whole")
    west, south, east, north = item["bbox"]
    # A web-map tile across the middle of the raster (where four tiles meet), at native
    # resolution (about 30 m) and two overview levels.
    lon, lat = (west + east) / 2, (south + north) / 2
    for zoom in (12, 10, 8):
        tile = WEB_MERCATOR.tile(lon, lat, zoom)
        xyz = f"WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        mosaic = rendered(client, f"/raster/collections/tiled/tiles/{xyz}")
        single = rendered(client, f"/raster/collections/whole/items/{item['id']}/tiles/{xyz}")
        assert mosaic.shape == single.shape
        assert np.array_equal(mosaic[-1] > 0, single[-1] > 0), f"zoom {zoom}: coverage"
        inside = single[-1] > 0
        assert inside.mean() > 0.2
        differ = np.abs(mosaic[:-1].astype(int) - single[:-1].astype(int))[:, inside]
        if zoom == 12:  # native resolution: the same pixels, but along a seam or two
            assert (differ == 0).mean() > 0.999, f"zoom {zoom}"
        else:  # each tile's own overviews, against the whole raster's (a noisy image)
            assert differ.mean() < 6, f"zoom {zoom}"
            assert np.median(differ) <= 4, f"zoom {zoom}"
    doc = client.get("/raster/collections/tiled/WebMercatorQuad/tilejson.json").json()
    assert doc["bounds"] == pytest.approx(item["bbox"], abs=1e-3)


def test_wrong_tiles_are_refused_with_what_to_do(platform: Platform, tmp_path: Path) -> None:
    key = put(platform, rgb(tmp_path / "scene.tif", 600, 600))
    with pytest.raises(ParamsError, match="multiple of 512"):
        platform.store.submit("process_raster_tiles", {"source": key, "tile_size": 1000})
    # process_raster itself does not cut tiles: it says which workflow does.
    from geoetl.workers import make_runner

    job_id, _ = platform.store.submit("process_raster", {"source": key, "layout": "tiles"})
    runner = make_runner(platform, "tiles-test")
    try:
        assert runner.run_job(job_id) == JobStatus.failed
    finally:
        runner.close()
    error = platform.queries.job(job_id).error
    assert error is not None
    assert "process_raster_tiles" in error.message


def test_geoetl_ingest_tiles(settings: Settings, tmp_path: Path) -> None:
    path = rgb(tmp_path / "Big Scene.tif")
    done = geoetl(
        settings, "ingest", str(path), "--tiles", "1024", "--collection", "scenes",
        "--target-crs", "native", "--access-level", "public",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "published scenes: 6 tiles (2 x 3) of 1024 px" in done.stdout
    assert "/raster/collections/scenes/WebMercatorQuad/map.html" in done.stdout
    platform = Platform.from_settings(settings)
    try:
        _, total = platform.catalog.search(SearchRequest(collections=["scenes"], count=True))
    finally:
        platform.close()
    assert total == 6
