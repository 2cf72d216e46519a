"""The STAC API: search answers equal the same selection done in Python over the items.

A deterministic set of items (footprints over the globe, a datetime each, a numeric and
a string property, three collections, some items official-use-only) is written into the
catalog; every search is paged to the end through its ``next`` links and compared with
the items a plain Python predicate selects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import box, mapping, shape

from geoetl.api.app import create_app
from geoetl.settings import Settings

COLLECTIONS = {"coast": "public", "inland": "public", "internal": "ouo"}
PLATFORMS = ("alpha", "beta", "gamma")
START = datetime(2020, 1, 1, tzinfo=UTC)


def _item(i: int) -> tuple[dict[str, Any], str]:
    collection = list(COLLECTIONS)[i % 3]
    x, y = -170 + (i * 37) % 330, -80 + (i * 23) % 150
    when = START + timedelta(days=11 * i, hours=i % 24)
    level = COLLECTIONS[collection] if i % 5 else "ouo"
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": f"item-{i:03d}",
        "collection": collection,
        "geometry": mapping(box(x, y, x + 4, y + 3)),
        "bbox": [x, y, x + 4, y + 3],
        "properties": {
            "datetime": when.isoformat().replace("+00:00", "Z"),
            "cloud": (i * 7) % 100,
            "platform": PLATFORMS[i % 3],
            "geoetl:access_level": level,
        },
        "assets": {},
        "links": [],
    }
    return item, level


ITEMS = [_item(i) for i in range(60)]


def _when(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))


def _load(client: TestClient) -> None:
    catalog = client.app.state.platform.catalog  # type: ignore[attr-defined]
    for cid, level in COLLECTIONS.items():
        catalog.ensure_collection(cid, level)
    for item, level in ITEMS:
        catalog.upsert_item(item, level)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    internal = {"audience": "ouo", "anonymous_clearance": "ouo"}
    with TestClient(create_app(settings.model_copy(update=internal))) as c:
        _load(c)
        yield c


@pytest.fixture
def public_client(settings: Settings) -> Iterator[TestClient]:
    public = {"audience": "public", "anonymous_clearance": "ouo"}
    with TestClient(create_app(settings.model_copy(update=public))) as c:
        _load(c)
        yield c


def _pages(client: TestClient, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every page of a search, following next links (GET hrefs or POST bodies)."""
    pages = []
    response = client.request(method, path, **kwargs)
    while True:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/geo+json")
        page = response.json()
        pages.append(page)
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            return pages
        assert len(pages) < 50, "paging does not end"
        if nxt[0].get("method") == "POST":
            response = client.post(nxt[0]["href"], json=nxt[0]["body"])
        else:
            response = client.get(nxt[0]["href"])


def _ids(pages: list[dict[str, Any]]) -> list[str]:
    return [f["id"] for page in pages for f in page["features"]]


