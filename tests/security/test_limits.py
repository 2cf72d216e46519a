"""Bounded requests: sizes, depths, counts and integers a caller controls are capped (400/413).

Every probe here is anonymous (reads) unless it needs to write; each answer must be the
stated 4xx — never a 500, never a hang — and the service must keep answering.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.security.conftest import Harness, assert_alive, nothing_stored, raw_request

RASTER = "/raster/collections/sec-mixed/items/elev-public"
HUGE = 10**20


# -- raster rendering -------------------------------------------------------------------

RENDER = {
    "preview-width": f"{RASTER}/preview.png?width=3000",
    "preview-height": f"{RASTER}/preview.png?height=3000",
    "preview-path-size": f"{RASTER}/preview/3000x3000.png",
    "preview-width-huge": f"{RASTER}/preview.png?width={HUGE}",
    "statistics-max-size": f"{RASTER}/statistics?max_size=4096",
    "tile-buffer": f"{RASTER}/tiles/WebMercatorQuad/8/132/86.png?buffer=100",
    "tile-tilesize": f"{RASTER}/tiles/WebMercatorQuad/8/132/86.png?tilesize=2048",
    "tile-tilesize-huge": f"{RASTER}/tiles/WebMercatorQuad/8/132/86.png?tilesize={HUGE}",
}


def test_render_controls_are_valid_within_bounds(harness: Harness) -> None:
    # Control: the same routes answer with values inside the limits.
    api = harness.api("pub")
    for url in (
        f"{RASTER}/preview.png?width=256&height=256",
        f"{RASTER}/statistics?max_size=512",
        f"{RASTER}/tiles/WebMercatorQuad/8/132/86.png?buffer=4&tilesize=512",
    ):
        response = api.get(url)
        assert response.status_code == 200, f"{url}: {response.text[:300]}"


@pytest.mark.parametrize("case", sorted(RENDER))
def test_oversized_render_requests_are_400(harness: Harness, case: str) -> None:
    response = harness.api("pub").get(RENDER[case])
    assert response.status_code == 400, response.text[:500]
    assert_alive(harness.pub)


# -- integers ---------------------------------------------------------------------------


def _token(offset: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def integer_urls(h: Harness) -> dict[str, str]:
    job = h.seeds["elev_public"].job_id
    return {
        "jobs-offset": f"/jobs?offset={HUGE}",
        "jobs-limit": f"/jobs?limit={HUGE}",
        "tasks-offset": f"/jobs/{job}/tasks?offset={HUGE}",
        "events-after": f"/jobs/{job}/events?after={HUGE}",
        "features-offset": f"/collections/nc_public/items?offset={HUGE}",
        "features-limit": f"/collections/nc_public/items?limit={HUGE}",
        "features-negative-offset": "/collections/nc_public/items?offset=-1",
        "feature-id": f"/collections/nc_public/items/{HUGE}",
        "feature-id-negative-huge": f"/collections/nc_public/items/-{HUGE}",
        "stac-limit": f"/stac/search?limit={HUGE}",
        "stac-items-limit": f"/stac/collections/sec-mixed/items?limit={HUGE}",
        "stac-token-huge-offset": f"/stac/search?token={_token(HUGE)}",
        "stac-token-negative": f"/stac/search?token={_token(-5)}",
        "stac-token-float": f"/stac/search?token={_token(1e300)}",
        "stac-token-garbage": "/stac/search?token=!!!not-a-token!!!",
        "stac-token-not-json": "/stac/search?token="
        + base64.urlsafe_b64encode(b"\xff\xfe garbage").decode(),
    }


INTEGER_CASES = [
    "jobs-offset",
    "jobs-limit",
    "tasks-offset",
    "events-after",
    "features-offset",
    "features-limit",
    "features-negative-offset",
    "feature-id",
    "feature-id-negative-huge",
    "stac-limit",
    "stac-items-limit",
    "stac-token-huge-offset",
    "stac-token-negative",
    "stac-token-float",
    "stac-token-garbage",
    "stac-token-not-json",
]


@pytest.mark.parametrize("case", INTEGER_CASES)
def test_out_of_range_integers_are_400(harness: Harness, case: str) -> None:
    response = harness.api("ouo").get(integer_urls(harness)[case])
    assert response.status_code == 400, response.text[:500]
    assert_alive(harness.ouo)


def test_huge_limit_in_a_posted_search_is_400(harness: Harness) -> None:
    for body in ({"limit": HUGE}, {"limit": 10}, {"token": _token(HUGE)}):
        response = harness.api("ouo").post("/stac/search", json=body)
        expected = 200 if body == {"limit": 10} else 400
        assert response.status_code == expected, f"{body}: {response.text[:300]}"
    assert_alive(harness.ouo)


# -- CQL2 -------------------------------------------------------------------------------


def deep_text(depth: int, prop: str) -> str:
    return "(" * depth + f"{prop} = 'x'" + ")" * depth


def wide_text(terms: int, prop: str) -> str:
    return " OR ".join(f"{prop} = 'x{i}'" for i in range(terms))


def deep_json(depth: int, prop: str) -> str:
    # Written out: json.dumps itself recurses, and would give up before the server does.
    leaf = json.dumps({"op": "=", "args": [{"property": prop}, "x"]})
    return '{"op": "not", "args": [' * depth + leaf + "]}" * depth


def wide_json(terms: int, prop: str) -> str:
    args = [{"op": "=", "args": [{"property": prop}, f"x{i}"]} for i in range(terms)]
    return json.dumps({"op": "or", "args": args})


SHAPES = {"deep-text": deep_text, "wide-text": wide_text, "deep-json": deep_json}
SHAPES["wide-json"] = wide_json


def cql_request(h: Harness, target: str, shape: str, n: int) -> httpx.Response:
    """A filter of ``shape`` and size ``n`` sent to ``target`` (anonymously)."""
    api = h.api("ouo")
    # A property each target knows: STAC items have ids, nc counties have names.
    text = SHAPES[shape](n, "name" if target == "features" else "id")
    lang = "cql2-json" if shape.endswith("json") else "cql2-text"
    # STAC searches stay in the raster collection (other probes cover the vector items).
    if target == "stac-post":
        filt = text if lang == "cql2-json" else json.dumps(text)
        body = f'{{"collections": ["sec-mixed"], "limit": 1, "filter-lang": "{lang}", '
        body += f'"filter": {filt}}}'
        headers = {"content-type": "application/json"}
        return api.post("/stac/search", content=body.encode(), headers=headers)
    params = {"filter": text, "filter-lang": lang, "limit": "1"}
    if target == "stac-get":
        return api.get("/stac/search", params={**params, "collections": "sec-mixed"})
    return api.get("/collections/nc_public/items", params=params)


CQL_CASES: dict[str, tuple[str, str, int]] = {
    "stac-get-text-deep": ("stac-get", "deep-text", 30),
    "stac-get-text-very-deep": ("stac-get", "deep-text", 5_000),
    "stac-get-text-wide": ("stac-get", "wide-text", 300),
    "stac-get-json-deep": ("stac-get", "deep-json", 30),
    "stac-post-json-deep": ("stac-post", "deep-json", 30),
    "stac-post-json-very-deep": ("stac-post", "deep-json", 3_000),
    "stac-post-json-wide": ("stac-post", "wide-json", 300),
    "stac-post-text-deep": ("stac-post", "deep-text", 30),
    "features-text-deep": ("features", "deep-text", 30),
    "features-text-very-deep": ("features", "deep-text", 5_000),
    "features-text-wide": ("features", "wide-text", 300),
    "features-json-deep": ("features", "deep-json", 30),
    "features-json-wide": ("features", "wide-json", 300),
}


@pytest.mark.parametrize("case", sorted(CQL_CASES))
def test_cql2_within_limits_is_answered(harness: Harness, case: str) -> None:
    # Control: each shape, small, is a valid filter at the same target.
    target, shape, _ = CQL_CASES[case]
    response = cql_request(harness, target, shape, 5)
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize("case", sorted(CQL_CASES))
def test_deep_or_wide_cql2_is_400(harness: Harness, case: str) -> None:
    response = cql_request(harness, *CQL_CASES[case])
    assert response.status_code == 400, response.text[:500]
    assert_alive(harness.ouo)


# -- sortby, fields ---------------------------------------------------------------------

KEYS_CASES = {
    "stac-get-sortby": ("GET", "/stac/search", {"sortby": ",".join(["id"] * 25)}),
    "stac-post-sortby": (
        "POST",
        "/stac/search",
        {"sortby": [{"field": "id", "direction": "asc"}] * 25},
    ),
    "features-sortby": ("GET", "/collections/nc_public/items", {"sortby": ",".join(["name"] * 25)}),
    "stac-get-fields": (
        "GET",
        "/stac/search",
        {"fields": ",".join(f"properties.p{i}" for i in range(150))},
    ),
    "stac-post-fields": (
        "POST",
        "/stac/search",
        {"fields": {"include": [f"properties.p{i}" for i in range(150)]}},
    ),
    "stac-post-fields-exclude": (
        "POST",
        "/stac/search",
        {"fields": {"exclude": [f"properties.p{i}" for i in range(150)]}},
    ),
    "features-properties": (
        "GET",
        "/collections/nc_public/items",
        {"properties": ",".join(f"p{i}" for i in range(150))},
    ),
}


@pytest.mark.parametrize("case", sorted(KEYS_CASES))
def test_too_many_sort_or_field_keys_are_400(harness: Harness, case: str) -> None:
    method, path, args = KEYS_CASES[case]
    api = harness.api("ouo")
    response = api.get(path, params=args) if method == "GET" else api.post(path, json=args)
    assert response.status_code == 400, response.text[:500]
    assert_alive(harness.ouo)


# -- bodies -----------------------------------------------------------------------------


def big_json(mib: float = 1.5) -> bytes:
    return json.dumps({"ids": ["x" * 1000] * int(mib * 1024)}).encode()


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("case", ["search", "search-chunked", "submit", "token", "deep-nesting"])
def test_oversized_json_bodies_are_413(harness: Harness, tokens: dict[str, str], case: str) -> None:
    headers = {"content-type": "application/json"}
    if case == "search":
        response = harness.api("ouo").post("/stac/search", content=big_json(), headers=headers)
    elif case == "search-chunked":
        response = harness.api("ouo").post(
            "/stac/search", content=chunks(big_json()), headers=headers
        )
    elif case == "submit":
        with nothing_stored(harness.home):
            response = harness.api("ouo", tokens["sec-pub-ouo"]).post(
                "/jobs/process_raster", content=big_json(), headers=headers
            )
    elif case == "token":
        response = harness.api("ouo", tokens["sec-admin"]).post(
            "/auth/tokens", content=big_json(), headers=headers
        )
    else:
        # Under the size cap but absurdly nested: refused, not parsed into a RecursionError.
        nested = b"[" * 200_000 + b"]" * 200_000
        response = harness.api("ouo").post("/stac/search", content=nested, headers=headers)
        assert response.status_code in (400, 413), response.text[:300]
        assert_alive(harness.ouo)
        return
    assert response.status_code == 413, response.text[:500]
    assert_alive(harness.ouo)


# -- NUL and control characters ----------------------------------------------------------

NUL_TARGETS = [
    "/collections/nc%00x",
    "/collections/nc_public/items?name=a%00b",
    "/stac/search?ids=a%00b",
    "/stac/collections/sec-mixed/items/elev-public%00.json",
    "/jobs?status=%00",
    "/stac/search?filter=id%3D%27%00%27",
    "/stac/collections/%0d%0aSet-Cookie:%20x=1",
    "/collections?f=html%0d%0aX-Injected:%201",
]


@pytest.mark.parametrize("target", NUL_TARGETS)
def test_nul_and_control_characters_in_urls_are_400(harness: Harness, target: str) -> None:
    status, body = raw_request(harness.ouo, target)
    assert status == 400, f"{target}: {status} {body[:300]}"
    assert "X-Injected" not in body
    assert_alive(harness.ouo)


def test_nul_in_an_upload_name_stores_nothing(harness: Harness, tokens: dict[str, str]) -> None:
    with nothing_stored(harness.home):
        status, body = raw_request(
            harness.ouo,
            "/ingest?filename=a%00.tif&access_level=public",
            method="POST",
            headers=f"Authorization: Bearer {tokens['sec-pub-ouo']}\r\n",
        )
    assert status == 400, body[:300]
    assert_alive(harness.ouo)
