"""``POST /ingest`` of a NetCDF file: ``variable`` and ``time_as`` reach the workflow."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from tests.api.conftest import platform_of
from tests.api.test_ingest_api import run, upload
from tests.raster.test_netcdf import EXPECTED_TIMES, make_netcdf

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def test_uploaded_netcdf_variable_time_steps_become_items(
    client: TestClient, tmp_path: Path
) -> None:
    nc = make_netcdf(tmp_path / "climate.nc")
    response = upload(client, nc, variable="tas", time_as="items", collection_id="climate")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["workflow"] == "process_raster_times"
    assert (job["params"]["variable"], job["params"]["time_as"]) == ("tas", "items")
    done = run(client, job["job_id"])
    assert done["status"] == "succeeded", done["error"]
    datetimes = []
    for url in done["result"]["urls"]["stac_items"]:
        item: dict[str, Any] = client.get(url).json()
        datetimes.append(item["properties"]["datetime"])
    assert datetimes == EXPECTED_TIMES


def test_hostile_variable_is_refused_before_the_upload_is_kept(
    client: TestClient, tmp_path: Path
) -> None:
    nc = make_netcdf(tmp_path / "climate.nc")
    response = upload(client, nc, variable='tas":/vsicurl/http://example.com/x')
    assert response.status_code == 422, response.text
    assert "not a variable name geoetl accepts" in response.text
    response = upload(client, nc, time_as="frames")
    assert response.status_code == 422, response.text
    assert platform_of(client).objects.list("bronze") == []
