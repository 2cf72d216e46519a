"""Raster fidelity as a GIS user meets it (issue 14): real ``geoetl ingest`` runs and uploads.

A GeoTIFF with its world file, a raster with a local (engineering) CRS, a continuous
single-band scan, and a zip of a raster with its sidecars uploaded to ``geoetl serve``.
"""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from geoetl.settings import Settings
from tests.conftest import bearer, geoetl_cmd, serving, settings_env

ORIGIN = (500000.0, 4000300.0)  # UTM 33N
LOCAL_WKT = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'


def ingest(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**settings_env(settings), "COLUMNS": "200"}
    return subprocess.run(
        geoetl_cmd("ingest", *args), env=env, capture_output=True, text=True, timeout=120
    )


def scan(folder: Path) -> Path:
    """A GeoTIFF without georeferencing, and its world file next to it."""
    path = folder / "scan.tif"
    y, x = np.mgrid[0:200, 0:300]
    data = ((np.sin(x / 13) + np.cos(y / 7) + 2) * 60).astype("uint8")  # continuous
    with rasterio.open(
        path, "w", driver="GTiff", width=300, height=200, count=1, dtype="uint8"
    ) as ds:
        ds.write(data, 1)
    (folder / "scan.tfw").write_text(f"10\n0\n0\n-10\n{ORIGIN[0] + 5}\n{ORIGIN[1] - 5}\n")
    return path


def test_a_geotiff_with_its_world_file_is_published(settings: Settings, tmp_path: Path) -> None:
    path = scan(tmp_path)
    run = ingest(
        settings, str(path), "--input-crs", "EPSG:32633", "--target-crs", "native", "--json"
    )
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["raster_type"] == "dem"  # continuous: not categorical
    with rasterio.open(Path(settings.home) / "storage" / job["result"]["cog"]) as cog:
        assert cog.transform.almost_equals(from_origin(*ORIGIN, 10, 10))
        assert cog.crs == CRS.from_epsg(32633)


def test_a_local_crs_is_overridden_by_input_crs(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "site.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=40,
        height=30,
        count=1,
        dtype="float32",
        crs=CRS.from_wkt(LOCAL_WKT),
        transform=from_origin(*ORIGIN, 10, 10),
    ) as ds:
        ds.write(np.ones((1, 30, 40), dtype="float32"))
    refused = ingest(settings, str(path))
    assert refused.returncode != 0
    said = refused.stderr + refused.stdout
    assert "local (engineering) coordinate system ('site grid')" in said
    assert "--input-crs" in said
    assert "{" not in said
    assert "Traceback" not in said
    ok = ingest(settings, str(path), "--input-crs", "EPSG:32633")
    assert ok.returncode == 0, ok.stderr
    assert "used instead of the local (engineering) coordinate system" in ok.stdout


def _wait(location: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(location, timeout=10).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{location} did not finish within {timeout}s")


def test_an_uploaded_zip_of_a_raster_and_its_sidecars(settings: Settings, tmp_path: Path) -> None:
    path = scan(tmp_path)
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(path, "scan.tif")
        zf.write(tmp_path / "scan.tfw", "scan.tfw")
    publisher = bearer(settings, "publisher", "ouo")
    with serving(settings, tmp_path / "serve.log", "--workers", "1") as base:
        answer = httpx.post(
            f"{base}/ingest",
            params={"filename": "scan.zip", "input_crs": "EPSG:32633", "target_crs": "native"},
            content=archive.read_bytes(),
            headers=publisher,
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["workflow"] == "process_raster"
        job = _wait(answer.headers["location"])
        assert job["status"] == "succeeded", job["error"]
        item = httpx.get(f"{base}{job['result']['urls']['stac_item']}").json()
        assert item["properties"]["proj:code"] == "EPSG:32633"
        assert item["properties"]["proj:bbox"] == [
            ORIGIN[0],
            ORIGIN[1] - 2000,
            ORIGIN[0] + 3000,
            ORIGIN[1],
        ]
