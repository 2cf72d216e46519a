"""What a caller may see: hidden things answer 404 everywhere and leave no trace in lists.

On the ``pub`` deployment (audience public) nothing above public is visible to anyone,
an admin token included; on the ``ouo`` deployment anonymous callers read public data
only, and a token sees up to its clearance, capped at ouo. Hidden items, collections,
features, tiles and jobs answer 404 by id (also by job id prefix), are left out of
lists, searches and counts, and do not widen extents.

Every probe here runs on both harness backends: SQLite (the embedded catalog, feature
tables and jobs) and PostgreSQL (the pgSTAC catalog, PostGIS feature tables, jobs).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.security.conftest import (
    BACKENDS,
    Api,
    Harness,
    Seed,
    assert_alive,
    item_row,
    raster_bytes,
)

pytestmark = pytest.mark.parametrize("harness", BACKENDS, indirect=True)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The WebMercatorQuad tile (x, y) holding a point."""
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def raster_urls(seed: Seed) -> dict[str, str]:
    """Every raster and STAC route of a seeded raster item."""
    base = f"/raster/collections/{seed.collection}/items/{seed.item}"
    lon, lat = CENTRES[seed.name]
    x, y = tile_of(lon, lat, 8)
    return {
        "stac-item": f"/stac/collections/{seed.collection}/items/{seed.item}",
        "info": f"{base}/info",
        "tilejson": f"{base}/WebMercatorQuad/tilejson.json",
        "tile": f"{base}/tiles/WebMercatorQuad/8/{x}/{y}.png",
        "preview": f"{base}/preview.png",
        "statistics": f"{base}/statistics",
        "point": f"{base}/point/{lon},{lat}",
        "map": f"{base}/WebMercatorQuad/map.html",
    }


def stac_urls(h: Harness, seed: Seed) -> list[str]:
    """The STAC item of a seed and each of its assets (served by geoetl)."""
    row = item_row(h, seed.collection, seed.item)
    assert row is not None, f"no STAC item {seed.collection}/{seed.item}"
    item = f"/stac/collections/{seed.collection}/items/{seed.item}"
    return [item, *(f"{item}/assets/{key}" for key in json.loads(row[1]).get("assets", {}))]


def job_urls(seed: Seed) -> dict[str, str]:
    return {
        "job": f"/jobs/{seed.job_id}",
        "tasks": f"/jobs/{seed.job_id}/tasks",
        "events": f"/jobs/{seed.job_id}/events",
    }


CENTRES = {
    "elev_public": (6.1, 49.8),
    "lc_ouo": (-66.2, 18.2),
    "olinda_restricted": (-34.87, -7.99),
    "elev_ouo_only": (6.1, 49.8),
}

HIDDEN_ON_PUB = ["lc_ouo", "olinda_restricted", "elev_ouo_only"]


def hidden_urls(h: Harness, seeds: list[str]) -> list[str]:
    urls: list[str] = []
    for name in seeds:
        seed = h.seeds[name]
        urls += raster_urls(seed).values()
        urls += job_urls(seed).values()
        urls += stac_urls(h, seed)
    return urls


def feature_urls(dataset: str) -> list[str]:
    return [
        f"/collections/{dataset}",
        f"/collections/{dataset}/items",
        f"/collections/{dataset}/items/1",
        f"/collections/{dataset}/queryables",
        f"/collections/{dataset}/items?f=html",
    ]


COLLECTION_URLS = [
    "/stac/collections/sec-ouo-only",
    "/stac/collections/sec-ouo-only/items",
    "/stac/collections/sec-ouo-only/queryables",
]


def all_hidden_on_pub(h: Harness) -> list[str]:
    return (
        hidden_urls(h, HIDDEN_ON_PUB)
        + feature_urls("lux_ouo")
        + list(job_urls(h.seeds["lux_ouo"]).values())
        + stac_urls(h, h.seeds["lux_ouo"])
        + COLLECTION_URLS
    )


def assert_404(api: Api, url: str) -> None:
    response = api.get(url)
    assert response.status_code == 404, f"{url}: {response.status_code} {response.text[:300]}"


def test_hidden_seeds_exist(harness: Harness) -> None:
    # The 404s below mean something only because these are really there.
    for name in HIDDEN_ON_PUB:
        seed = harness.seeds[name]
        row = item_row(harness, seed.collection, seed.item)
        assert row is not None, name
        assert row[0] == seed.level


