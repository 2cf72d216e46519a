"""The STAC API under ``/stac``: landing, conformance, collections, items, search, queryables.

Search (GET and POST) takes ``bbox``/``intersects``, ``datetime``, ``collections``,
``ids``, ``limit`` and a ``token`` for the next page, plus the filter (CQL2 text or
JSON), sort and fields extensions. The catalog store does the work (see
:meth:`geoetl.catalog.backend.CatalogBackend.search`); this module parses requests, applies
the deployment's audience and writes the links. Links are built from the forwarded
scheme, host and prefix when a reverse proxy sends them, so they stay right behind one.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from geoetl import lifecycle
from geoetl.api.deps import PlatformDep
from geoetl.api.middleware import PREFIX_KEY
from geoetl.api.params import parse_bbox, parse_datetime
from geoetl.api.responses import FastJSONResponse
from geoetl.api.security import caller_levels, get_caller
from geoetl.catalog.documents import STAC_VERSION
from geoetl.catalog.models import SearchRequest, SortKey
from geoetl.errors import InputError, NotFound
from geoetl.limits import check_count, check_filter, loads
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.storage.http import object_response

router = APIRouter(prefix="/stac", tags=["stac"])
GEOJSON = "application/geo+json"
JSON = "application/json"
SCHEMA_JSON = "application/schema+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
MAX_LIMIT = 1000
MAX_OFFSET = 10_000_000
DEFAULT_LIMIT = 10
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#fields",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
    "https://api.stacspec.org/v1.0.0-rc.2/ogcapi-features#filter",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#free-text",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
]
# The fields extension's default set, and what every item keeps when fields are picked.
DEFAULT_FIELDS = (
    "type",
    "stac_version",
    "id",
    "collection",
    "geometry",
    "bbox",
    "links",
    "assets",
    "properties.datetime",
)
IDENTITY_FIELDS = ("type", "stac_version", "id", "collection")

# -- links and audience -----------------------------------------------------------------


def audience(request: Request) -> list[str]:
    """The access levels this caller sees on this deployment."""
    return caller_levels(request)


def root_href(request: Request) -> str:
    """The public URL of the API root.

    Scheme and host come from the request, which :class:`~geoetl.api.middleware.
    EdgeMiddleware` rewrote from a trusted proxy's forwarded headers (and stripped of
    anyone else's); the prefix from that proxy, the ASGI root path or GEOETL_ROOT_PATH.
    """
    host = request.headers.get("host") or request.url.netloc
    configured = request.app.state.platform.settings.root_path
    prefix = request.scope.get(PREFIX_KEY) or request.scope.get("root_path") or configured
    return f"{request.url.scheme}://{host}{prefix.rstrip('/')}"


def stac_href(request: Request, path: str = "") -> str:
    """The public URL of ``/stac{path}``."""
    return f"{root_href(request)}/stac{path}"


def _link(rel: str, href: str, media: str = JSON, **extra: Any) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": media, **extra}


def collection_doc(request: Request, doc: dict[str, Any]) -> dict[str, Any]:
    """A stored collection with links for this API."""
    cid = doc["id"]
    base = stac_href(request, f"/collections/{cid}")
    out = {**doc}
    out["links"] = [
        _link("self", base),
        _link("root", stac_href(request)),
        _link("parent", stac_href(request)),
        _link("items", f"{base}/items", GEOJSON),
        _link(QUERYABLES_REL, f"{base}/queryables", SCHEMA_JSON),
    ]
    return out


VersionQuery = Annotated[
    int | None,
    Query(ge=1, le=1_000_000, description="A version of the item (default: the current one)."),
]


def stored_item(
    platform: Platform, request: Request, collection_id: str, item_id: str, version: int | None
) -> dict[str, Any]:
    """The current item, or one version of it (drafts awaiting approval: admins only)."""
    if version is None:
        return platform.catalog.get_item(collection_id, item_id, audience(request))
    return lifecycle.item_version(
        platform,
        collection_id,
        item_id,
        version,
        audience(request),
        drafts=get_caller(request).is_admin,
    )


def item_doc(
    platform: Platform, request: Request, item: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    """A stored item with links for this API and asset hrefs that are URLs.

    Assets are stored as object keys; each is served at
    ``/stac/collections/{c}/items/{i}/assets/{name}`` (range requests, so GDAL reads a
    COG through ``/vsicurl/`` without downloading it). A server path never leaves.
    """
    cid, iid = item["collection"], item["id"]
    doc = {**item, "assets": {k: dict(v) for k, v in item.get("assets", {}).items()}}
    collection = stac_href(request, f"/collections/{cid}")
    pinned = f"?version={version}" if version is not None else ""
    for name, asset in doc["assets"].items():
        if platform.objects.key_of(str(asset.get("href", ""))) is not None:
            asset["href"] = f"{collection}/items/{quote(iid)}/assets/{quote(name)}{pinned}"
    links = [
        _link("self", f"{collection}/items/{iid}{pinned}", GEOJSON),
        _link("root", stac_href(request)),
        _link("collection", collection),
        _link("parent", collection),
    ]
    if doc["properties"].get("geoetl:workflow") == "process_raster":
        tiles = f"{root_href(request)}/raster/collections/{cid}/items/{iid}"
        links.append(_link("tiles", f"{tiles}/WebMercatorQuad/tilejson.json{pinned}"))
    for link in item.get("links", []):
        if link.get("rel") not in ("self", "root", "collection", "parent", "tiles"):
            href = str(link.get("href", ""))
            if href.startswith("/"):  # relative to the API root
                link = {**link, "href": root_href(request) + href}
            links.append(link)
    doc["links"] = links
    return doc


# -- request parsing ----------------------------------------------------------------------


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def encode_token(offset: int) -> str:
    """An opaque page token."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_token(token: str | None) -> int:
    """The offset a page token stands for; InputError for a token we did not make."""
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        if len(padded) > 200:
            raise ValueError
        offset = json.loads(base64.urlsafe_b64decode(padded))["offset"]
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError
        if offset > MAX_OFFSET:
            raise ValueError
        return offset
    except Exception:
        raise InputError(f"token {token!r} is not a page token from this API") from None


