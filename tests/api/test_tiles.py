"""Raster tiles for every sample raster, read back through the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import morecantile
import pytest
import rasterio
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile

from geoetl.api.app import create_app
from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner

DATA = Path(__file__).parents[2] / "examples" / "data"
SAMPLES = ["L7_ETMs.tif", "elev.tif", "lc.tif", "olinda_dem_utm25s.tif"]
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # An internal deployment: anonymous readers see official-use-only rasters.
    with TestClient(create_app(settings.model_copy(update={"anonymous_clearance": "ouo"}))) as c:
        yield c


def publish(platform: Platform, name: str) -> dict[str, str]:
    path = DATA / name
    key = f"bronze/{sha256_file(path)}/{name}"
    platform.objects.put_file(path, key)
    job_id, _ = platform.store.submit("process_raster", {"source": key})
    runner = make_runner(platform, "tiles-test")
    assert runner.run_job(job_id) == JobStatus.succeeded
    runner.close()
    result: dict[str, str] = platform.queries.job(job_id).result
    return result


def png(content: bytes) -> tuple[int, int, int]:
    with MemoryFile(content) as mem, mem.open() as img:
        assert img.driver == "PNG"
        return img.count, img.width, img.height


@pytest.mark.parametrize("name", SAMPLES)
def test_tiles_preview_and_tilejson(client: TestClient, name: str) -> None:
    result = publish(client.app.state.platform, name)  # type: ignore[attr-defined]
    urls = result["urls"]  # type: ignore[index]
    tilejson = client.get(urls["tilejson"])
    assert tilejson.status_code == 200
    doc = tilejson.json()
    lon, lat, zoom = doc["center"]
    tile = WEB_MERCATOR.tile(lon, lat, zoom)
    inside = client.get(urls["tiles"].format(z=tile.z, x=tile.x, y=tile.y))
    assert inside.status_code == 200, inside.text
    assert inside.headers["content-type"] == "image/png"
    bands, width, _ = png(inside.content)
    assert width == 256
    assert bands in (2, 4)  # grey or RGB, with alpha for the area outside the data
    preview = client.get(urls["preview"])
    assert preview.status_code == 200
    png(preview.content)
    outside = client.get(urls["tiles"].format(z=tile.z, x=tile.x + 40, y=tile.y))
    assert outside.status_code == 404
    assert "outside bounds" in outside.json()["detail"]
    viewer = client.get(urls["viewer"])
    assert viewer.status_code == 200
    assert 'id="map"' in viewer.text


def test_point_value_matches_the_source(client: TestClient) -> None:
    publish(client.app.state.platform, "elev.tif")  # type: ignore[attr-defined]
    lon, lat = 6.1, 49.8
    with rasterio.open(DATA / "elev.tif") as src:
        expected = next(src.sample([(lon, lat)]))[0]
    r = client.get(f"/raster/collections/system-rasters/items/elev/point/{lon},{lat}")
    assert r.status_code == 200
    assert r.json()["values"] == [expected]


def test_dem_is_rescaled_to_its_statistics(client: TestClient) -> None:
    publish(client.app.state.platform, "elev.tif")  # type: ignore[attr-defined]
    base = "/raster/collections/system-rasters/items/elev"
    default = client.get(f"{base}/preview.png?max_size=64")
    explicit = client.get(f"{base}/preview.png?max_size=64&rescale=141,547")
    flat = client.get(f"{base}/preview.png?max_size=64&rescale=0,65535")
    assert default.content == explicit.content
    assert default.content != flat.content


def test_categorical_keeps_its_colour_table(client: TestClient) -> None:
    publish(client.app.state.platform, "lc.tif")  # type: ignore[attr-defined]
    r = client.get("/raster/collections/system-rasters/items/lc/preview.png?max_size=64")
    assert r.status_code == 200
    bands, _, _ = png(r.content)
    assert bands == 4  # palette expanded to RGBA colours, not a grey ramp


def test_unknown_item_and_asset_are_404(client: TestClient) -> None:
    r = client.get("/raster/collections/system-rasters/items/nope/WebMercatorQuad/tilejson.json")
    assert r.status_code == 404
    assert "no item 'nope'" in r.json()["detail"]
    publish(client.app.state.platform, "elev.tif")  # type: ignore[attr-defined]
    r = client.get("/raster/collections/system-rasters/items/elev/preview.png?asset=archive")
    assert r.status_code == 404
    assert "no asset 'archive'" in r.json()["detail"]


def test_no_route_takes_a_file_path(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, ops in paths.items():
        for op in ops.values():
            names = {p["name"] for p in op.get("parameters", [])}
            assert "url" not in names, path


def test_stac_item_url_of_the_job_result(client: TestClient) -> None:
    result = publish(client.app.state.platform, "lc.tif")  # type: ignore[attr-defined]
    r = client.get(result["urls"]["stac_item"])  # type: ignore[index]
    assert r.status_code == 200
    item = r.json()
    assert item["id"] == "lc"
    rels = {link["rel"]: link["href"] for link in item["links"]}
    assert rels["self"].endswith(result["urls"]["stac_item"])  # type: ignore[index]
    # The asset href is a URL of this API; what it serves opens with plain GDAL.
    href = item["assets"]["data"]["href"]
    assert href.startswith("http://testserver/stac/collections/system-rasters/items/lc/")
    with MemoryFile(client.get(href).content) as mem, mem.open() as ds:
        assert ds.colormap(1)
    assert client.get(rels["collection"]).json()["id"] == "system-rasters"
    assert client.get(rels["tiles"].replace("http://testserver", "")).status_code == 200
    assert client.get("/stac/collections/system-rasters/items/nope").status_code == 404
