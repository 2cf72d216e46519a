"""stac-fastapi-pgstac answers the same searches as geoetl's STAC API, on the same pgSTAC."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from geoetl.api.app import create_app
from tests.eoapi.conftest import Deployment

pytestmark = pytest.mark.postgres


def _geoetl(deployment: Deployment, clearance: str) -> TestClient:
    settings = deployment.settings.model_copy(
        update={"anonymous_clearance": clearance, "audience": "restricted"}
    )
    return TestClient(create_app(settings))


def _key(feature: dict[str, Any]) -> tuple[Any, ...]:
    """What both APIs must agree on for an item (links and asset hrefs are per server)."""
    return (
        feature["collection"],
        feature["id"],
        [round(c, 9) for c in feature["bbox"]],
        feature["geometry"],
        feature["properties"],
    )


def _search_both(
    deployment: Deployment, who: str, body: dict[str, Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    clearance = "public" if who == "reader" else "restricted"
    with _geoetl(deployment, clearance) as client:
        ours = client.post("/stac/search", json={"limit": 100, **body})
    theirs = httpx.post(
        deployment.base("stac", who) + "/search", json={"limit": 100, **body}, timeout=30
    )
    assert ours.status_code == 200, ours.text
    assert theirs.status_code == 200, theirs.text
    return (
        sorted(_key(f) for f in ours.json()["features"]),
        sorted(_key(f) for f in theirs.json()["features"]),
    )


def _datetimes(deployment: Deployment) -> list[str]:
    with _geoetl(deployment, "restricted") as client:
        found = client.post("/stac/search", json={"limit": 100}).json()["features"]
    return sorted(f["properties"]["datetime"] for f in found)


@pytest.mark.parametrize("who", ["postgres", "reader"])
def test_the_same_items_for_the_same_searches(deployment: Deployment, who: str) -> None:
    times = _datetimes(deployment)
    searches: dict[str, dict[str, Any]] = {
        "all": {},
        "bbox": {"bbox": [-85.0, 33.0, -75.0, 37.0]},  # North Carolina: nc and no raster
        "datetime": {"datetime": f"{times[1]}/.."},  # all but the oldest
        "filter": {
            "filter-lang": "cql2-json",
            "filter": {"op": "=", "args": [{"property": "geoetl:access_level"}, "public"]},
        },
        "collection": {"collections": ["rasters-pub", "vectors-pub"]},
    }
    counts = {}
    for name, body in searches.items():
        ours, theirs = _search_both(deployment, who, body)
        assert ours == theirs, name
        counts[name] = len(ours)
    if who == "postgres":
        # 2 rasters and 3 vector datasets; the searches really narrow it down.
        assert counts == {"all": 5, "bbox": 1, "datetime": 4, "filter": 3, "collection": 3}
    else:  # only public items: elev, nc, buildings
        assert counts["all"] == counts["filter"] == counts["collection"] == 3


@pytest.mark.parametrize("who", ["postgres", "reader"])
def test_the_same_collections(deployment: Deployment, who: str) -> None:
    clearance = "public" if who == "reader" else "restricted"
    with _geoetl(deployment, clearance) as client:
        ours = sorted(c["id"] for c in client.get("/stac/collections").json()["collections"])
    answer = httpx.get(deployment.base("stac", who) + "/collections", timeout=30).json()
    theirs = sorted(c["id"] for c in answer["collections"])
    assert ours == theirs
    hidden = {"rasters-ouo", "vectors-ouo"}
    assert (hidden <= set(theirs)) == (who == "postgres")


def test_the_reader_sees_only_public_items(deployment: Deployment) -> None:
    stac = deployment.base("stac", "reader")
    found = httpx.post(stac + "/search", json={"limit": 100}, timeout=30).json()["features"]
    assert {f["properties"]["geoetl:access_level"] for f in found} == {"public"}
    assert sorted(f["id"] for f in found) == ["buildings", "elev", "nc"]
    assert httpx.get(stac + "/collections/rasters-ouo/items/lc", timeout=30).status_code == 404
    assert httpx.get(stac + "/collections/rasters-ouo", timeout=30).status_code == 404
    everything = httpx.post(
        deployment.base("stac") + "/search", json={"limit": 100}, timeout=30
    ).json()["features"]
    assert sorted(f["id"] for f in everything) == ["buildings", "elev", "lc", "lux", "nc"]
