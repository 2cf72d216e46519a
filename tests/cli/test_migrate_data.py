"""``geoetl migrate-data``: an embedded deployment moves to PostgreSQL and keeps its data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from geoetl.api.app import create_app
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import DATA, geoetl


@pytest.fixture
def embedded(home: Path) -> Settings:
    """An embedded (SQLite) home with a raster and a vector dataset published."""
    settings = Settings(home=home, anonymous_clearance="restricted")
    for name, level in (("elev.tif", "public"), ("nc.gpkg", "ouo")):
        done = geoetl(settings, "ingest", str(DATA / name), "--access-level", level)
        assert done.returncode == 0, done.stderr
    return settings


def _views(settings: Settings) -> dict[str, object]:
    """What a reader of the API sees: STAC items and OGC features, whatever the backend."""
    with TestClient(create_app(settings)) as client:
        search = client.get("/stac/search", params={"limit": 100}).json()
        collections = client.get("/collections").json()["collections"]
        features = {
            c["id"]: client.get(f"/collections/{c['id']}/items", params={"limit": 1000}).json()
            for c in collections
        }
    items = sorted((i["collection"], i["id"], i["bbox"]) for i in search["features"])
    return {
        "items": items,
        "features": {
            cid: [(f["id"], f["properties"], f["geometry"]) for f in doc["features"]]
            for cid, doc in features.items()
        },
    }


def test_migrate_data_copies_catalog_and_features(embedded: Settings, pg_database_url: str) -> None:
    done = geoetl(embedded, "migrate-data", "--to", pg_database_url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["items"], report["feature_tables"], report["features"]) == (2, 1, 100)
    assert all(c["source"] == c["target"] for c in report["checks"])

    moved = embedded.model_copy(update={"database_url": pg_database_url})
    assert _views(moved) == _views(embedded)
    # Access levels came along: an anonymous public reader sees only the public raster.
    public = moved.model_copy(update={"anonymous_clearance": "public"})
    with TestClient(create_app(public)) as client:
        ids = [i["id"] for i in client.get("/stac/search").json()["features"]]
        assert client.get("/collections").json()["collections"] == []
    assert len(ids) == 1

    again = geoetl(embedded, "migrate-data", "--to", pg_database_url, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["checks"] == report["checks"]
    assert _views(moved) == _views(embedded)
    platform = Platform.from_settings(moved)
    try:
        assert platform.features.count("nc", "nc_polygons") == 100
    finally:
        platform.close()


def test_migrate_data_refuses_a_non_postgresql_target(embedded: Settings, home: Path) -> None:
    done = geoetl(embedded, "migrate-data", "--to", f"sqlite:///{home}/other.db")
    assert done.returncode != 0
    assert "--to must be a postgresql:// URL" in done.stderr
