"""A raster and a vector ingest end to end on S3 (moto) and Azure Blob (Azurite).

The COG is read back by rasterio through ``/vsis3/``/``/vsiaz/``, tiles and previews are
served by the API from the object store, features by OGC API. Neither the catalog stage
nor the tile routes download a COG: every download is recorded and only bronze sources
(and vector parts) may be fetched.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import morecantile
import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_validate

from geoetl import gdalsafe
from geoetl.api.app import create_app
from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_runner
from tests.servers import AzureServer, S3Server

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DATA = Path(__file__).parents[2] / "examples" / "data"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(params=["s3", "azure"])
def cloud_settings(request: pytest.FixtureRequest, home: Path) -> Settings:
    """Settings of a fresh home (SQLite) whose objects live on S3 or Azure Blob."""
    server: S3Server | AzureServer = request.getfixturevalue(f"{request.param}_server")
    return Settings(
        home=home,
        storage_url=f"{server.storage_url}/{uuid.uuid4().hex[:10]}",
        anonymous_clearance="ouo",
        lease_seconds=30.0,
        **server.settings(),
    )


@pytest.fixture
def client(cloud_settings: Settings) -> Iterator[TestClient]:
    """The API on those settings."""
    with TestClient(create_app(cloud_settings)) as c:
        yield c


def downloads_of(platform: Platform) -> list[str]:
    """Record every object the platform downloads from now on."""
    fetched: list[str] = []
    original = platform.objects.get_file

    def recording(key: str, local: Path) -> Path:
        fetched.append(key)
        return original(key, local)

    platform.objects.get_file = recording  # type: ignore[method-assign]
    return fetched


def run(platform: Platform, workflow: str, params: dict[str, Any]) -> dict[str, Any]:
    job_id, _ = platform.store.submit(workflow, params)
    runner = make_runner(platform, "cloud-test")
    try:
        status = runner.run_job(job_id)
    finally:
        runner.close()
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    assert view.result is not None
    return dict(view.result)


def test_raster_ingest_is_stored_and_served_from_the_object_store(client: TestClient) -> None:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    objects = platform.objects
    assert not objects.is_local
    fetched = downloads_of(platform)
    source, _ = objects.put_content_addressed(DATA / "elev.tif")
    result = run(platform, "process_raster", {"source": source, "target_crs": None})
    cog = result["cog"]
    assert cog.startswith("silver/cogs/")
    # The object names the lineage record (dataset version) that wrote it.
    assert objects.metadata(cog)["geoetl_lineage"] == f"system-rasters/{result['item_id']}@v1"
    assert objects.list("tmp") == [] or all(not k.endswith(".tif") for k in objects.list("tmp"))
    assert all(k.startswith("bronze/") for k in fetched), fetched  # no COG came back down
    assert not list(platform.settings.scratch_dir.glob("*/source/*"))  # downloads removed

    path = objects.gdal_path(cog)
    assert path.startswith(("/vsis3/", "/vsiaz/"))
    with gdalsafe.open_stored_raster(objects, cog) as ds:
        assert ds.files == [path]
        with rasterio.open(DATA / "elev.tif") as ref:
            assert (ds.read(1) == ref.read(1)).all()
            assert ds.crs == ref.crs
    with rasterio.Env(**gdalsafe.rasterio_env_kwargs(objects.gdal_options())):
        assert cog_validate(path, quiet=True)[0]

    fetched.clear()
    doc = client.get(result["urls"]["tilejson"]).json()
    lon, lat, zoom = doc["center"]
    tile = WEB_MERCATOR.tile(lon, lat, zoom)
    png = client.get(result["urls"]["tiles"].format(z=tile.z, x=tile.x, y=tile.y))
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    with MemoryFile(png.content) as mem, mem.open() as img:
        assert img.driver == "PNG"
        assert img.width == 256
        assert img.read(1).any()
    preview = client.get(result["urls"]["preview"])
    assert preview.status_code == 200
    assert fetched == []  # read in place with range requests

    item = client.get(result["urls"]["stac_item"]).json()
    assert item["assets"]["data"]["file:size"] == objects.size(cog)

    # The COG downloads through the STAC API from the object store, ranges honoured.
    asset_url = f"/stac/collections/{item['collection']}/items/{item['id']}/assets/data"
    whole = client.get(asset_url)
    assert whole.status_code == 200, whole.text
    assert len(whole.content) == objects.size(cog)
    with MemoryFile(whole.content) as mem, mem.open() as ds:
        assert ds.driver == "GTiff"
    header = client.get(asset_url, headers={"Range": "bytes=0-15"})
    assert header.status_code == 206
    assert header.content == whole.content[:16]
    assert header.headers["Content-Range"] == f"bytes 0-15/{len(whole.content)}"
    assert fetched == []  # streamed in ranges, never downloaded whole


def test_vector_ingest_is_stored_and_served_from_the_object_store(client: TestClient) -> None:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    objects = platform.objects
    source, _ = objects.put_content_addressed(DATA / "nc.gpkg")
    result = run(platform, "process_vector", {"source": source, "chunk_size": 40})
    [table] = result["tables"]
    assert table["features"] == 100
    assert not list(platform.settings.scratch_dir.glob("*/source/*"))
    parquet = result["urls"]["geoparquet"][table["collection_id"]]
    assert parquet.startswith("silver/vector/")
    assert objects.size(parquet) > 0
    assert objects.metadata(parquet)["geoetl_lineage"] == "system-vectors/nc@v1"
    with objects.open(parquet) as fh:
        assert pq.read_metadata(fh).num_rows == 100
    page = client.get(f"/collections/{table['collection_id']}/items", params={"limit": 5})
    assert page.status_code == 200, page.text
    doc = page.json()
    assert len(doc["features"]) == 5
    assert doc["numberMatched"] == 100


def test_shapefile_with_sidecars_from_the_object_store(client: TestClient) -> None:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    shp = DATA / "lux.shp"
    sidecars = [p for p in shp.parent.glob("lux.*") if p != shp]
    source = platform.objects.put_file_set(shp, sidecars)
    result = run(platform, "process_vector", {"source": source})
    assert result["tables"][0]["features"] > 0


def test_upload_through_the_api_lands_in_the_object_store(client: TestClient) -> None:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    secret = platform.tokens.create("cloud-admin", "admin", "restricted")
    body = (DATA / "lc.tif").read_bytes()
    answer = client.post(
        "/ingest",
        params={"filename": "lc.tif"},
        content=body,
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["workflow"] == "process_raster"
    [key] = [k for k in platform.objects.list("bronze") if k.endswith("/lc.tif")]
    assert platform.objects.size(key) == len(body)
    assert platform.objects.list("tmp/uploads") == []


def test_a_fresh_deployment_on_an_empty_prefix_is_ready(client: TestClient) -> None:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    assert platform.objects.list("bronze") == []
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["storage"] == "ok"