def test_the_harness_keeps_its_data_on_its_backend(harness: Harness) -> None:
    # On PostgreSQL the catalog is pgSTAC, the feature tables PostGIS and the jobs there
    # too: nothing falls back to a SQLite file in the home.
    if harness.backend == "sqlite":
        assert (harness.home / "geoetl.db").is_file()
        return
    assert harness.database_url is not None
    assert not list(harness.home.rglob("*.db")), list(harness.home.rglob("*.db"))
    lux = harness.seeds["lux_ouo"]
    with psycopg.connect(harness.database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' "
            "AND split_part(obj_description(c.oid, 'pg_class'), E'\\n', 1) = %s",
            (harness.settings["ouo"].postgis_schema, f"geoetl dataset {lux.item}"),
        ).fetchone()
        jobs = conn.execute(
            "SELECT access_level FROM jobs WHERE job_id = %s", (lux.job_id,)
        ).fetchone()
        items = conn.execute(
            "SELECT count(*) FROM pgstac.items WHERE collection = 'sec-mixed'"
        ).fetchone()
    assert tables is not None
    assert tables[0] >= 1, "no PostGIS table for lux_ouo"
    assert jobs == ("ouo",), jobs
    assert items == (3,), items


def test_everything_hidden_answers_404_on_the_public_deployment_anonymously(
    harness: Harness,
) -> None:
    api = harness.api("pub")
    for url in all_hidden_on_pub(harness):
        assert_404(api, url)
    assert_alive(harness.pub)


@pytest.mark.parametrize("who", ["sec-admin", "sec-pub-ouo", "sec-reader"])
def test_everything_hidden_answers_404_on_the_public_deployment_whatever_the_token(
    harness: Harness, tokens: dict[str, str], who: str
) -> None:
    api = harness.api("pub", tokens[who])
    for url in all_hidden_on_pub(harness):
        assert_404(api, url)
    assert_alive(harness.pub)


def test_the_same_urls_answer_for_a_cleared_caller(
    harness: Harness, tokens: dict[str, str]
) -> None:
    # Control: on the ouo deployment an ouo-cleared token sees the ouo data at these URLs.
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    urls = hidden_urls(harness, ["lc_ouo", "elev_ouo_only"]) + feature_urls("lux_ouo")
    urls += list(job_urls(harness.seeds["lux_ouo"]).values()) + COLLECTION_URLS
    urls += stac_urls(harness, harness.seeds["lux_ouo"])
    for url in urls:
        response = api.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"


def test_anonymous_callers_read_public_data_only_on_the_ouo_deployment(
    harness: Harness,
) -> None:
    api = harness.api("ouo")
    for url in all_hidden_on_pub(harness):
        assert_404(api, url)
    for url in raster_urls(harness.seeds["elev_public"]).values():
        response = api.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
    assert_alive(harness.ouo)


@pytest.mark.parametrize("who", ["sec-reader", "sec-admin"])
def test_clearance_is_capped_by_the_deployment(
    harness: Harness, tokens: dict[str, str], who: str
) -> None:
    # Restricted clearance on an ouo deployment: ouo visible, restricted not.
    api = harness.api("ouo", tokens[who])
    for url in hidden_urls(harness, ["olinda_restricted"]):
        assert_404(api, url)
    assert api.get(raster_urls(harness.seeds["lc_ouo"])["stac-item"]).status_code == 200
    assert_alive(harness.ouo)


def test_a_public_token_sees_no_ouo_data_on_the_ouo_deployment(
    harness: Harness, tokens: dict[str, str]
) -> None:
    api = harness.api("ouo", tokens["sec-pub-public"])
    for url in hidden_urls(harness, ["lc_ouo", "elev_ouo_only"]) + feature_urls("lux_ouo"):
        assert_404(api, url)


