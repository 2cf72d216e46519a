"""End to end: a file uploaded to a running ``geoetl serve`` is published by its workers.

A real server with one worker process on the ``settings`` database (SQLite or
PostgreSQL), driven over HTTP; the published COG is checked with rio-cogeo and rasterio,
the STAC item, TileJSON and features through the API.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import rasterio
from rio_cogeo.cogeo import cog_validate

from geoetl.settings import Settings
from tests.conftest import bearer, serving

DATA = Path(__file__).parents[2] / "examples" / "data"
DONE = {"succeeded", "failed", "cancelled"}


def _wait(location: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(location, timeout=10).json()
        if job["status"] in DONE:
            return job
        time.sleep(0.1)
    raise AssertionError(f"{location} did not finish within {timeout}s")


def test_uploaded_files_are_published_by_the_workers(settings: Settings, tmp_path: Path) -> None:
    publisher = bearer(settings, "publisher", "ouo")
    with serving(settings, tmp_path / "serve.log", "--workers", "1") as base:
        with (DATA / "olinda_dem_utm25s.tif").open("rb") as body:
            raster = httpx.post(
                f"{base}/ingest",
                params={"filename": "olinda_dem_utm25s.tif", "collection_id": "uploads"},
                content=body,
                headers=publisher,
                timeout=60,
            )
        assert raster.status_code == 202, raster.text
        vector = httpx.post(
            f"{base}/ingest",
            params={"filename": "nc.gpkg"},
            content=(DATA / "nc.gpkg").read_bytes(),
            headers=publisher,
            timeout=60,
        )
        assert vector.status_code == 202, vector.text

        job = _wait(raster.headers["location"])
        assert job["status"] == "succeeded", job["error"]
        result = job["result"]
        assert result["reprojected"] is True  # EPSG:4326 by default
        item = httpx.get(f"{base}{result['urls']['stac_item']}").json()
        assert item["collection"] == "uploads"
        assert item["properties"]["proj:code"] == "EPSG:4326"
        tile_json = httpx.get(f"{base}{result['urls']['tilejson']}")
        assert tile_json.status_code == 200
        cog = Path(settings.home) / "storage" / result["cog"]
        assert cog_validate(str(cog), quiet=True)[0]
        with rasterio.open(cog) as ds:
            assert ds.crs.to_epsg() == 4326
            assert ds.count == 1  # float data: NaN corners, no alpha band

        done = _wait(vector.headers["location"])
        assert done["status"] == "succeeded", done["error"]
        table = done["result"]["tables"][0]
        features = httpx.get(f"{base}{done['result']['urls']['features'][table['collection_id']]}")
        assert features.json()["numberMatched"] == 100


def test_an_upload_cut_off_midway_leaves_nothing_behind(settings: Settings, tmp_path: Path) -> None:
    uploads = Path(settings.home) / "storage" / "tmp" / "uploads"
    auth = bearer(settings, "publisher", "ouo")["Authorization"]
    with serving(settings, tmp_path / "serve.log", "--workers", "0") as base:
        url = urlsplit(base)
        head = (
            "POST /ingest?filename=big.tif HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\n"
            f"Authorization: {auth}\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Content-Length: 50000000\r\n\r\n"
        )
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(head.encode() + b"\0" * 12_000_000)  # then the client goes away
            deadline = time.monotonic() + 30
            while not any(uploads.glob("*")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any(uploads.glob("*")), "the upload never reached the staging area"
        deadline = time.monotonic() + 30
        while any(uploads.glob("*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(uploads.glob("*"))
        assert not (Path(settings.home) / "storage" / "bronze").exists() or not any(
            (Path(settings.home) / "storage" / "bronze").rglob("*")
        )
        assert httpx.get(f"{base}/jobs").json()["items"] == []
        assert httpx.get(f"{base}/livez").status_code == 200