def _expected(keep: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {item["id"] for item, level in ITEMS if level in ("public", "ouo") and keep(item)}


AREA = shapely.Polygon([(-20, -10), (40, -10), (40, 50), (-20, 50)])
TRIANGLE = shapely.Polygon([(0, 0), (90, 0), (0, 60)])
CASES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "bbox": (
        {"bbox": "-20,-10,40,50"},
        lambda i: shape(i["geometry"]).intersects(AREA),
    ),
    "datetime closed interval": (
        {"datetime": "2020-06-01T00:00:00Z/2021-01-01T00:00:00Z"},
        lambda i: datetime(2020, 6, 1, tzinfo=UTC) <= _when(i) <= datetime(2021, 1, 1, tzinfo=UTC),
    ),
    "datetime open start": (
        {"datetime": "../2020-04-01T00:00:00+02:00"},
        lambda i: _when(i) <= datetime(2020, 3, 31, 22, tzinfo=UTC),
    ),
    "datetime open end": (
        {"datetime": "2021-05-01T00:00:00Z/"},
        lambda i: _when(i) >= datetime(2021, 5, 1, tzinfo=UTC),
    ),
    "collections": ({"collections": "inland,internal"}, lambda i: i["collection"] != "coast"),
    "ids": (
        {"ids": "item-001,item-004,item-010,item-999"},
        lambda i: i["id"] in ("item-001", "item-004", "item-010"),
    ),
    "cql2-text comparison": (
        {"filter": "cloud < 30 AND platform = 'beta'", "filter-lang": "cql2-text"},
        lambda i: i["properties"]["cloud"] < 30 and i["properties"]["platform"] == "beta",
    ),
    "cql2-text like, between, in": (
        {
            "filter": "platform LIKE 'g%' OR cloud BETWEEN 40 AND 45 OR id IN ('item-002')",
        },
        lambda i: (
            i["properties"]["platform"].startswith("g")
            or 40 <= i["properties"]["cloud"] <= 45
            or i["id"] == "item-002"
        ),
    ),
    "cql2-json with datetime and not": (
        {
            "filter": json.dumps(
                {
                    "op": "and",
                    "args": [
                        {
                            "op": ">=",
                            "args": [
                                {"property": "datetime"},
                                {"timestamp": "2021-01-01T00:00:00Z"},
                            ],
                        },
                        {
                            "op": "not",
                            "args": [{"op": "=", "args": [{"property": "collection"}, "coast"]}],
                        },
                    ],
                }
            ),
            "filter-lang": "cql2-json",
        },
        lambda i: _when(i) >= datetime(2021, 1, 1, tzinfo=UTC) and i["collection"] != "coast",
    ),
    "cql2 s_intersects": (
        {"filter": "S_INTERSECTS(geometry, POLYGON((0 0, 90 0, 0 60, 0 0)))"},
        lambda i: shape(i["geometry"]).intersects(TRIANGLE),
    ),
    # Bbox literals as pygeofilter really hands them (Envelope from CQL2-JSON, a BBOX
    # function from CQL2 text): an asymmetric box, so a swapped axis selects elsewhere.
    "cql2-json bbox literal": (
        {
            "filter": json.dumps(
                {
                    "op": "s_intersects",
                    "args": [{"property": "geometry"}, {"bbox": [-20, -10, 40, 50]}],
                }
            ),
            "filter-lang": "cql2-json",
        },
        lambda i: shape(i["geometry"]).intersects(AREA),
    ),
    "cql2-text BBOX": (
        {"filter": "S_INTERSECTS(geometry, BBOX(-20, -10, 40, 50))"},
        lambda i: shape(i["geometry"]).intersects(AREA),
    ),
    "cql2-json s_within bbox": (
        {
            "filter": json.dumps(
                {"op": "s_within", "args": [{"property": "geometry"}, {"bbox": [-20, -10, 40, 50]}]}
            ),
            "filter-lang": "cql2-json",
        },
        lambda i: shape(i["geometry"]).within(AREA),
    ),
    "intersects": (
        {"intersects": json.dumps(mapping(TRIANGLE))},
        lambda i: shape(i["geometry"]).intersects(TRIANGLE),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_search_get_pages_to_exactly_the_expected_items(client: TestClient, case: str) -> None:
    params, keep = CASES[case]
    pages = _pages(client, "GET", "/stac/search", params={**params, "limit": 7})
    ids = _ids(pages)
    expected = _expected(keep)
    assert expected, "the case must select something"
    assert len(ids) == len(set(ids)), "an item appeared on two pages"
    assert set(ids) == expected
    # The count is given once it is known without counting: on the last page.
    assert pages[-1]["numberMatched"] == len(expected)
    assert all("numberMatched" not in p for p in pages[:-1])
    assert sum(p["numberReturned"] for p in pages) == len(expected)


@pytest.mark.parametrize("case", ["bbox", "cql2-text comparison", "intersects", "collections"])
def test_search_post_matches_get(client: TestClient, case: str) -> None:
    params, keep = CASES[case]
    body: dict[str, Any] = {"limit": 5}
    if "bbox" in params:
        body["bbox"] = [float(v) for v in params["bbox"].split(",")]
    if "intersects" in params:
        body["intersects"] = json.loads(params["intersects"])
    if "collections" in params:
        body["collections"] = params["collections"].split(",")
    if "filter" in params:
        body["filter"] = params["filter"]
        body["filter-lang"] = "cql2-text"
    ids = _ids(_pages(client, "POST", "/stac/search", json=body))
    assert sorted(ids) == sorted(_expected(keep))


def test_items_of_a_collection_page_with_filters(client: TestClient) -> None:
    pages = _pages(
        client,
        "GET",
        "/stac/collections/coast/items",
        params={"limit": 3, "filter": "cloud >= 50", "datetime": "2020-01-01T00:00:00Z/.."},
    )
    expected = _expected(lambda i: i["collection"] == "coast" and i["properties"]["cloud"] >= 50)
    assert sorted(_ids(pages)) == sorted(expected)
    one = client.get(f"/stac/collections/coast/items/{sorted(expected)[0]}")
    assert one.status_code == 200
    assert one.json()["id"] == sorted(expected)[0]
    assert client.get("/stac/collections/coast/items/item-001").status_code == 404  # inland


def test_sortby_orders_results(client: TestClient) -> None:
    r = client.get("/stac/search", params={"sortby": "-cloud,+id", "limit": 100})
    got = [(f["properties"]["cloud"], f["id"]) for f in r.json()["features"]]
    assert got == sorted(got, key=lambda t: (-t[0], t[1]))
    assert len(got) == len(_expected(lambda i: True))
    body = {"sortby": [{"field": "properties.datetime", "direction": "asc"}], "limit": 100}
    dates = [
        f["properties"]["datetime"]
        for f in client.post("/stac/search", json=body).json()["features"]
    ]
    assert dates == sorted(dates)
    default = [
        f["properties"]["datetime"] for f in client.get("/stac/search?limit=100").json()["features"]
    ]
    assert default == sorted(default, reverse=True)


def test_fields_include_and_exclude(client: TestClient) -> None:
    only = client.get("/stac/search", params={"fields": "properties.cloud", "limit": 1}).json()
    feature = only["features"][0]
    assert set(feature) == {"type", "stac_version", "id", "collection", "properties"}
    assert set(feature["properties"]) == {"cloud"}
    without = client.post(
        "/stac/search",
        json={"fields": {"exclude": ["geometry", "properties.platform"]}, "limit": 1},
    ).json()["features"][0]
    assert "geometry" not in without
    assert "platform" not in without["properties"]
    assert "cloud" in without["properties"]
    assert "assets" in without
    default = client.get("/stac/search", params={"fields": "", "limit": 1}).json()["features"][0]
    assert set(default["properties"]) == {"datetime"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"datetime": "2020-01-01"}, "RFC 3339"),
        ({"datetime": "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z"}, "ends before it starts"),
        ({"datetime": "../.."}, "at least one end"),
        ({"bbox": "1,2,3"}, "bbox"),
        (
            {"bbox": "0,0,1,1", "intersects": json.dumps({"type": "Point", "coordinates": [0, 0]})},
            "not both",
        ),
        ({"limit": "-1"}, "limit"),
        ({"filter": "cloud <<< 3"}, "not valid cql2-text"),
        ({"filter": "cloud; DROP TABLE stac_items"}, "not valid cql2-text"),
        ({"filter": '"bad name" = 1'}, "not a property name"),
        ({"sortby": "bad name"}, "not a property name"),
        ({"token": "not-a-token"}, "page token"),
        ({"filter-lang": "sql"}, "filter-lang"),
    ],
)
def test_bad_search_parameters_are_400_with_a_reason(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    r = client.get("/stac/search", params=params)
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"]
    assert client.get("/stac/search").status_code == 200  # the service keeps answering


def test_limit_above_the_maximum_is_clamped(client: TestClient) -> None:
    r = client.get("/stac/search", params={"limit": 1_000_000})
    assert r.status_code == 200
    assert r.json()["numberReturned"] == len(_expected(lambda i: True))


def test_public_audience_never_sees_official_use_only(public_client: TestClient) -> None:
    public = {item["id"] for item, level in ITEMS if level == "public"}
    hidden = {item["id"] for item, level in ITEMS if level != "public"}
    pages = _pages(public_client, "GET", "/stac/search", params={"limit": 9})
    assert set(_ids(pages)) == public
    assert pages[-1]["numberMatched"] == len(public)
    # Asking for hidden things by id or collection reveals nothing, not even a count.
    r = public_client.get("/stac/search", params={"ids": ",".join(sorted(hidden))})
    assert r.json()["features"] == []
    assert r.json()["numberMatched"] == 0
    r = public_client.post("/stac/search", json={"collections": ["internal"]})
    assert r.json()["numberMatched"] == 0
    assert public_client.get("/stac/collections/internal").status_code == 404
    assert public_client.get("/stac/collections/internal/items").status_code == 404
    assert public_client.get("/stac/collections/internal/queryables").status_code == 404
    some_hidden = next(
        item for item, level in ITEMS if level == "ouo" and item["collection"] == "coast"
    )
    r = public_client.get(f"/stac/collections/coast/items/{some_hidden['id']}")
    assert r.status_code == 404
    listed = {c["id"] for c in public_client.get("/stac/collections").json()["collections"]}
    assert "internal" not in listed
    assert {"coast", "inland"} <= listed
    children = [
        link["href"]
        for link in public_client.get("/stac").json()["links"]
        if link["rel"] == "child"
    ]
    assert not any(href.endswith("/internal") for href in children)


def _behind(settings: Settings, proxy: str) -> TestClient:
    trusted = {"trusted_proxies": "127.0.0.1,10.1.0.0/16", "anonymous_clearance": "ouo"}
    return TestClient(create_app(settings.model_copy(update=trusted)), client=(proxy, 40000))


PROXY_HEADERS = {
    "x-forwarded-proto": "https",
    "x-forwarded-host": "maps.example.org",
    "x-forwarded-prefix": "/geo",
}


@pytest.mark.parametrize("proxy", ["127.0.0.1", "10.1.2.3"])
def test_links_follow_a_trusted_reverse_proxy(settings: Settings, proxy: str) -> None:
    with _behind(settings, proxy) as client:
        _load(client)
        landing = client.get("/stac", headers=PROXY_HEADERS).json()
        hrefs = {link["rel"]: link["href"] for link in landing["links"]}
        assert hrefs["self"] == "https://maps.example.org/geo/stac"
        assert hrefs["search"] == "https://maps.example.org/geo/stac/search"
        page = client.get("/stac/search", params={"limit": 2}, headers=PROXY_HEADERS).json()
    rels = {link["rel"]: link["href"] for link in page["links"]}
    assert rels["next"].startswith("https://maps.example.org/geo/stac/search?")
    item_links = {link["rel"]: link["href"] for link in page["features"][0]["links"]}
    assert item_links["self"].startswith("https://maps.example.org/geo/stac/collections/")
    assert item_links["root"] == "https://maps.example.org/geo/stac"


def test_forwarded_headers_of_anyone_else_are_ignored(settings: Settings) -> None:
    with _behind(settings, "192.0.2.7") as client:
        landing = client.get("/stac", headers=PROXY_HEADERS).json()
    hrefs = {link["rel"]: link["href"] for link in landing["links"]}
    assert hrefs["self"] == "http://testserver/stac"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-forwarded-proto", "javascript"),
        ("x-forwarded-host", "evil.example/<script>"),
        ("x-forwarded-prefix", "/a b/../c"),
    ],
)
def test_malformed_forwarded_headers_are_ignored_even_from_a_proxy(
    settings: Settings, header: str, value: str
) -> None:
    with _behind(settings, "127.0.0.1") as client:
        landing = client.get("/stac", headers={header: value}).json()
    hrefs = {link["rel"]: link["href"] for link in landing["links"]}
    assert hrefs["self"] == "http://testserver/stac"


