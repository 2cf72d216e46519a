"""``geoetl ingest FILE.nc --variable NAME [--time-as items]``, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from geoetl.settings import Settings
from tests.cli.helpers import geoetl
from tests.raster.test_netcdf import EXPECTED_TIMES, make_netcdf


def test_ingest_netcdf_variable_as_bands_then_as_items(settings: Settings, tmp_path: Path) -> None:
    nc = make_netcdf(tmp_path / "climate.nc")

    missing = geoetl(settings, "ingest", str(nc))
    assert missing.returncode != 0
    said = " ".join((missing.stdout + missing.stderr).split())
    assert "several variables (tas, pr, q)" in said
    assert "--variable" in said

    bands = geoetl(settings, "ingest", str(nc), "--variable", "pr", "--json")
    assert bands.returncode == 0, bands.stderr
    view = json.loads(bands.stdout)
    assert (view["workflow"], view["status"]) == ("process_raster", "succeeded")
    assert view["params"]["variable"] == "pr"
    assert view["result"]["item_id"] == "climate_pr"

    items = geoetl(settings, "ingest", str(nc), "--variable", "pr", "--time-as", "items")
    assert items.returncode == 0, items.stderr
    shown = items.stdout
    assert "variable pr, 4 time steps" in shown
    for time in EXPECTED_TIMES:
        assert time in shown
    assert "climate_pr_20210101T000000" in shown


def test_ingest_folder_of_netcdf_time_steps_as_items(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    make_netcdf(folder / "run1.nc")
    run = geoetl(settings, "ingest", str(folder), "--variable", "tas", "--time-as", "items")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 items" in run.stdout