def test_a_job_publishing_ouo_data_over_the_api_is_hidden_from_the_public_deployment(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    owner = harness.api("ouo", tokens["sec-pub-ouo"])
    response = owner.upload(
        "secret.tif", raster_bytes(tmp_path), collection_id="sec-api-ouo", access_level="ouo"
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    view = owner.wait(job_id)
    assert view["status"] == "succeeded", view["error"]
    item = view["result"]["item_id"]
    for token in (None, tokens["sec-admin"], tokens["sec-pub-ouo"]):
        api = harness.api("pub", token)
        for url in (
            f"/jobs/{job_id}",
            f"/jobs/{job_id}/events",
            f"/stac/collections/sec-api-ouo/items/{item}",
            f"/raster/collections/sec-api-ouo/items/{item}/info",
        ):
            assert_404(api, url)
        listed = api.get("/jobs", params={"limit": 1000})
        assert job_id not in listed.text


# -- lists, counts, extents -------------------------------------------------------------


def hidden_markers(h: Harness, names: list[str]) -> list[str]:
    """Strings that only a hidden seed has: its ids, job id, and file hash."""
    public_sources = {s.source for s in h.seeds.values() if s.level == "public"}
    out = []
    for name in names:
        seed = h.seeds[name]
        out += [seed.item, seed.job_id, seed.job_id[:16]]
        if seed.source not in public_sources:
            out.append(seed.source.split("/")[1])
    return out


LIST_URLS = [
    "/stac",
    "/stac/collections",
    "/stac/search?limit=1000",
    "/stac/search?collections=sec-mixed&limit=1000",
    "/stac/search?filter=geoetl:access_level%20%3C%3E%20%27public%27",
    "/stac/collections/sec-mixed/items?limit=1000",
    "/stac/queryables",
    "/collections",
    "/collections?f=html",
    "/jobs?limit=1000",
    "/jobs?workflow=process_raster&limit=1000",
    "/jobs?workflow=process_vector&limit=1000",
    "/jobs?status=succeeded&limit=1000",
    "/health",
]


@pytest.mark.parametrize("who", [None, "sec-admin"])
def test_lists_on_the_public_deployment_carry_no_trace_of_hidden_things(
    harness: Harness, request: pytest.FixtureRequest, who: str | None
) -> None:
    token = request.getfixturevalue("tokens")[who] if who else None
    api = harness.api("pub", token)
    markers = [*hidden_markers(harness, [*HIDDEN_ON_PUB, "lux_ouo"]), "sec-ouo-only", "lux_ouo"]
    for url in LIST_URLS:
        response = api.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
        leaked = [m for m in markers if m in response.text]
        assert not leaked, f"{url} shows hidden {leaked}"
    # Asking for them by name (which the answer may echo) finds nothing.
    hidden_ids = [harness.seeds[n].item for n in HIDDEN_ON_PUB]
    for response in (
        api.get("/stac/search", params={"ids": ",".join(hidden_ids)}),
        api.get("/stac/search", params={"collections": "sec-ouo-only"}),
        api.post(
            "/stac/search",
            json={"filter": {"op": "=", "args": [{"property": "id"}, "lc-ouo"]}, "limit": 100},
        ),
        api.post("/stac/search", json={"ids": hidden_ids, "collections": ["sec-mixed"]}),
    ):
        assert response.status_code in (200, 404), response.text
        if response.status_code == 200:
            assert response.json()["features"] == [], response.request.url
            assert response.json().get("numberMatched", 0) == 0
    assert_alive(harness.pub)


@pytest.mark.parametrize("deployment", ["pub", "ouo"])
def test_counts_include_only_visible_items(harness: Harness, deployment: str) -> None:
    api = harness.api(deployment)  # anonymous: public only on both
    items = api.get("/stac/collections/sec-mixed/items", params={"limit": 100}).json()
    assert [f["id"] for f in items["features"]] == ["elev-public"]
    if "numberMatched" in items:
        assert items["numberMatched"] == 1
    search = api.get("/stac/search", params={"collections": "sec-mixed", "limit": 100}).json()
    assert [f["id"] for f in search["features"]] == ["elev-public"]
    if "numberMatched" in search:
        assert search["numberMatched"] == 1
    collections = api.get("/stac/collections").json()
    ids = {c["id"] for c in collections["collections"]}
    assert "sec-mixed" in ids
    assert "sec-ouo-only" not in ids
    assert collections.get("numberMatched", len(ids)) == len(collections["collections"])
    features = {c["id"] for c in api.get("/collections").json()["collections"]}
    assert {"nc_public", "xss_public"} <= features
    assert "lux_ouo" not in features
    jobs = api.get("/jobs", params={"limit": 1000}).json()
    assert jobs["total"] == len(jobs["items"])
    assert {j["access_level"] for j in jobs["items"]} <= {"public"}
    assert_alive(harness.urls[deployment])


def _bbox(doc: dict[str, Any]) -> list[float]:
    bbox: list[float] = doc["extent"]["spatial"]["bbox"][0]
    return bbox


@pytest.mark.parametrize("deployment", ["pub", "ouo"])
def test_extents_cover_only_visible_items(harness: Harness, deployment: str) -> None:
    # sec-mixed holds Luxembourg (public), Puerto Rico (ouo) and Brazil (restricted).
    api = harness.api(deployment)
    one = api.get("/stac/collections/sec-mixed").json()
    listed = next(
        c for c in api.get("/stac/collections").json()["collections"] if c["id"] == "sec-mixed"
    )
    for doc in (one, listed):
        minx, miny, maxx, maxy = _bbox(doc)
        assert 5 < minx < maxx < 7, doc["extent"]
        assert 49 < miny < maxy < 51, doc["extent"]


def test_extents_widen_for_a_cleared_caller(harness: Harness, tokens: dict[str, str]) -> None:
    # Control: an ouo token on the ouo deployment sees Puerto Rico too, not Brazil.
    doc = harness.api("ouo", tokens["sec-pub-ouo"]).get("/stac/collections/sec-mixed").json()
    minx, _, maxx, _ = _bbox(doc)
    assert minx < -60, doc["extent"]
    assert maxx > 5, doc["extent"]
    items = harness.api("ouo", tokens["sec-pub-ouo"]).get("/stac/collections/sec-mixed/items")
    assert {f["id"] for f in items.json()["features"]} == {"elev-public", "lc-ouo"}
