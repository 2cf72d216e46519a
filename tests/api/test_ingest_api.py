"""``POST /ingest``: upload a file over HTTP and get it published, on SQLite and PostgreSQL.

The app runs in a TestClient; the submitted job is run to its end in-process by a
:class:`Runner`, as a worker would, and the result is read back through the API and
by plain rasterio/GDAL.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import rasterio

from geoetl.api.app import create_app
from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner
from tests.api.conftest import platform_of

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DATA = Path(__file__).parents[2] / "examples" / "data"


def upload(client: TestClient, path: Path, **params: Any) -> Any:
    return client.post(
        "/ingest",
        params={"filename": path.name, **params},
        content=path.read_bytes(),
        headers={"content-type": "application/octet-stream"},
    )


def run(client: TestClient, job_id: str) -> dict[str, Any]:
    runner = make_runner(platform_of(client), "ingest-test")
    try:
        status = runner.run_job(job_id)
    finally:
        runner.close()
    assert status in (JobStatus.succeeded, JobStatus.failed)
    body: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    return body


def stored(platform: Platform, prefix: str) -> list[str]:
    return platform.objects.list(prefix)


def test_uploaded_raster_is_published_and_served(client: TestClient) -> None:
    src = DATA / "elev.tif"
    response = upload(client, src, target_crs="native", collection_id="uploads")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"].endswith(f"/jobs/{job['job_id']}")
    assert job["workflow"] == "process_raster"
    assert job["params"]["source"] == f"bronze/{sha256_file(src)}/elev.tif"
    assert job["params"]["target_crs"] is None  # 'native' keeps the file's CRS
    assert job["idempotent"] is False

    done = run(client, job["job_id"])
    assert done["status"] == "succeeded", done["error"]
    result = done["result"]
    assert result["collection_id"] == "uploads"
    item = client.get(result["urls"]["stac_item"])
    assert item.status_code == 200
    assert item.json()["properties"]["geoetl:source"]["sha256"] == sha256_file(src)
    assert client.get(result["urls"]["preview"]).status_code == 200
    cog = platform_of(client).objects.gdal_path(result["cog"])
    with rasterio.open(src) as a, rasterio.open(cog) as b:
        assert (b.crs, b.width, b.height) == (a.crs, a.width, a.height)
        assert (b.read() == a.read()).all()
    assert stored(platform_of(client), "tmp/uploads") == []


def test_same_upload_twice_is_the_same_job(client: TestClient) -> None:
    src = DATA / "lc.tif"
    first = upload(client, src).json()
    second = upload(client, src)
    assert second.status_code == 202
    assert second.json()["job_id"] == first["job_id"]
    assert second.json()["idempotent"] is True
    assert len(stored(platform_of(client), "bronze")) == 1  # stored once
    other_tier = upload(client, src, output_tier="archive").json()
    assert other_tier["job_id"] != first["job_id"]


def test_uploaded_vector_goes_to_the_vector_workflow(client: TestClient) -> None:
    job = upload(client, DATA / "nc.gpkg", collection_id="counties").json()
    assert job["workflow"] == "process_vector"
    done = run(client, job["job_id"])
    assert done["status"] == "succeeded", done["error"]
    table = done["result"]["tables"][0]
    items = client.get(done["result"]["urls"]["features"][table["collection_id"]])
    assert items.status_code == 200
    assert items.json()["numberMatched"] == 100


def test_text_file_named_tif_fails_cleanly(client: TestClient, tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-raster.tif"
    bogus.write_text("hello, I am text\n" * 100)
    job = upload(client, bogus).json()
    done = run(client, job["job_id"])
    assert done["status"] == "failed"
    assert "not-a-raster.tif" in done["error"]["message"]
    platform = platform_of(client)
    assert stored(platform, "silver") == []
    items = client.get("/stac/search", params={"ids": "not-a-raster"}).json()
    assert items["features"] == []
    assert client.get("/livez").status_code == 200  # the service keeps running


@pytest.mark.parametrize(
    ("filename", "body", "status", "says"),
    [
        ("../escape.tif", b"x", 400, "plain file name"),
        ("dir/inner.tif", b"x", 400, "plain file name"),
        ("empty.tif", b"", 400, "body is empty"),
        ("x" * 250 + ".tif", b"x", 400, "longer than"),
    ],
)
def test_bad_uploads_are_rejected_and_leave_nothing(
    client: TestClient, filename: str, body: bytes, status: int, says: str
) -> None:
    response = client.post("/ingest", params={"filename": filename}, content=body)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    platform = platform_of(client)
    assert stored(platform, "bronze") == []
    assert stored(platform, "tmp/uploads") == []


def test_bad_raster_options_are_422_before_the_upload_is_kept(client: TestClient) -> None:
    response = upload(client, DATA / "elev.tif", output_tier="best", target_crs="native")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["output_tier"]
    platform = platform_of(client)
    assert stored(platform, "bronze") == []
    assert stored(platform, "tmp/uploads") == []
    assert client.get("/jobs").json()["items"] == []


def test_missing_filename_is_400(client: TestClient) -> None:
    response = client.post("/ingest", content=b"abc")
    assert response.status_code == 400
    assert "filename" in response.text


def test_oversized_upload_is_413_and_leaves_nothing(settings: Settings) -> None:
    small = settings.model_copy(update={"upload_max_mb": 1})
    with TestClient(create_app(small)) as c:
        secret = platform_of(c).tokens.create("uploader", "publisher", "ouo")
        response = c.post(
            "/ingest",
            params={"filename": "big.tif"},
            content=b"\0" * (1024 * 1024 + 1),
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 413, response.text
        assert "GEOETL_UPLOAD_MAX_MB" in response.json()["detail"]
        platform = platform_of(c)
        assert stored(platform, "bronze") == []
        assert stored(platform, "tmp/uploads") == []
        assert c.get("/jobs").json()["items"] == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("target_crs", "+init=epsg:4326"),
        ("input_crs", "+proj=longlat +nadgrids=/etc/passwd"),
        ("target_crs", "http://127.0.0.1:9/crs.json"),
    ],
)
def test_crs_options_that_read_files_or_urls_are_refused_before_the_upload(
    client: TestClient, option: str, value: str
) -> None:
    response = client.post(
        "/ingest",
        params={"filename": "elev.tif", option: value},
        content=(Path(__file__).parents[2] / "examples" / "data" / "elev.tif").read_bytes(),
    )
    assert response.status_code == 400, response.text
    assert option in response.json()["detail"]
    assert stored(platform_of(client), "bronze") == []
