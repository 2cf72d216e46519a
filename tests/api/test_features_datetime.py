"""datetime filtering of a collection with a temporal property, through the HTTP API."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
from fastapi.testclient import TestClient
from shapely.geometry import Point

from geoetl.api.app import create_app
from geoetl.engine.models import JobStatus
from geoetl.settings import Settings
from geoetl.workers import make_runner


def test_datetime_instants_and_intervals(settings: Settings, tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {
            "name": ["a", "b", "c"],
            "observed": pd.to_datetime(
                ["2020-01-01T10:00:00Z", "2021-06-01T00:00:00Z", "2022-03-01T12:30:00Z"]
            ),
        },
        geometry=[Point(0, 0), Point(1, 1), Point(2, 2)],
        crs="EPSG:4326",
    )
    frame.to_file(tmp_path / "events.gpkg")
    with TestClient(create_app(settings)) as client:
        platform = client.app.state.platform  # type: ignore[attr-defined]
        key, _ = platform.objects.put_content_addressed(tmp_path / "events.gpkg")
        job_id, _ = platform.store.submit(
            "process_vector", {"source": key, "access_level": "public"}, access_level="public"
        )
        runner = make_runner(platform, "t")
        assert runner.run_job(job_id) == JobStatus.succeeded
        runner.close()

        def names(value: str) -> list[str]:
            r = client.get("/collections/events/items", params={"datetime": value})
            assert r.status_code == 200, r.text
            return sorted(f["properties"]["name"] for f in r.json()["features"])

        assert names("2021-01-01T00:00:00Z/..") == ["b", "c"]
        assert names("../2021-01-01T00:00:00Z") == ["a"]
        assert names("2020-06-01T00:00:00Z/2022-01-01T00:00:00Z") == ["b"]
        # An instant matches the stored timestamp however either is spelled.
        assert names("2021-06-01T00:00:00Z") == ["b"]
        assert names("2021-06-01T02:00:00+02:00") == ["b"]
        assert names("2021-06-01T00:00:00.000Z") == ["b"]
        assert names("2022-03-01T12:30:00Z") == ["c"]
        assert names("2021-06-01T00:00:01Z") == []
        bad = client.get("/collections/events/items", params={"datetime": "yesterday"})
        assert bad.status_code == 400