class Fields(BaseModel):
    """Fields extension: dotted paths to include and exclude.

    Whether ``include`` was given at all matters: ``{"exclude": [...]}`` keeps the rest of
    the item, ``{"include": null, "exclude": [...]}`` keeps the rest of the default set.
    """

    include: list[str] | None = None
    exclude: list[str] | None = None


class SearchBody(BaseModel):
    """A POST /search body (and the GET parameters, once parsed)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    datetime: str | None = None
    limit: int = DEFAULT_LIMIT
    token: str | None = None
    filter: dict[str, Any] | str | None = None
    filter_lang: Literal["cql2-text", "cql2-json"] | None = Field(default=None, alias="filter-lang")
    sortby: list[SortKey] | None = None
    fields: Fields | None = None

    @field_validator("limit", mode="after")
    @classmethod
    def _clamp(cls, value: int) -> int:
        # Larger pages are clamped (the STAC API spec); numbers no page size could be
        # are a mistake worth a 400, as in GET.
        if value > 2**31:
            raise ValueError(f"limit {value} is out of range; pages hold at most {MAX_LIMIT}")
        return min(value, MAX_LIMIT)

    @field_validator("collections", "ids", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        # Some clients send a single id as a plain string.
        return [value] if isinstance(value, str) else value

    def check_limits(self, settings: Settings) -> None:
        """InputError when the search asks for more than this deployment allows."""
        check_count(
            "sortby keys", len(self.sortby or []), settings.max_sort_keys, "GEOETL_MAX_SORT_KEYS"
        )
        if self.fields is not None:
            given = len(self.fields.include or []) + len(self.fields.exclude or [])
            check_count("fields", given, settings.max_fields_keys, "GEOETL_MAX_FIELDS_KEYS")
        for name, values in (("collections", self.collections), ("ids", self.ids)):
            check_count(name, len(values or []), MAX_LIMIT, "a fixed limit")
        if self.filter is not None:
            check_filter(
                self.filter,
                max_depth=settings.max_filter_depth,
                max_terms=settings.max_filter_terms,
            )
        if self.intersects is not None:
            check_filter(self.intersects, max_depth=settings.max_filter_depth, max_terms=100_000)

    def to_request(self, levels: list[str]) -> SearchRequest:
        """The catalog's search request; InputError for anything malformed."""
        if self.limit < 1:
            raise InputError(f"limit must be at least 1, got {self.limit}")
        if self.bbox is not None and self.intersects is not None:
            raise InputError("give bbox or intersects, not both")
        if self.intersects is not None and "type" not in self.intersects:
            raise InputError("intersects must be a GeoJSON geometry object")
        start, end = parse_datetime(self.datetime)
        try:
            return SearchRequest(
                collections=self.collections or None,
                ids=self.ids or None,
                bbox=parse_bbox(self.bbox) if self.bbox is not None else None,
                intersects=self.intersects,
                start=start,
                end=end,
                filter=self.filter,
                filter_lang=self.filter_lang,
                sortby=self.sortby,
                access_levels=levels,
                limit=min(self.limit, MAX_LIMIT),
                offset=decode_token(self.token),
            )
        except ValidationError as exc:
            raise InputError(_validation_message(exc)) from None

    def query_params(self) -> dict[str, str]:
        """The search as GET parameters (for next/prev links)."""
        params: dict[str, str] = {}
        if self.collections:
            params["collections"] = ",".join(self.collections)
        if self.ids:
            params["ids"] = ",".join(self.ids)
        if self.bbox is not None:
            params["bbox"] = ",".join(_num(v) for v in self.bbox)
        if self.intersects is not None:
            params["intersects"] = json.dumps(self.intersects)
        if self.datetime:
            params["datetime"] = self.datetime
        if self.filter is not None:
            params["filter"] = (
                self.filter if isinstance(self.filter, str) else json.dumps(self.filter)
            )
            params["filter-lang"] = self.filter_lang or (
                "cql2-text" if isinstance(self.filter, str) else "cql2-json"
            )
        if self.sortby:
            params["sortby"] = ",".join(
                ("-" if k.direction == "desc" else "+") + k.field for k in self.sortby
            )
        if self.fields is not None:
            params["fields"] = ",".join(
                (self.fields.include or []) + [f"-{f}" for f in self.fields.exclude or []]
            )
        params["limit"] = str(self.limit)
        return params


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _validation_message(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    ]
    return "invalid search: " + "; ".join(problems)


