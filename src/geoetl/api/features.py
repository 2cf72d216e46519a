"""OGC API - Features (Part 1: Core, GeoJSON) at the API root."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from geoetl import lifecycle
from geoetl.api import html
from geoetl.api.deps import PlatformDep
from geoetl.api.params import parse_bbox_text, parse_datetime
from geoetl.api.responses import FastJSONResponse
from geoetl.api.security import caller_levels
from geoetl.cql2 import parse
from geoetl.errors import InputError, NotFound
from geoetl.features.registry import FeatureCollection
from geoetl.features.store import FeatureQuery, TimeFilter
from geoetl.limits import check_count, check_filter
from geoetl.platform import Platform

router = APIRouter(tags=["OGC API - Features"])
GEOJSON = "application/geo+json"
MAX_LIMIT = 10_000
MAX_OFFSET = 10_000_000
MAX_FEATURE_ID = 2**63 - 1
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
RESERVED_PARAMS = {
    "f",
    "bbox",
    "limit",
    "offset",
    "properties",
    "datetime",
    "crs",
    "bbox-crs",
    "filter",
    "filter-lang",
    "filter-crs",
    "sortby",
    "version",
}


def visible(request: Request) -> list[str]:
    """Access levels this caller sees on this deployment."""
    return caller_levels(request)


def _collection(platform: Platform, request: Request, collection_id: str) -> FeatureCollection:
    """The collection as currently published, or as version ``?version=N`` served it."""
    raw = request.query_params.get("version")
    if raw is None:
        return platform.feature_registry.get(collection_id, visible(request))
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise InputError(f"version must be a whole number from 1, not {raw[:20]!r}")
    return lifecycle.feature_collection_version(platform, collection_id, int(raw), visible(request))


def _geojson(content: dict[str, Any]) -> JSONResponse:
    return FastJSONResponse(content, media_type=GEOJSON)


def _url(request: Request, name: str, **params: Any) -> str:
    return str(request.url_for(name, **params))


def _collection_doc(request: Request, fc: FeatureCollection) -> dict[str, Any]:
    items = _url(request, "get_items", collection_id=fc.collection_id)
    return {
        "id": fc.collection_id,
        "title": fc.title,
        "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": {"bbox": [fc.bbox] if fc.bbox else [], "crs": CRS84}},
        "geoetl:feature_count": fc.feature_count,
        "geoetl:geometry_family": fc.family,
        "links": [
            {
                "rel": "self",
                "href": _url(request, "get_feature_collection", collection_id=fc.collection_id),
                "type": "application/json",
            },
            {"rel": "items", "href": items, "type": GEOJSON},
            {
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "href": _url(request, "get_queryables", collection_id=fc.collection_id),
                "type": "application/schema+json",
            },
        ],
    }


@router.get("/", name="landing", response_model=None)
def landing(request: Request) -> dict[str, Any] | HTMLResponse:
    """Landing page: what this service offers."""
    doc = {
        "title": "geoetl",
        "description": "Published geospatial data: features, tiles, STAC, jobs.",
        "links": [
            {"rel": "self", "href": str(request.url), "type": "application/json"},
            {
                "rel": "service-desc",
                "href": str(request.url_for("openapi")),
                "type": "application/vnd.oai.openapi+json;version=3.0",
            },
            {"rel": "service-doc", "href": str(request.base_url) + "docs", "type": "text/html"},
            {
                "rel": "conformance",
                "href": _url(request, "conformance"),
                "type": "application/json",
            },
            {"rel": "data", "href": _url(request, "get_collections"), "type": "application/json"},
            {"rel": "console", "href": _url(request, "ui_home"), "type": "text/html"},
        ],
    }
    return html.landing_page(request, doc) if html.wants_html(request) else doc


@router.get("/api", name="openapi")
def api_description() -> RedirectResponse:
    """The OpenAPI description."""
    return RedirectResponse("/openapi.json")


@router.get("/conformance", name="conformance", response_model=None)
def conformance(request: Request) -> dict[str, list[str]] | HTMLResponse:
    """Conformance classes implemented."""
    doc = {"conformsTo": CONFORMANCE}
    return html.conformance_page(request, doc) if html.wants_html(request) else doc


@router.get("/collections", name="get_collections", response_model=None)
def collections(request: Request, platform: PlatformDep) -> dict[str, Any] | HTMLResponse:
    """Every feature collection."""
    doc = {
        "links": [{"rel": "self", "href": str(request.url), "type": "application/json"}],
        "collections": [
            _collection_doc(request, fc) for fc in platform.feature_registry.all(visible(request))
        ],
    }
    return html.collections_page(request, doc) if html.wants_html(request) else doc


@router.get("/collections/{collection_id}", name="get_feature_collection", response_model=None)
def collection(
    collection_id: str, request: Request, platform: PlatformDep
) -> dict[str, Any] | HTMLResponse:
    """One feature collection."""
    doc = _collection_doc(request, _collection(platform, request, collection_id))
    return html.collection_page(request, doc) if html.wants_html(request) else doc


@router.get("/collections/{collection_id}/queryables", name="get_queryables")
def queryables(collection_id: str, request: Request, platform: PlatformDep) -> JSONResponse:
    """The properties a client may filter on, as JSON Schema."""
    fc = _collection(platform, request, collection_id)
    kinds = {"int": "integer", "float": "number", "bool": "boolean"}
    props: dict[str, Any] = {
        name: {"type": next((v for k, v in kinds.items() if dtype.startswith(k)), "string")}
        for name, dtype in fc.fields.items()
    }
    props["geometry"] = {"$ref": "https://geojson.org/schema/Geometry.json"}
    return FastJSONResponse(
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": str(request.url),
            "type": "object",
            "title": fc.title,
            "properties": props,
        },
        media_type="application/schema+json",
    )


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    bbox = parse_bbox_text(value)
    if bbox[0] > bbox[2]:
        raise InputError(f"bbox {value!r} crosses the antimeridian; ask for each side separately")
    return bbox


@router.get("/collections/{collection_id}/items", name="get_items", response_model=None)
def items(
    collection_id: str,
    request: Request,
    platform: PlatformDep,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in CRS84")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    f: Annotated[str | None, Query(description="json (GeoJSON) or html.")] = None,
    properties: Annotated[
        str | None, Query(description="Comma-separated properties to return.")
    ] = None,
    filter_: Annotated[
        str | None, Query(alias="filter", description="A CQL2 filter (OGC API Features Part 3).")
    ] = None,
    filter_lang: Annotated[
        str, Query(alias="filter-lang", description="cql2-text or cql2-json.")
    ] = "cql2-text",
    sortby: Annotated[
        str | None, Query(description="Comma-separated properties; '-' sorts descending.")
    ] = None,
    datetime_: Annotated[
        str | None,
        Query(alias="datetime", description="Instant or interval (a/b, ../b, a/..)."),
    ] = None,
) -> JSONResponse | HTMLResponse:
    """Features of a collection, filtered by bbox, properties and CQL2, paged."""
    fc = _collection(platform, request, collection_id)
    settings = platform.settings
    node = None
    if filter_:
        check_filter(
            filter_, max_depth=settings.max_filter_depth, max_terms=settings.max_filter_terms
        )
        node = parse(filter_, filter_lang)
    keep = None
    if properties is not None:
        keep = frozenset(p.strip() for p in properties.split(",") if p.strip())
        check_count("properties", len(keep), settings.max_fields_keys, "GEOETL_MAX_FIELDS_KEYS")
    query = FeatureQuery(
        fields=fc.fields,
        bbox=_bbox(bbox),
        equals=tuple(
            (name, _typed(value, fc.fields[name]))
            for name, value in request.query_params.items()
            if name not in RESERVED_PARAMS and name in fc.fields
        ),
        filter=node,
        time=_time_filter(fc, datetime_) if datetime_ else None,
        sortby=_sort_keys(fc, sortby, settings.max_sort_keys),
        properties=keep,
        limit=limit,
        offset=offset,
    )
    features, total = platform.features.query(fc.dataset_id, fc.table_name, query)
    base = _url(request, "get_items", collection_id=collection_id)
    links = [
        {"rel": "self", "href": str(request.url), "type": GEOJSON},
        {
            "rel": "collection",
            "href": _url(request, "get_feature_collection", collection_id=collection_id),
            "type": "application/json",
        },
    ]
    params = dict(request.query_params)
    if offset + len(features) < total:
        links.append(
            {"rel": "next", "href": _page(base, params, offset + limit, limit), "type": GEOJSON}
        )
    if offset > 0:
        prev = max(0, offset - limit)
        links.append({"rel": "prev", "href": _page(base, params, prev, limit), "type": GEOJSON})
    doc = {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": total,
        "numberReturned": len(features),
        "timeStamp": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"),
        "links": links,
    }
    if html.wants_html(request):
        doc["links"] = _html_links(links)
        return html.items_page(request, fc.title, doc)
    return _geojson(doc)


def _html_links(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # On the HTML page, self and paging links lead to HTML pages; the GeoJSON of the
    # same page is the "alternate".
    out = []
    for link in links:
        if link["rel"] in ("self", "next", "prev"):
            href = _with_format(link["href"], "html")
            out.append({**link, "href": href, "type": "text/html"})
            if link["rel"] == "self":
                geojson = _with_format(link["href"], "json")
                out.append({"rel": "alternate", "href": geojson, "type": GEOJSON})
        else:
            out.append(link)
    return out


def _with_format(href: str, f: str) -> str:
    base, _, query = href.partition("?")
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "f"]
    return f"{base}?{urlencode([*params, ('f', f)])}"


def _sort_keys(
    fc: FeatureCollection, sortby: str | None, max_keys: int
) -> tuple[tuple[str, bool], ...]:
    keys = []
    given = [raw for raw in (sortby or "").split(",") if raw.strip()]
    check_count("sortby keys", len(given), max_keys, "GEOETL_MAX_SORT_KEYS")
    for raw in given:
        name = raw.strip()
        desc = name.startswith("-")
        name = name.lstrip("+-")
        if name not in fc.fields:
            raise InputError(f"cannot sort by {name!r}; sortable: {', '.join(sorted(fc.fields))}")
        keys.append((name, desc))
    return tuple(keys)


def temporal_field(fc: FeatureCollection) -> str | None:
    """The first date/time property of a collection, which ``datetime`` filters on."""
    return next((n for n, t in fc.fields.items() if t.startswith(("datetime", "date"))), None)


def _time_filter(fc: FeatureCollection, value: str) -> TimeFilter:
    field = temporal_field(fc)
    if field is None:
        raise InputError(f"collection {fc.collection_id} has no temporal property to filter on")
    start, end = parse_datetime(value)
    return TimeFilter(field, start, end)


def _page(base: str, params: dict[str, str], offset: int, limit: int) -> str:
    query = {**params, "offset": str(offset), "limit": str(limit)}
    return f"{base}?{urlencode(query)}"


def _typed(value: str, dtype: str) -> Any:
    try:
        if dtype.startswith("int"):
            number = int(value)
            if not -(2**63) <= number < 2**63:
                raise InputError(f"{value!r} is outside the range of a 64-bit integer")
            return number
        if dtype == "bool":
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise InputError(f"{value!r} is not a boolean (true or false)")
            return lowered in ("true", "1")
        if dtype.startswith("float"):
            return float(value)
    except ValueError:
        raise InputError(f"{value!r} is not a {dtype} value") from None
    return value


@router.get(
    "/collections/{collection_id}/items/{feature_id}", name="get_feature", response_model=None
)
def feature(
    collection_id: str,
    feature_id: Annotated[int, FastApiPath(ge=0, le=MAX_FEATURE_ID)],
    request: Request,
    platform: PlatformDep,
) -> JSONResponse | HTMLResponse:
    """One feature by id."""
    fc = _collection(platform, request, collection_id)
    found, _ = platform.features.query(
        fc.dataset_id, fc.table_name, FeatureQuery(fields=fc.fields, feature_id=feature_id, limit=1)
    )
    if not found:
        raise NotFound(f"no feature {feature_id} in {collection_id}")
    doc = found[0]
    doc["links"] = [
        {"rel": "self", "href": str(request.url), "type": GEOJSON},
        {
            "rel": "collection",
            "href": _url(request, "get_feature_collection", collection_id=collection_id),
            "type": "application/json",
        },
    ]
    if html.wants_html(request):
        return html.page(
            request,
            f"{fc.title}: feature {feature_id}",
            html.table([doc["properties"]]),
            {"type": "FeatureCollection", "features": [doc]},
        )
    return _geojson(doc)
