"""``geoetl ingest`` as a user runs it: a real subprocess on the embedded default."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import rasterio
from rio_cogeo.cogeo import cog_validate

from geoetl.settings import Settings
from tests.conftest import geoetl_cmd, settings_env

DATA = Path(__file__).parents[2] / "examples" / "data"


def ingest(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**settings_env(settings), "COLUMNS": "200"}
    return subprocess.run(
        geoetl_cmd("ingest", *args), env=env, capture_output=True, text=True, timeout=120
    )


def test_ingest_prints_where_the_raster_is_served(settings: Settings) -> None:
    run = ingest(settings, str(DATA / "lc.tif"), "--access-level", "Public")
    assert run.returncode == 0, run.stderr
    assert "published system-rasters/lc" in run.stdout
    assert "/raster/collections/system-rasters/items/lc/WebMercatorQuad/map.html" in run.stdout
    cog_line = next(line for line in run.stdout.splitlines() if "COG" in line)
    cog = cog_line.split()[-1]
    assert cog_validate(cog, quiet=True)[0]
    with rasterio.open(cog) as ds:
        assert ds.colormap(1)


def test_ingest_json_is_idempotent_and_tiers_make_items(settings: Settings) -> None:
    first = ingest(settings, str(DATA / "elev.tif"), "--json")
    assert first.returncode == 0, first.stderr
    job = json.loads(first.stdout)
    assert job["status"] == "succeeded"
    assert job["result"]["raster_type"] == "dem"
    again = json.loads(ingest(settings, str(DATA / "elev.tif"), "--json").stdout)
    assert again["job_id"] == job["job_id"]
    archive = json.loads(
        ingest(settings, str(DATA / "elev.tif"), "--json", "--tier", "archive").stdout
    )
    assert archive["job_id"] != job["job_id"]
    assert archive["result"]["item_id"] == "elev_archive"


def test_ingest_of_a_bad_file_is_one_readable_line(settings: Settings, tmp_path: Path) -> None:
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster\n")
    run = ingest(settings, str(notes))
    assert run.returncode != 0
    assert "notes.tif is not a raster GDAL can read" in run.stderr
    assert "Traceback" not in run.stderr
    missing = ingest(settings, str(tmp_path / "nope.tif"))
    assert missing.returncode != 0
    assert "is not a file" in missing.stderr


def test_ingest_without_crs_needs_input_crs(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "nocrs.tif"
    with rasterio.open(DATA / "elev.tif") as src:
        profile = {**src.profile, "crs": None}
        data = src.read()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    run = ingest(settings, str(path))
    assert run.returncode != 0
    assert "no coordinate reference system; pass input_crs" in run.stderr + run.stdout
    ok = ingest(settings, str(path), "--input-crs", "EPSG:4326")
    assert ok.returncode == 0, ok.stderr