def body_from_query(request: Request, collection_id: str | None = None) -> SearchBody:
    """A SearchBody from a GET request's query parameters."""
    return body_from_query_params(request.query_params, collection_id)


def body_from_query_params(q: Mapping[str, str], collection_id: str | None = None) -> SearchBody:
    """A SearchBody from GET query parameters; InputError for malformed values."""
    bbox = None
    if q.get("bbox"):
        try:
            bbox = [float(v) for v in q["bbox"].split(",")]
        except ValueError:
            raise InputError(f"bbox {q['bbox']!r} must be comma-separated numbers") from None
    intersects = None
    if q.get("intersects"):
        intersects = loads(q["intersects"], what="intersects")
        if not isinstance(intersects, dict):
            raise InputError("intersects must be a GeoJSON geometry object")
    try:
        raw_limit = q.get("limit", str(DEFAULT_LIMIT))
        if len(raw_limit) > 12:
            raise ValueError
        limit = int(raw_limit)
    except ValueError:
        raise InputError(f"limit {q.get('limit')!r} must be an integer") from None
    sortby = None
    if q.get("sortby"):
        sortby = [
            SortKey(field=f.lstrip("+-"), direction="desc" if f.startswith("-") else "asc")
            for f in _csv(q["sortby"]) or []
        ]
    fields = None
    if "fields" in q:
        names = _csv(q["fields"]) or []
        include = [f.lstrip("+") for f in names if not f.startswith("-")]
        exclude = [f[1:] for f in names if f.startswith("-")]
        # Only exclusions ("-geometry") keep the rest of the item, as POST without include.
        fields = (
            Fields(include=include or None, exclude=exclude) if include else Fields(exclude=exclude)
        )
    lang = q.get("filter-lang")
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InputError(f"filter-lang {lang!r} is not supported; use cql2-text or cql2-json")
    return SearchBody(
        collections=[collection_id] if collection_id else _csv(q.get("collections")),
        ids=_csv(q.get("ids")),
        bbox=bbox,
        intersects=intersects,
        datetime=q.get("datetime"),
        limit=limit,
        token=q.get("token"),
        filter=q.get("filter"),
        filter_lang=lang or ("cql2-text" if q.get("filter") else None),
        sortby=sortby,
        fields=fields,
    )


