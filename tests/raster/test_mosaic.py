"""A collection of rasters served as one layer: mosaic tiles, TileJSON, viewer (both backends).

elev.tif is cut into three side-by-side GeoTIFFs published as three items of one
collection: the left and middle thirds public, the right third official-use-only.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.windows import Window

from geoetl.api.app import create_app
from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DATA = Path(__file__).parents[2] / "examples" / "data"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
COLLECTION = "dem-tiles"
BASE = f"/raster/collections/{COLLECTION}"
CUTS = (0, 32, 64, 95)  # elev.tif is 95 columns wide


def thirds(folder: Path) -> list[tuple[Path, float, float]]:
    """elev.tif cut into left, middle and right GeoTIFFs: (path, west, east)."""
    out = []
    with rasterio.open(DATA / "elev.tif") as src:
        for name, (start, stop) in zip(
            ("left", "middle", "right"), itertools.pairwise(CUTS), strict=True
        ):
            window = Window(start, 0, stop - start, src.height)
            profile = {
                **src.profile,
                "width": stop - start,
                "transform": src.window_transform(window),
                "tiled": False,
            }
            profile.pop("blockxsize", None)
            profile.pop("blockysize", None)
            path = folder / f"elev_{name}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(window=window))
            west, _, east, _ = rasterio.windows.bounds(window, src.transform)
            out.append((path, west, east))
    return out


def publish(platform: Platform, path: Path, level: str, collection: str = COLLECTION) -> None:
    key = f"bronze/{sha256_file(path)}/{path.name}"
    platform.objects.put_file(path, key)
    job_id, _ = platform.store.submit(
        "process_raster", {"source": key, "collection_id": collection, "access_level": level}
    )
    runner = make_runner(platform, "mosaic-test")
    try:
        assert runner.run_job(job_id) == JobStatus.succeeded, platform.queries.job(job_id).error
    finally:
        runner.close()


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def platform_of(client: TestClient) -> Platform:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform


@pytest.fixture
def pieces(anonymous: TestClient, tmp_path: Path) -> list[tuple[Path, float, float]]:
    parts = thirds(tmp_path)
    platform = platform_of(anonymous)
    for (path, _, _), level in zip(parts, ("public", "public", "ouo"), strict=True):
        publish(platform, path, level)
    return parts


def ouo_headers(client: TestClient) -> dict[str, str]:
    secret = platform_of(client).tokens.create("ouo-reader", "reader", "ouo")
    return {"Authorization": f"Bearer {secret}"}


def alpha(content: bytes) -> np.ndarray[Any, Any]:
    """The PNG's alpha (mask) band: 0 where there is no data."""
    with MemoryFile(content) as mem, mem.open() as img:
        assert img.driver == "PNG"
        assert img.count in (2, 4)
        band: np.ndarray[Any, Any] = img.read(img.count)
        return band


def tile_over(lon: float, lat: float, zoom: int) -> morecantile.Tile:
    return WEB_MERCATOR.tile(lon, lat, zoom)


