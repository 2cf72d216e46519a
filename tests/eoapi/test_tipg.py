"""TiPG lists geoetl's PostGIS feature tables and serves the same features as geoetl."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import shapely.geometry
from fastapi.testclient import TestClient

from geoetl.api.app import create_app
from tests.eoapi.conftest import Deployment

pytestmark = pytest.mark.postgres


def _tipg_collections(deployment: Deployment, who: str) -> list[str]:
    answer = httpx.get(
        deployment.base("tipg", who) + "/collections", params={"limit": 1000}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return sorted(c["id"] for c in answer.json()["collections"])


def _geoetl_tables(deployment: Deployment, clearance: str) -> dict[str, str]:
    """geoetl's OGC API collection id of each PostGIS table ``clearance`` may see."""
    settings = deployment.settings.model_copy(
        update={"anonymous_clearance": clearance, "audience": "restricted"}
    )
    with TestClient(create_app(settings)) as client:
        ids = [c["id"] for c in client.get("/collections").json()["collections"]]
    from geoetl.platform import Platform

    platform = Platform.from_settings(settings, migrate=False)
    try:
        return {f"geo.{platform.feature_registry.get(cid).table_name}": cid for cid in ids}
    finally:
        platform.close()


def _features(doc: dict[str, Any], drop: set[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Feature id -> (shapely geometry, properties)."""
    return {
        str(f["id"]): (
            shapely.geometry.shape(f["geometry"]),
            {k: v for k, v in f["properties"].items() if k not in drop},
        )
        for f in doc["features"]
    }


@pytest.mark.parametrize(("who", "clearance"), [("postgres", "restricted"), ("reader", "public")])
def test_tipg_lists_the_tables_geoetl_serves(
    deployment: Deployment, who: str, clearance: str
) -> None:
    tables = _geoetl_tables(deployment, clearance)
    assert sorted(tables) == _tipg_collections(deployment, who)
    assert len(tables) == (3 if who == "postgres" else 2)
    # buildings was published after the reader role was made: its grant followed.
    assert "geo.buildings_polygons" in tables


def test_tipg_returns_the_same_features(deployment: Deployment) -> None:
    tables = _geoetl_tables(deployment, "restricted")
    settings = deployment.settings.model_copy(
        update={"anonymous_clearance": "restricted", "audience": "restricted"}
    )
    with TestClient(create_app(settings)) as client:
        for table, cid in tables.items():
            ours = client.get(f"/collections/{cid}/items", params={"limit": 1000})
            assert ours.status_code == 200, ours.text
            theirs = httpx.get(
                f"{deployment.base('tipg')}/collections/{table}/items",
                params={"limit": 1000},
                timeout=30,
            )
            assert theirs.status_code == 200, theirs.text
            mine = _features(ours.json(), set())
            # TiPG lists the primary key (fid, the feature id) among the properties too.
            other = _features(theirs.json(), {"fid"})
            assert mine, table
            assert sorted(mine) == sorted(other), table
            for fid, (geometry, properties) in mine.items():
                assert properties == other[fid][1], (table, fid)
                # Same vertices; each server prints coordinates with its own precision.
                assert geometry.geom_type == other[fid][0].geom_type, (table, fid)
                assert geometry.equals_exact(other[fid][0], 1e-7), (table, fid)


def test_the_reader_cannot_read_an_ouo_table(deployment: Deployment) -> None:
    hidden = sorted(
        set(_geoetl_tables(deployment, "restricted")) - set(_geoetl_tables(deployment, "public"))
    )
    assert hidden == ["geo.lux_polygons"]
    as_reader = deployment.base("tipg", "reader")
    answer = httpx.get(f"{as_reader}/collections/{hidden[0]}/items", timeout=30)
    assert answer.status_code == 404
    as_postgres = deployment.base("tipg")
    assert httpx.get(f"{as_postgres}/collections/{hidden[0]}/items", timeout=30).status_code == 200