# -- fields extension ---------------------------------------------------------------------


def _pick(doc: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    node: Any = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _put(doc: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        doc = doc.setdefault(part, {})
    doc[path[-1]] = value


def _drop(doc: dict[str, Any], path: list[str]) -> None:
    for part in path[:-1]:
        doc = doc.get(part)  # type: ignore[assignment]
        if not isinstance(doc, dict):
            return
    doc.pop(path[-1], None)


def apply_fields(item: dict[str, Any], fields: Fields | None) -> dict[str, Any]:
    """The item with the fields asked for, by the fields extension's rules.

    No ``fields``: the whole item. ``include``: those fields plus what identifies the
    item (type, version, id, collection). Only ``exclude``: the whole item without those
    (or the default set without them when ``include`` was given empty). Neither: the
    default set. A field both included and excluded is included.
    """
    if fields is None:
        return item
    include = fields.include or []
    exclude = fields.exclude or []
    if include:
        keep: tuple[str, ...] = (*IDENTITY_FIELDS, *include)
    elif exclude and "include" not in fields.model_fields_set:
        keep = ()
    else:
        keep = DEFAULT_FIELDS
    if keep:
        out: dict[str, Any] = {}
        for name in keep:
            found, value = _pick(item, name.split("."))
            if found:
                _put(out, name.split("."), copy.deepcopy(value))
    else:
        out = copy.deepcopy(item)
    for name in exclude:
        if name in include or any(i.startswith(f"{name}.") for i in include):
            continue
        _drop(out, name.split("."))
    return out


# -- responses ----------------------------------------------------------------------------


def item_collection(
    platform: Platform,
    request: Request,
    body: SearchBody,
    *,
    self_href: str,
    method: Literal["GET", "POST"],
) -> JSONResponse:
    """Run a search and answer with a GeoJSON FeatureCollection and its paging links."""
    body.check_limits(platform.settings)
    search = body.to_request(audience(request))
    # One row more than the page says whether another page follows, without counting
    # every match (a count can cost more than the page on a large catalog).
    probe = search.model_copy(update={"limit": search.limit + 1, "count": False})
    items, _ = platform.catalog.search(probe)
    more = len(items) > search.limit
    items = items[: search.limit]
    matched = None if more else search.offset + len(items)
    features = [apply_fields(item_doc(platform, request, i), body.fields) for i in items]
    links = [_link("root", stac_href(request))]
    query = body.query_params()
    if method == "GET":
        asked = f"{self_href}?{request.url.query}" if request.url.query else self_href
        links.append(_link("self", asked, GEOJSON))
    else:
        links.append(_link("self", self_href, GEOJSON))
    pages = []
    if more:
        pages.append(("next", search.offset + search.limit))
    if search.offset > 0:
        pages.append(("prev", max(0, search.offset - search.limit)))
    for rel, offset in pages:
        token = encode_token(offset)
        if method == "GET":
            links.append(_link(rel, _with_query(self_href, {**query, "token": token}), GEOJSON))
        else:
            payload = body.model_dump(by_alias=True, exclude_none=True)
            payload["token"] = token
            links.append(_link(rel, self_href, GEOJSON, method="POST", body=payload, merge=False))
    content: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": features,
        "links": links,
        "numberReturned": len(features),
    }
    if matched is not None:
        content["numberMatched"] = matched
    return FastJSONResponse(content, media_type=GEOJSON)


def _with_query(href: str, params: dict[str, str | None]) -> str:
    clean = {k: v for k, v in params.items() if v is not None}
    return f"{href}?{urlencode(clean)}" if clean else href


def queryables_doc(request: Request, platform: Platform, collection_id: str | None) -> JSONResponse:
    """JSON Schema of what filters may name: core fields plus the items' properties."""
    path = f"/collections/{collection_id}/queryables" if collection_id else "/queryables"
    props: dict[str, Any] = {
        "id": {"title": "Item id", "type": "string"},
        "collection": {"title": "Collection id", "type": "string"},
        "datetime": {
            "title": "Acquisition or processing time",
            "type": "string",
            "format": "date-time",
        },
        "geometry": {"title": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"},
    }
    for name, kind in sorted(
        platform.catalog.property_types(collection_id, audience(request)).items()
    ):
        if name not in props:
            props[name] = {"type": kind}
    doc = {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": stac_href(request, path),
        "type": "object",
        "title": f"Queryables of {collection_id}" if collection_id else "Queryables",
        "properties": props,
        "additionalProperties": True,
    }
    return FastJSONResponse(doc, media_type=SCHEMA_JSON)


# -- routes -------------------------------------------------------------------------------


@router.get("", name="stac_landing")
def landing(request: Request, platform: PlatformDep) -> dict[str, Any]:
    """The STAC API landing page (a STAC Catalog with conformance and links)."""
    links = [
        _link("self", stac_href(request)),
        _link("root", stac_href(request)),
        _link("conformance", stac_href(request, "/conformance")),
        _link("data", stac_href(request, "/collections")),
        _link("search", stac_href(request, "/search"), GEOJSON, method="GET"),
        _link("search", stac_href(request, "/search"), GEOJSON, method="POST"),
        _link(QUERYABLES_REL, stac_href(request, "/queryables"), SCHEMA_JSON),
        _link("service-desc", stac_href(request, "/api"), OPENAPI),
        _link("service-doc", f"{root_href(request)}/docs", "text/html"),
    ]
    for doc in platform.catalog.list_collections(audience(request)):
        links.append(_link("child", stac_href(request, f"/collections/{doc['id']}")))
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "geoetl",
        "title": "geoetl catalog",
        "description": "Everything geoetl has published: rasters, vector datasets.",
        "conformsTo": CONFORMANCE,
        "links": links,
    }


@router.get("/api", name="stac_openapi")
def openapi(request: Request) -> JSONResponse:
    """The OpenAPI description of the whole API (the landing page's service-desc)."""
    return FastJSONResponse(request.app.openapi(), media_type=OPENAPI)


@router.get("/conformance", name="stac_conformance")
def conformance() -> dict[str, list[str]]:
    """Conformance classes this API implements."""
    return {"conformsTo": CONFORMANCE}


@router.get("/collections", name="stac_collections")
def collections(request: Request, platform: PlatformDep, q: str | None = None) -> dict[str, Any]:
    """Every collection this audience may see (``q``: free-text filter)."""
    docs = platform.catalog.list_collections(audience(request), _csv(q))
    return {
        "collections": [collection_doc(request, d) for d in docs],
        "links": [
            _link("self", stac_href(request, "/collections")),
            _link("root", stac_href(request)),
            _link("parent", stac_href(request)),
        ],
        "numberMatched": len(docs),
        "numberReturned": len(docs),
    }


@router.get("/collections/{collection_id}", name="get_collection")
def get_collection(collection_id: str, request: Request, platform: PlatformDep) -> dict[str, Any]:
    """A STAC collection."""
    doc = platform.catalog.get_collection(collection_id, audience(request))
    return collection_doc(request, doc)


@router.get("/collections/{collection_id}/queryables", name="stac_collection_queryables")
def collection_queryables(
    collection_id: str, request: Request, platform: PlatformDep
) -> JSONResponse:
    """What filters on this collection's items may name."""
    platform.catalog.get_collection(collection_id, audience(request))
    return queryables_doc(request, platform, collection_id)


@router.get("/collections/{collection_id}/items", name="stac_items")
def items(collection_id: str, request: Request, platform: PlatformDep) -> JSONResponse:
    """A collection's items: bbox, datetime, limit, token, filter, sortby, fields."""
    platform.catalog.get_collection(collection_id, audience(request))
    body = body_from_query(request, collection_id)
    href = stac_href(request, f"/collections/{collection_id}/items")
    return item_collection(platform, request, body, self_href=href, method="GET")


@router.get("/collections/{collection_id}/items/{item_id}", name="get_item")
def get_item(
    collection_id: str,
    item_id: str,
    request: Request,
    platform: PlatformDep,
    version: VersionQuery = None,
) -> JSONResponse:
    """A STAC item: its current version, or ``?version=N``."""
    item = stored_item(platform, request, collection_id, item_id, version)
    return FastJSONResponse(item_doc(platform, request, item, version), media_type=GEOJSON)


@router.get("/collections/{collection_id}/items/{item_id}/assets/{asset}", name="get_asset")
def get_asset(
    collection_id: str,
    item_id: str,
    asset: str,
    request: Request,
    platform: PlatformDep,
    version: VersionQuery = None,
) -> Response:
    """An asset's bytes (range requests honoured), for whoever may see the item."""
    item = stored_item(platform, request, collection_id, item_id, version)
    found = item.get("assets", {}).get(asset)
    key = platform.objects.key_of(str(found.get("href", ""))) if found else None
    if key is None or found is None:
        raise NotFound(f"item {item_id} has no asset {asset!r} served here")
    objects = platform.objects
    missing = NotFound(f"the file of asset {asset!r} of {item_id} is missing")
    if objects.is_local and not Path(objects.gdal_path(key)).is_file():
        raise missing
    media_type = str(found.get("type") or "application/octet-stream")
    try:
        # Read where it is stored: a folder's file, or ranged reads from S3/Azure.
        return object_response(objects, key, request, media_type)
    except NotFound:
        raise missing from None


@router.get("/queryables", name="stac_queryables")
def queryables(request: Request, platform: PlatformDep) -> JSONResponse:
    """What search filters may name, across collections."""
    return queryables_doc(request, platform, None)


@router.get("/search", name="stac_search")
def search_get(request: Request, platform: PlatformDep) -> JSONResponse:
    """Item search with query parameters."""
    body = body_from_query(request)
    return item_collection(
        platform, request, body, self_href=stac_href(request, "/search"), method="GET"
    )


@router.post("/search", name="stac_search_post")
async def search_post(request: Request, platform: PlatformDep) -> JSONResponse:
    """Item search with a JSON body (the same fields as GET, JSON-typed)."""
    raw = loads(await request.body(), what="the search body")
    if not isinstance(raw, dict):
        raise InputError("the search body must be a JSON object")
    if "fields" in raw and raw["fields"] is None:
        raise InputError("fields must be an object with include and/or exclude lists")
    try:
        body = SearchBody.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_validation_message(exc)) from None
    return await run_in_threadpool(
        item_collection,
        platform,
        request,
        body,
        self_href=stac_href(request, "/search"),
        method="POST",
    )
