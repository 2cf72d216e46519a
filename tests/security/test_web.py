"""The web surface: HTML escaping, path traversal in ids, forwarded headers.

- HTML pages show feature properties (seeded with markup) and echo query strings, and
  must do both escaped: no injected element, no event-handler attribute, no extra script.
- Collection and item ids that try ``../`` (plain or percent-encoded) reach nothing.
- ``X-Forwarded-*`` and ``Forwarded`` from an untrusted client never reach a link; a
  deployment that trusts 127.0.0.1 honours them only when well-formed (http/https).

Every probe here runs on both harness backends: the pages, ids and links come from the
SQLite catalog and feature tables on one, from pgSTAC and PostGIS on the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from geoetl.settings import Settings
from tests.conftest import serving
from tests.security.conftest import (
    BACKENDS,
    Harness,
    assert_alive,
    nothing_stored,
    raster_bytes,
    raw_request,
)

pytestmark = pytest.mark.parametrize("harness", BACKENDS, indirect=True)

# -- XSS --------------------------------------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_no_markup_injection(html: str, scripts_allowed: int = 2) -> None:
    """No injected element, event handler or script in ``html``.

    Values must be escaped everywhere, inside the map's inline script too: a raw
    ``<script>`` there after a raw ``<!--`` (also seeded) keeps the page's own
    ``</script>`` from closing the element.
    """
    assert "<script>alert(" not in html, "a property value came back as markup"
    assert "<!--<script>" not in html, "a property value came back as markup"
    assert "</script><script>" not in html
    parser = _Elements()
    parser.feed(html)
    tags = parser.tags
    assert not [t for t, _ in tags if t in ("img", "iframe", "svg", "object", "embed")], tags
    handlers = [(t, a) for t, attrs in tags for a, _ in attrs if a.lower().startswith("on")]
    assert not handlers, handlers
    hrefs = [v or "" for _, attrs in tags for a, v in attrs if a in ("href", "src")]
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")], hrefs
    scripts = [t for t, _ in tags if t == "script"]
    assert len(scripts) <= scripts_allowed, f"{len(scripts)} script elements"


SCRIPT = "%3Cscript%3Ealert(1)%3C/script%3E"
XSS_PAGES = {
    "items": "/collections/xss_public/items?f=html",
    "items-accept-header": "/collections/xss_public/items",
    "feature": "/collections/xss_public/items/1?f=html",
    "feature-2": "/collections/xss_public/items/2?f=html",
    "collection": "/collections/xss_public?f=html",
    "collections": "/collections?f=html",
    "reflected-query": f"/collections/xss_public/items?f=html&x=%22%3E{SCRIPT}",
    "reflected-param-name": (
        "/collections/xss_public/items?f=html&%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E=1"
    ),
    "reflected-landing": f"/?f=html&q={SCRIPT}",
    "reflected-bbox-error": f"/collections/xss_public/items?f=html&bbox={SCRIPT}",
}


@pytest.mark.parametrize("page", sorted(XSS_PAGES))
def test_html_pages_escape_hostile_values(harness: Harness, page: str) -> None:
    headers = {"Accept": "text/html"} if page == "items-accept-header" else {}
    response = harness.api("pub").get(XSS_PAGES[page], headers=headers)
    assert response.status_code in (200, 400), response.text[:300]
    if response.headers.get("content-type", "").startswith("text/html"):
        assert_no_markup_injection(response.text)
        if page.startswith("item"):
            # The values are there, escaped (a page that dropped them would pass too easily).
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    else:
        # An error about the hostile value is JSON, which a browser does not render.
        assert response.headers["content-type"].startswith("application/"), response.headers
    assert_alive(harness.pub)


def test_json_answers_are_not_served_as_html(harness: Harness) -> None:
    # A JSON document carrying markup must not be sniffed into a page by a browser.
    response = harness.api("pub").get("/collections/xss_public/items")
    assert response.headers["content-type"].startswith("application/geo+json")
    error = harness.api("pub").get("/collections/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert error.status_code == 404
    assert not error.headers["content-type"].startswith("text/html"), error.headers


# -- traversal --------------------------------------------------------------------------

NOTHING = (400, 404, 422)
TRAVERSAL = {
    "/stac/collections/..%2F..%2Fgeoetl.db": NOTHING,
    "/stac/collections/%2e%2e/items/%2e%2e": NOTHING,
    "/stac/collections/sec-mixed/items/..%2Felev-public": NOTHING,
    "/stac/collections/sec-mixed/items/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd": NOTHING,
    "/stac/collections/../../../../etc/passwd": NOTHING,
    "/raster/collections/%2e%2e/items/%2e%2e%2f%2e%2e%2fgeoetl.db/info": NOTHING,
    "/raster/collections/sec-mixed/items/..%2f..%2f..%2f..%2fetc%2fpasswd/info": NOTHING,
    "/raster/collections/sec-mixed/items/elev-public/info?asset=..%2F..%2F..%2Fgeoetl.db": NOTHING,
    "/raster/collections/sec-mixed/items/elev-public/info?asset=%2Fetc%2Fpasswd": NOTHING,
    # An unknown parameter is ignored: the item's own COG is read, nothing else.
    "/raster/collections/sec-mixed/items/elev-public/info?url=%2Fetc%2Fpasswd": (200, *NOTHING),
    "/raster/collections/sec-mixed/items/elev-public/preview.png?url=file:///etc/passwd": (
        200,
        *NOTHING,
    ),
    "/stac/collections/sec-mixed/items/elev-public/assets/..%2F..%2F..%2Fgeoetl.db": NOTHING,
    "/stac/collections/sec-mixed/items/elev-public/assets/%2e%2e": NOTHING,
    "/stac/collections/sec-mixed/items/elev-public/assets/..": NOTHING,
    "/collections/..%2F..%2Ffeatures/items": NOTHING,
    "/collections/%2e%2e%2f%2e%2e%2fgeoetl/items": NOTHING,
    "/collections/../../etc/passwd": NOTHING,
    "/jobs/..%2F..%2Fgeoetl.db": NOTHING,
    "/jobs/%2e%2e/tasks": NOTHING,
}


@pytest.mark.parametrize("target", sorted(TRAVERSAL))
def test_ids_that_walk_up_reach_nothing(harness: Harness, target: str) -> None:
    status, body = raw_request(harness.ouo, target)
    assert status in TRAVERSAL[target], f"{status} {body[:300]}"
    assert "root:" not in body
    assert "SQLite format" not in body
    assert_alive(harness.ouo)


@pytest.mark.parametrize(
    "option",
    [
        {"collection_id": "../evil"},
        {"collection_id": "%2e%2e"},
        {"item_id": "../../evil"},
        {"item_id": "a/b"},
        {"dataset_id": "../evil"},
        {"collection_id": "..", "item_id": ".."},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_upload_ids_that_walk_up_are_refused(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, option: dict[str, str]
) -> None:
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    name = "walk.geojson" if "dataset_id" in option else "walk.tif"
    body = b'{"type": "FeatureCollection", "features": []}' if "dataset_id" in option else None
    with nothing_stored(harness):
        response = api.upload(name, body or raster_bytes(tmp_path), access_level="public", **option)
    assert response.status_code in (400, 422), response.text
    assert not list(harness.root.glob("**/evil*"))
    assert_alive(harness.ouo)


# -- forwarded headers ------------------------------------------------------------------

SPOOF = {
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "javascript",
    "X-Forwarded-Prefix": "//evil.example/x",
    "Forwarded": 'host=evil.example;proto=javascript;for="[::1]"',
    "X-Forwarded-Server": "evil.example",
    "X-Original-URL": "//evil.example/stac",
    "X-Forwarded-Port": "6666",
}


def link_pages(h: Harness) -> list[str]:
    elev = h.seeds["elev_public"]
    return [
        "/stac",
        "/stac/search?limit=2&collections=sec-mixed",
        "/stac/collections",
        "/stac/collections/sec-mixed/items?limit=1",
        "/stac/collections/sec-mixed/items/elev-public",
        "/",
        "/?f=html",
        "/collections",
        "/collections/nc_public/items?limit=1",
        "/collections/nc_public/items?f=html&limit=1",
        f"/jobs/{elev.job_id}",
        "/raster/collections/sec-mixed/items/elev-public/WebMercatorQuad/tilejson.json",
    ]


@pytest.mark.parametrize("deployment", ["ouo", "pub"])
def test_untrusted_forwarded_headers_never_reach_a_link(harness: Harness, deployment: str) -> None:
    api = harness.api(deployment)
    for path in link_pages(harness):
        response = api.get(path, headers=SPOOF)
        assert response.status_code == 200, f"{path}: {response.status_code}"
        text = response.text
        assert "evil.example" not in text, f"{path} links to evil.example"
        assert "javascript:" not in text, f"{path} has a javascript: link"
        assert ":6666" not in text, path
    posted = api.post("/stac/search", json={"limit": 1}, headers=SPOOF)
    assert "evil.example" not in posted.text
    assert "javascript:" not in posted.text
    assert_alive(harness.urls[deployment])


@pytest.fixture(scope="module")
def trusting(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A third deployment on the home that trusts 127.0.0.1 as a reverse proxy."""
    settings: Settings = harness.settings["ouo"].model_copy(update={"trusted_proxies": "127.0.0.1"})
    log = tmp_path_factory.mktemp("trusting") / "serve.log"
    with serving(settings, log, "--workers", "0") as base:
        yield base


