"""OGC API - Features served by ``geoetl serve``, read by GDAL's OAPIF driver and httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyogrio
import pytest

from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_runner
from tests.conftest import serving
from tests.frames import to_frame

DATA = Path(__file__).parents[2] / "examples" / "data"
SAMPLES = {"nc.gpkg": "nc", "lux.shp": "lux", "naturalearth_lowres.shp": "naturalearth_lowres"}


@pytest.fixture
def served(settings: Settings, platform: Platform, tmp_path: Path) -> Iterator[str]:
    runner = make_runner(platform, "loader")
    for name in SAMPLES:
        path = DATA / name
        if path.suffix == ".shp":
            sidecars = [p for p in DATA.glob(f"{path.stem}.*") if p != path]
            key = platform.objects.put_file_set(path, sidecars)
        else:
            key = platform.objects.put_content_addressed(path)[0]
        job_id, _ = platform.store.submit("process_vector", {"source": key})
        assert runner.run_job(job_id) == JobStatus.succeeded
    runner.close()
    with serving(settings, tmp_path / "serve.log", "--workers", "0") as base:
        yield base


def test_gdal_oapif_reads_every_collection_back(served: str, platform: Platform) -> None:
    for name, collection in SAMPLES.items():
        remote = pyogrio.read_dataframe(f"OAPIF:{served}/collections/{collection}")
        fc = platform.feature_registry.get(collection)
        local = to_frame(platform.features.read(fc.dataset_id, fc.table_name))
        assert len(remote) == len(local) == fc.feature_count, name
        column = "name" if "name" in local.columns else local.columns[0]
        assert sorted(remote[column].astype(str)) == sorted(local[column].astype(str))
        assert remote.crs.to_epsg() == 4326


def test_items_paging_bbox_and_filters(served: str) -> None:
    landing = httpx.get(f"{served}/").json()
    assert {link["rel"] for link in landing["links"]} >= {"conformance", "data", "service-desc"}
    conformance = httpx.get(f"{served}/conformance").json()["conformsTo"]
    assert any(c.endswith("/conf/core") for c in conformance)
    ids = {c["id"] for c in httpx.get(f"{served}/collections").json()["collections"]}
    assert ids == set(SAMPLES.values())

    page = httpx.get(f"{served}/collections/nc/items", params={"limit": 30})
    assert page.headers["content-type"].startswith("application/geo+json")
    body = page.json()
    assert (body["numberMatched"], body["numberReturned"]) == (100, 30)
    seen = [f["id"] for f in body["features"]]
    while nxt := next((link["href"] for link in body["links"] if link["rel"] == "next"), None):
        body = httpx.get(nxt).json()
        seen += [f["id"] for f in body["features"]]
    assert len(seen) == len(set(seen)) == 100

    box = httpx.get(
        f"{served}/collections/lux/items", params={"bbox": "6.0,49.7,6.2,49.9", "limit": 100}
    ).json()
    assert 0 < box["numberMatched"] < 12
    one = httpx.get(f"{served}/collections/nc/items", params={"name": "Ashe"}).json()
    assert one["numberMatched"] == 1
    assert one["features"][0]["properties"]["name"] == "Ashe"
    fid = one["features"][0]["id"]
    single = httpx.get(f"{served}/collections/nc/items/{fid}").json()
    assert single["properties"]["name"] == "Ashe"
    narrow = httpx.get(
        f"{served}/collections/nc/items", params={"properties": "name", "limit": 1}
    ).json()
    assert set(narrow["features"][0]["properties"]) == {"name"}


def test_errors_are_json(served: str) -> None:
    missing = httpx.get(f"{served}/collections/nope/items")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    bad = httpx.get(f"{served}/collections/nc/items", params={"bbox": "1,2,3"})
    assert bad.status_code == 400
    assert "bbox" in bad.json()["detail"]
    assert httpx.get(f"{served}/collections/nc/items/999999").status_code == 404
    queryables = httpx.get(f"{served}/collections/nc/queryables").json()
    assert queryables["properties"]["name"]["type"] == "string"


def _names(served: str, **params: str) -> set[str]:
    response = httpx.get(f"{served}/collections/nc/items", params={**params, "limit": "1000"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["numberMatched"] == body["numberReturned"]
    return {f["properties"]["name"] for f in body["features"]}


def test_cql2_filters_match_geopandas(served: str) -> None:
    nc = pyogrio.read_dataframe(DATA / "nc.gpkg")
    text = _names(served, filter="name LIKE 'A%' AND bir74 > 1000")
    assert text == set(nc[nc["NAME"].str.startswith("A") & (nc["BIR74"] > 1000)]["NAME"])
    cql_json = json.dumps(
        {
            "op": "and",
            "args": [
                {"op": ">=", "args": [{"property": "sid74"}, 5]},
                {"op": "in", "args": [{"property": "name"}, ["Wake", "Durham", "Ashe"]]},
            ],
        }
    )
    assert _names(served, **{"filter": cql_json, "filter-lang": "cql2-json"}) == set(
        nc[(nc["SID74"] >= 5) & nc["NAME"].isin(["Wake", "Durham", "Ashe"])]["NAME"]
    )
    between = _names(served, filter="NOT (bir74 BETWEEN 1000 AND 5000)")
    assert between == set(nc[~nc["BIR74"].between(1000, 5000)]["NAME"])
    wake = _names(served, filter="S_CONTAINS(geometry, POINT(-78.64 35.78))")
    assert wake == {"Wake"}
    hostile = {"op": "=", "args": [{"property": "name"}, "x' OR '1'='1"]}
    assert _names(served, **{"filter": json.dumps(hostile), "filter-lang": "cql2-json"}) == set()


def test_bad_filters_are_400(served: str) -> None:
    for params in (
        {"filter": "nosuch = 1"},
        {"filter": "name = "},
        {"filter": "S_INTERSECTS(name, POINT(1 2))"},
        {"filter": "name = 'a'", "filter-lang": "sql"},
    ):
        response = httpx.get(f"{served}/collections/nc/items", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["detail"]


def test_sortby_and_datetime(served: str, platform: Platform, tmp_path: Path) -> None:
    asc = httpx.get(f"{served}/collections/nc/items", params={"sortby": "name", "limit": 5})
    desc = httpx.get(f"{served}/collections/nc/items", params={"sortby": "-bir74", "limit": 3})
    names = [f["properties"]["name"] for f in asc.json()["features"]]
    assert names == sorted(names)
    births = [f["properties"]["bir74"] for f in desc.json()["features"]]
    nc = pyogrio.read_dataframe(DATA / "nc.gpkg")
    assert births == sorted(nc["BIR74"], reverse=True)[:3]
    bad = httpx.get(f"{served}/collections/nc/items", params={"sortby": "nosuch"})
    assert bad.status_code == 400
    no_time = httpx.get(f"{served}/collections/nc/items", params={"datetime": "2020-01-01/.."})
    assert no_time.status_code == 400
    assert "no temporal property" in no_time.json()["detail"]


def test_html_pages_render_with_a_map(served: str) -> None:
    for path in ("/", "/conformance", "/collections", "/collections/nc", "/collections/nc/items"):
        response = httpx.get(f"{served}{path}", params={"f": "html"})
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1>" in response.text
    items = httpx.get(f"{served}/collections/nc/items", headers={"accept": "text/html"})
    assert 'id="map"' in items.text
    assert "Ashe" in items.text
    one = httpx.get(f"{served}/collections/nc/items/1", params={"f": "html"})
    assert 'id="map"' in one.text
    # JSON stays the default for clients that do not ask for HTML.
    assert (
        httpx.get(f"{served}/collections/nc/items")
        .headers["content-type"]
        .startswith("application/geo+json")
    )