def test_tiles_join_items_at_their_seam(
    anonymous: TestClient, pieces: list[tuple[Path, float, float]]
) -> None:
    seam = pieces[0][2]  # east edge of the left third, west edge of the middle one
    lat = 49.8
    for zoom in (12, 11, 10):
        tile = tile_over(seam, lat, zoom)
        bounds = WEB_MERCATOR.bounds(tile)
        column = round((seam - bounds.left) / (bounds.right - bounds.left) * 256)
        if 40 <= column <= 216:
            break
    else:
        pytest.fail("no tile has the seam near its middle")
    response = anonymous.get(f"{BASE}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    mask = alpha(response.content)
    assert mask.shape == (256, 256)
    assert mask[:, : column - 4].any(), "nothing drawn west of the seam"
    assert mask[:, column + 4 :].any(), "nothing drawn east of the seam"
    # Both halves filled right up to the seam: no gap between the items.
    assert mask[:, column - 4 : column + 4].all()

    # Other formats and a pixel-selection method.
    webp = anonymous.get(
        f"{BASE}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.webp",
        params={"pixel_selection": "highest"},
    )
    assert webp.status_code == 200, webp.text
    assert webp.headers["content-type"] == "image/webp"
    bad = anonymous.get(
        f"{BASE}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"pixel_selection": "loudest"},
    )
    assert bad.status_code == 400
    assert "pixel_selection" in bad.json()["detail"]
    too_big = anonymous.get(
        f"{BASE}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"tilesize": 5000},
    )
    assert too_big.status_code == 400

    # Far from every item: no content.
    empty = anonymous.get(f"{BASE}/tiles/WebMercatorQuad/{tile.z}/{tile.x + 40}/{tile.y}.png")
    assert empty.status_code == 204

    # TileJSON: the public extent (left and middle thirds), zooms from the resolution.
    doc = anonymous.get(f"{BASE}/WebMercatorQuad/tilejson.json").json()
    west, south, east, north = doc["bounds"]
    assert west == pytest.approx(pieces[0][1], abs=0.01)
    assert east == pytest.approx(pieces[1][2], abs=0.01)
    assert south < lat < north
    assert 0 <= doc["minzoom"] <= doc["maxzoom"] <= 12
    assert doc["maxzoom"] >= 6
    url = doc["tiles"][0]
    assert "/raster/collections/dem-tiles/tiles/WebMercatorQuad/{z}/{x}/{y}" in url
    assert "rescale=" in url  # one range for the whole layer (a DEM)
    path = url.split("testserver", 1)[1].format(z=tile.z, x=tile.x, y=tile.y)
    assert anonymous.get(path).status_code == 200

    # The viewer: geoetl's Leaflet, no script or stylesheet from elsewhere.
    page = anonymous.get(f"{BASE}/WebMercatorQuad/map.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="map"' in page.text
    assert "/raster/collections/dem-tiles/WebMercatorQuad/tilejson.json" in page.text
    for link in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert not link.startswith(("http://", "https://", "//")) or "testserver" in link, link
    assert "unpkg.com" not in page.text
    assert "cdn" not in page.text.lower()

    # Point values from the item under the point.
    point = anonymous.get(f"{BASE}/point/{seam - 0.05},{lat}").json()
    assert point["item_id"] == "elev_left"
    with rasterio.open(DATA / "elev.tif") as src:
        [expected] = next(src.sample([(seam - 0.05, lat)]))
    assert point["values"] == [pytest.approx(float(expected), abs=1)]


def test_items_above_the_callers_level_are_left_out(
    anonymous: TestClient, pieces: list[tuple[Path, float, float]]
) -> None:
    _, west, east = pieces[2]  # the official-use-only third
    tile = tile_over((west + east) / 2, 49.8, 12)
    bounds = WEB_MERCATOR.bounds(tile)
    assert west < bounds.left
    assert bounds.right < east
    url = f"{BASE}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    assert anonymous.get(url).status_code == 204
    headers = ouo_headers(anonymous)
    cleared = anonymous.get(url, headers=headers)
    assert cleared.status_code == 200, cleared.text
    assert alpha(cleared.content).any()
    # The extent each caller sees.
    public = anonymous.get(f"{BASE}/WebMercatorQuad/tilejson.json").json()["bounds"]
    assert public[2] == pytest.approx(west, abs=0.01)
    everything = anonymous.get(f"{BASE}/WebMercatorQuad/tilejson.json", headers=headers).json()
    assert everything["bounds"][2] == pytest.approx(east, abs=0.01)
    # A collection of official-use-only items only is not there for anonymous callers.
    publish(platform_of(anonymous), pieces[2][0], "ouo", "dem-secret")
    for path in ("WebMercatorQuad/tilejson.json", "WebMercatorQuad/map.html"):
        assert anonymous.get(f"/raster/collections/dem-secret/{path}").status_code == 404
        assert (
            anonymous.get(f"/raster/collections/dem-secret/{path}", headers=headers).status_code
            == 200
        )
    secret_tile = f"/raster/collections/dem-secret/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}"
    assert anonymous.get(secret_tile).status_code == 404
    assert anonymous.get(secret_tile, headers=headers).status_code == 200


def test_unknown_collection_and_matrix_set(anonymous: TestClient) -> None:
    for path in (
        "/raster/collections/nope/tiles/WebMercatorQuad/3/4/2.png",
        "/raster/collections/nope/WebMercatorQuad/tilejson.json",
        "/raster/collections/nope/WebMercatorQuad/map.html",
        "/raster/collections/nope/point/6.0,49.8",
    ):
        response = anonymous.get(path)
        assert response.status_code == 404, (path, response.text)
    assert anonymous.get("/raster/collections/nope/NoSuchTms/tilejson.json").status_code == 404
    assert (
        anonymous.get("/raster/collections/nope/tiles/WebMercatorQuad/2/9/0.png").status_code == 400
    )
