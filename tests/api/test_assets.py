"""STAC asset hrefs are URLs served by geoetl, with a data home outside /tmp too.

Vector items used to store a server path as their GeoParquet href: with the home
outside /tmp (the default ``./geoetl-data``) every vector item answered 500, and under
/tmp the path leaked. Now every asset is a URL of this API, readable with range
requests by GDAL's ``/vsicurl/`` and by pyarrow, and hidden items' assets are 404.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rasterio.io import MemoryFile

from geoetl.api.app import create_app
from geoetl.engine.models import JobStatus
from geoetl.settings import Settings
from geoetl.workers import make_runner
from tests.api.conftest import platform_of

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

REPO = Path(__file__).parents[2]
DATA = REPO / "examples" / "data"


@pytest.fixture
def home_outside_tmp(settings: Settings) -> Settings:
    # The shared settings put every test home outside /tmp (tests/conftest.py).
    assert not str(settings.home.resolve()).startswith("/tmp")
    return settings


@pytest.fixture
def client(home_outside_tmp: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(home_outside_tmp)) as c:
        secret = platform_of(c).tokens.create("admin", "admin", "restricted")
        c.headers["Authorization"] = f"Bearer {secret}"
        yield c


def publish(client: TestClient, name: str, level: str) -> dict[str, object]:
    body = (DATA / name).read_bytes()
    job = client.post(
        "/ingest", params={"filename": name, "access_level": level}, content=body
    ).json()
    runner = make_runner(platform_of(client), "assets")
    assert runner.run_job(job["job_id"]) == JobStatus.succeeded
    runner.close()
    result: dict[str, object] = platform_of(client).queries.job(job["job_id"]).result
    return result


def test_vector_and_raster_items_have_url_assets(
    client: TestClient, home_outside_tmp: Settings
) -> None:
    publish(client, "nc.gpkg", "public")
    publish(client, "elev.tif", "public")
    vector = client.get("/stac/collections/system-vectors/items/nc")
    assert vector.status_code == 200, vector.text
    assert str(home_outside_tmp.home) not in vector.text  # no server path leaves
    (asset,) = vector.json()["assets"].values()
    assert asset["href"].startswith("http://testserver/stac/collections/system-vectors/items/nc/")
    parquet = client.get(asset["href"])
    assert parquet.status_code == 200
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 100

    found = client.get("/stac/search", params={"ids": "nc,elev"}).json()["features"]
    assert {f["id"] for f in found} == {"nc", "elev"}
    raster = next(f for f in found if f["id"] == "elev")["assets"]["data"]["href"]
    whole = client.get(raster)
    with MemoryFile(whole.content) as mem, mem.open() as cog:
        assert cog.crs.to_epsg() == 4326
    part = client.get(raster, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.content == whole.content[:100]


def test_assets_of_hidden_items_are_404(client: TestClient) -> None:
    publish(client, "lc.tif", "ouo")
    item = client.get("/stac/collections/system-rasters/items/lc").json()
    href = item["assets"]["data"]["href"].replace("http://testserver", "")
    assert client.get(href).status_code == 200
    anonymous = client.get(href, headers={"Authorization": ""})
    assert anonymous.status_code in (401, 404)
    del client.headers["Authorization"]
    assert client.get(href).status_code == 404
    assert client.get(href.replace("/data", "/../../x")).status_code == 404