def test_root_path_setting_prefixes_links(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"root_path": "/geo"}))
    with TestClient(app) as c:
        landing = c.get("/stac").json()
    self_href = next(link["href"] for link in landing["links"] if link["rel"] == "self")
    assert self_href == "http://testserver/geo/stac"


def test_queryables_list_item_properties(client: TestClient) -> None:
    r = client.get("/stac/queryables")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/schema+json")
    doc = r.json()
    assert doc["$id"].endswith("/stac/queryables")
    assert doc["properties"]["cloud"]["type"] == "number"
    assert doc["properties"]["platform"]["type"] == "string"
    per = client.get("/stac/collections/coast/queryables").json()
    assert per["$id"].endswith("/stac/collections/coast/queryables")


def test_collection_extent_covers_its_items(client: TestClient) -> None:
    doc = client.get("/stac/collections/coast").json()
    mine = [item for item, _ in ITEMS if item["collection"] == "coast"]
    assert doc["extent"]["spatial"]["bbox"][0] == [
        min(i["bbox"][0] for i in mine),
        min(i["bbox"][1] for i in mine),
        max(i["bbox"][2] for i in mine),
        max(i["bbox"][3] for i in mine),
    ]
    first, last = doc["extent"]["temporal"]["interval"][0]
    assert first == min(i["properties"]["datetime"] for i in mine)
    assert last == max(i["properties"]["datetime"] for i in mine)