def _links(doc: dict[str, Any]) -> list[str]:
    return [str(link["href"]) for link in doc.get("links", [])]


def test_a_trusted_proxy_rewrites_links(harness: Harness, trusting: str) -> None:
    api = harness.api("ouo")
    api.base = trusting
    headers = {
        "X-Forwarded-Host": "geo.example.org",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/geo",
    }
    for path in ("/stac", "/stac/search?limit=1&collections=sec-mixed"):
        links = _links(api.get(path, headers=headers).json())
        assert links, path
        assert all(h.startswith("https://geo.example.org/geo/") for h in links), links


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Forwarded-Proto", "javascript"),
        ("X-Forwarded-Proto", "data"),
        ("X-Forwarded-Proto", "https:evil"),
        ("X-Forwarded-Host", "evil.example/@x"),
        ("X-Forwarded-Host", "evil.example\\@x"),
        ("X-Forwarded-Host", "evil.example:99999999"),
        ("X-Forwarded-Host", "user:pw@evil.example"),
        ("X-Forwarded-Prefix", "//evil.example"),
        ("X-Forwarded-Prefix", "/a/../../evil"),
        ("X-Forwarded-Prefix", "javascript:alert(1)"),
    ],
)
def test_a_trusted_proxy_is_honoured_only_when_well_formed(
    harness: Harness, trusting: str, header: str, value: str
) -> None:
    api = harness.api("ouo")
    api.base = trusting
    for path in ("/stac", "/", "/collections/nc_public/items?limit=1"):
        response = api.get(path, headers={header: value})
        assert response.status_code in (200, 400), f"{path}: {response.status_code}"
        if response.status_code == 200:
            for href in _links(response.json()):
                assert href.startswith(("http://127.0.0.1:", "https://127.0.0.1:")), href
    assert_alive(trusting)
