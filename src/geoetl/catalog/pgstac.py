"""The STAC catalog on pgSTAC: what stac-fastapi-pgstac and titiler-pgstac read, unmodified.

Items and collections are written only through pgSTAC's own functions
(``create_collection``, ``update_collection``, ``upsert_items``, ``delete_item``,
``delete_collection``), so every write is an upsert and a retried task writes the same
rows again. Searches run on pgSTAC's ``search()``; this module turns a
:class:`~geoetl.catalog.models.SearchRequest` into its JSON body:

- the CQL2 filter (text or JSON) is parsed by :func:`geoetl.cql2.parse` and rewritten
  as cql2-json, checked here so a bad filter is an InputError, never a database error;
- ``start``/``end`` become comparisons on pgSTAC's ``end_datetime``/``datetime``
  columns (the same overlap rule as :class:`~geoetl.catalog.store.SqlCatalog`);
- a bbox crossing the antimeridian becomes two ``s_intersects`` OR-ed (pgSTAC would
  read ``minx > maxx`` as the box the other way round the globe);
- access levels are an ``in`` filter on the item property ``geoetl:access_level``
  (registered as a string queryable with a B-tree index, so it is cheap);
- the order is ``sortby`` (default newest first), then collection and id ascending, as
  SqlCatalog orders; number properties are registered as number queryables when items
  arrive, so they sort as numbers rather than as text;
- ``offset``: pgSTAC pages with tokens naming the last item of a page. The item just
  before the offset is found with pgSTAC's ``search_rows`` over the same where and order,
  and ``search()`` continues after it with a ``next:`` token, in one statement;
- ``count`` turns pgSTAC's context on for that search (exact count, no cached stats).

Access levels live in the documents (``geoetl:access_level`` in each item's properties
and in each collection), so pgSTAC's other readers see them too; a document without one
is seen only by callers with no audience restriction.

Partitioning (pgSTAC's ``partition_trunc``, chosen when a collection is created):
system collections get none (one partition each) — they hold one item per published
dataset, thousands rather than millions, with datetimes scattered over decades, and
yearly partitions would be many near-empty tables, each with its own indexes and a cost
in every query plan. Other collections are partitioned by ``year``: time series grow
there, and a date-bounded or newest-first search then touches only the years it needs,
while even a century of data stays around a hundred partitions. ``month`` would multiply
the partitions by twelve for no gain at geoetl's volumes.

Differences from SqlCatalog a caller can notice: pgSTAC drops properties whose value is
null; the bbox search tests the item geometry (PostGIS ``st_intersects``), not only its
bbox; a collection document gains ``geoetl:access_level`` when the caller's lacked it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geoetl.catalog.documents import (
    item_row,
    items_extent,
    json_type,
    new_collection,
    searchable_text,
    widened_extent,
)
from geoetl.catalog.models import ACCESS_ORDER, SYSTEM_COLLECTIONS, SearchRequest
from geoetl.errors import Conflict, InputError, NotFound

if TYPE_CHECKING:
    from pygeofilter import ast

LEVEL = "geoetl:access_level"
# Partitioning of collections other than the system ones (see the module docstring).
DEFAULT_PARTITION = "year"
# Sort keys that are pgSTAC columns, under the names SearchRequest may give them.
SORT_COLUMNS = {
    "id": "id",
    "properties.id": "id",
    "collection": "collection",
    "properties.collection": "collection",
    "datetime": "datetime",
    "properties.datetime": "datetime",
}
COMPARISON_OPS = {"Equal": "=", "NotEqual": "<>", "LessThan": "<", "LessEqual": "<="}
COMPARISON_OPS |= {"GreaterThan": ">", "GreaterEqual": ">="}
FLIPPED = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
# pgSTAC's extent and search helpers are unqualified inside the SQL it generates.
# A search reads a handful of rows: parallel workers cost more to start than they save.
_SESSION = (
    "SELECT set_config('search_path', 'pgstac, public', true), "
    "set_config('pgstac.readonly', %s, true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)
_VISIBLE_EXTENTS = """
SELECT collection,
       min((content->'bbox'->>0)::float8) AS minx,
       min((content->'bbox'->>1)::float8) AS miny,
       max((content->'bbox'->>(jsonb_array_length(content->'bbox') / 2))::float8) AS maxx,
       max((content->'bbox'->>(jsonb_array_length(content->'bbox') / 2 + 1))::float8) AS maxy,
       min(datetime) AS start, max(end_datetime) AS "end"
FROM pgstac.items
WHERE collection = ANY(%s) AND to_text(content->'properties'->'geoetl:access_level') = ANY(%s)
GROUP BY collection
"""
_HIDDEN = """
SELECT DISTINCT collection FROM pgstac.items
WHERE collection = ANY(%s)
  AND (to_text(content->'properties'->'geoetl:access_level') = ANY(%s)
       OR to_text(content->'properties'->'geoetl:access_level') IS NULL)
"""
# The page after the item at position %(offset)s of the search, in one statement.
_SEARCH_AFTER = """
SELECT pgstac.search(%(body)s::jsonb || jsonb_build_object(
           'token', 'next:' || pgstac.page_token(a.collection, a.id)))
FROM (
    SELECT r.collection, r.id
    FROM pgstac.search_rows(
        pgstac.stac_search_to_where(%(body)s::jsonb),
        pgstac.sort_sqlorderby(%(body)s::jsonb, FALSE, '{collection,id}',
                               pgstac.to_text_array(%(body)s::jsonb->'collections')),
        NULL,
        %(offset)s
    ) WITH ORDINALITY AS r(id, geometry, collection, datetime, end_datetime, content,
                           private, n)
    WHERE r.n = %(offset)s
) a
"""


def _iso(value: datetime | date) -> str:
    """A timestamp as STAC writes it (UTC, ``Z``)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _box(minx: float, miny: float, maxx: float, maxy: float) -> dict[str, Any]:
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
    return {"type": "Polygon", "coordinates": [ring]}


def _and(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"op": "and", "args": parts}


def _geojson(geometry: dict[str, Any]) -> dict[str, Any]:
    """A plain, valid, non-empty GeoJSON geometry; InputError otherwise (as SqlCatalog)."""
    import shapely
    import shapely.geometry

    from geoetl.cql2 import plain_geojson

    try:
        shape = shapely.geometry.shape(plain_geojson(geometry))
    except Exception as exc:
        raise InputError(f"not a valid GeoJSON geometry: {exc}") from None
    if shape.is_empty:
        raise InputError("the filter geometry is empty")
    mapped: dict[str, Any] = json.loads(shapely.to_geojson(shape))
    return mapped


class Cql2Json:
    """A parsed CQL2 filter rewritten as the cql2-json pgSTAC's ``search()`` reads.

    It accepts what :class:`~geoetl.catalog.filters.ItemSql` accepts, with the same
    InputErrors, so both catalogs refuse the same filters with the same reasons.
    """

    def convert(self, node: ast.Node) -> dict[str, Any]:
        """The cql2-json object for ``node``; InputError for what is not supported."""
        result: dict[str, Any] = self._node(node)
        return result

    def _node(self, node: Any) -> dict[str, Any]:
        from pygeofilter import ast

        from geoetl.catalog.filters import SPATIAL

        if isinstance(node, ast.And | ast.Or):
            op = "and" if isinstance(node, ast.And) else "or"
            return {"op": op, "args": [self._node(node.lhs), self._node(node.rhs)]}
        if isinstance(node, ast.Not):
            return {"op": "not", "args": [self._node(node.sub_node)]}
        if type(node).__name__ in COMPARISON_OPS and isinstance(node, ast.Comparison):
            return self._compare(node.lhs, COMPARISON_OPS[type(node).__name__], node.rhs)
        if isinstance(node, ast.Between):
            inside = {
                "op": "and",
                "args": [
                    self._compare(node.lhs, ">=", node.low),
                    self._compare(node.lhs, "<=", node.high),
                ],
            }
            return {"op": "not", "args": [inside]} if node.not_ else inside
        if isinstance(node, ast.In):
            options = [self._compare(node.lhs, "=", v) for v in node.sub_nodes]
            any_of = options[0] if len(options) == 1 else {"op": "or", "args": options}
            return {"op": "not", "args": [any_of]} if node.not_ else any_of
        if isinstance(node, ast.IsNull):
            test = {"op": "isNull", "args": [self._property(node.lhs)]}
            return {"op": "not", "args": [test]} if node.not_ else test
        if isinstance(node, ast.Like):
            return self._like(node)
        if isinstance(node, ast.BBox):
            return self.spatial("intersects", _box(node.minx, node.miny, node.maxx, node.maxy))
        if type(node) in SPATIAL:
            return self._spatial_node(node, SPATIAL[type(node)])
        raise InputError(
            f"CQL2 operation {type(node).__name__} is not supported; supported are comparisons, "
            "BETWEEN, IN, IS NULL, LIKE, AND/OR/NOT and the spatial functions S_INTERSECTS, "
            "S_WITHIN, S_CONTAINS, S_DISJOINT, S_TOUCHES, S_CROSSES, S_OVERLAPS, S_EQUALS"
        )

    def _property(self, node: Any) -> dict[str, Any]:
        from pygeofilter import ast

        if not isinstance(node, ast.Attribute):
            raise InputError(f"expected a property name, got {node!r}")
        if node.name == "geometry":
            raise InputError("geometry can only be used in spatial functions such as S_INTERSECTS")
        if node.name in ("id", "collection", "datetime"):
            return {"property": node.name}
        return {"property": property_name(node.name)}

    def _compare(self, lhs: Any, op: str, rhs: Any) -> dict[str, Any]:
        from pygeofilter import ast

        if isinstance(rhs, ast.Attribute) and not isinstance(lhs, ast.Attribute):
            lhs, rhs, op = rhs, lhs, FLIPPED.get(op, op)
        if not isinstance(lhs, ast.Attribute):
            raise InputError("a comparison needs a property name on one side")
        if isinstance(rhs, ast.Attribute):
            return {"op": op, "args": [self._property(lhs), self._property(rhs)]}
        if isinstance(rhs, ast.Node):
            raise InputError(f"unsupported value in filter: {rhs!r}")
        prop = self._property(lhs)
        if lhs.name in ("id", "collection"):
            if not isinstance(rhs, str):
                raise InputError(f"{lhs.name} is compared with strings, got {rhs!r}")
            return {"op": op, "args": [prop, rhs]}
        if lhs.name == "datetime":
            if not isinstance(rhs, datetime | date):
                raise InputError("datetime is compared with TIMESTAMP('…') or DATE('…') values")
            return {"op": op, "args": [prop, {"timestamp": _iso(rhs)}]}
        # Other properties hold timestamps as strings: compared as SqlCatalog does.
        value = _iso(rhs) if isinstance(rhs, datetime | date) else rhs
        if not isinstance(value, bool | int | float | str):
            raise InputError(f"unsupported value in filter: {rhs!r}")
        return {"op": op, "args": [prop, value]}

    def _like(self, node: ast.Like) -> dict[str, Any]:
        from pygeofilter import ast

        if not isinstance(node.lhs, ast.Attribute):
            raise InputError("LIKE needs a property name on its left")
        pattern = node.pattern
        escape = node.escapechar or "\\"
        if escape != "\\":  # pgSTAC's LIKE escapes with a backslash
            pattern = pattern.replace("\\", "\\\\").replace(escape, "\\")
        like = {"op": "like", "args": [self._property(node.lhs), pattern]}
        return {"op": "not", "args": [like]} if node.not_ else like

    def _spatial_node(self, node: Any, relation: str) -> dict[str, Any]:
        import shapely.geometry
        from pygeofilter import ast

        from geoetl.cql2 import geometry_literal

        lhs, rhs = node.lhs, node.rhs
        if isinstance(rhs, ast.Attribute):
            lhs, rhs = rhs, lhs
            relation = {"contains": "within", "within": "contains"}.get(relation, relation)
        if not (isinstance(lhs, ast.Attribute) and lhs.name == "geometry"):
            raise InputError("spatial functions compare the item geometry with a literal")
        return self.spatial(relation, shapely.geometry.mapping(geometry_literal(rhs)))

    def spatial(self, relation: str, geometry: dict[str, Any]) -> dict[str, Any]:
        """Items whose geometry has ``relation`` to ``geometry`` (GeoJSON, EPSG:4326)."""
        return {"op": f"s_{relation}", "args": [{"property": "geometry"}, _geojson(geometry)]}


def property_name(name: str) -> str:
    """A property name without its ``properties.`` prefix; InputError if malformed."""
    from geoetl.catalog.filters import PROPERTY_NAME

    if name.startswith("properties."):
        name = name[len("properties.") :]
    if not PROPERTY_NAME.match(name):
        raise InputError(f"{name!r} is not a property name (letters, digits, '_', ':', '.', '-')")
    return name


class PgstacCatalog:
    """Collections and items in pgSTAC (the ``pgstac`` schema of the platform database)."""

    def __init__(
        self,
        engine: Engine,
        partition_trunc: str | None = DEFAULT_PARTITION,
        asset_base: str | None = None,
    ) -> None:
        self.engine = engine
        self.partition_trunc = partition_trunc
        # Other readers of pgSTAC (titiler-pgstac, stac-fastapi-pgstac's clients) open
        # asset hrefs themselves: an object key is stored as the storage URL + key
        # (``file:///…/silver/…``, ``s3://bucket/prefix/silver/…``).
        self.asset_base = asset_base.rstrip("/") if asset_base else None
        # (collection, property) pairs known to be registered as number queryables.
        self._numbers: set[tuple[str, str]] = set()
        self._level_registered = False

    # -- collections ------------------------------------------------------------------

    def ensure_system_collections(self) -> None:
        """Create ``system-rasters`` and ``system-vectors`` if missing (never deleted)."""
        with self._write() as conn:
            self._register_level(conn)
            for cid, description in SYSTEM_COLLECTIONS.items():
                if self._collection(conn, cid) is None:
                    self._create(conn, new_collection(cid, description, "public"), None)

    def upsert_collection(self, collection: dict[str, Any], access_level: str) -> None:
        """Create or replace a collection document."""
        doc = {**collection, LEVEL: access_level}
        with self._write() as conn:
            if self._collection(conn, doc["id"], lock=True) is None:
                self._create(conn, doc, self._partitioning(doc["id"]))
            else:
                conn.exec_driver_sql("SELECT pgstac.update_collection(%s::jsonb)", (_j(doc),))

    def ensure_collection(self, collection_id: str, access_level: str) -> None:
        """Make sure a collection exists (a new one takes ``access_level``)."""
        with self._write() as conn:
            if self._collection(conn, collection_id) is None:
                doc = new_collection(collection_id, f"Collection {collection_id}", access_level)
                self._create(conn, doc, self._partitioning(collection_id))

    def get_collection(
        self, collection_id: str, audience: list[str] | None = None
    ) -> dict[str, Any]:
        """A collection document, or NotFound (also when ``audience`` may not see it)."""
        with self._read() as conn:
            doc = self._collection(conn, collection_id)
            if doc is None or not _may_see(doc.get(LEVEL), audience):
                raise NotFound(f"no collection {collection_id!r}")
            self._visible_extents(conn, [doc], audience)
        return doc

    def list_collections(
        self, audience: list[str] | None = None, q: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every collection ``audience`` may see, by id; ``q`` keeps those matching any term."""
        with self._read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT content FROM pgstac.collections ORDER BY id"
            ).scalars()
            docs = [dict(d) for d in rows if _may_see(d.get(LEVEL), audience)]
            self._visible_extents(conn, docs, audience)
        if q:
            terms = [t.lower() for t in q if t.strip()]
            docs = [d for d in docs if any(t in searchable_text(d) for t in terms)]
        return docs

    def delete_collection(self, collection_id: str) -> None:
        """Delete an empty, non-system collection (Conflict otherwise)."""
        with self._write() as conn:
            if self._collection(conn, collection_id, lock=True) is None:
                raise NotFound(f"no collection {collection_id!r}")
            if collection_id in SYSTEM_COLLECTIONS:
                raise Conflict(f"{collection_id} is a system collection and is never deleted")
            count = conn.exec_driver_sql(
                "SELECT count(*) FROM pgstac.items WHERE collection = %s", (collection_id,)
            ).scalar_one()
            if count:
                raise Conflict(f"collection {collection_id} still has {count} item(s)")
            conn.exec_driver_sql("SELECT pgstac.delete_collection(%s)", (collection_id,))

    # -- items ------------------------------------------------------------------------

    def upsert_item(self, item: dict[str, Any], access_level: str) -> None:
        """Create or replace an item, widening its collection's extent to cover it."""
        self.upsert_items([(item, access_level)])

    def upsert_items(self, items: list[tuple[dict[str, Any], str]]) -> None:
        """Create or replace many items (each with its access level) at once; idempotent."""
        if not items:
            return
        rows = [item_row(item, level) for item, level in items]
        docs: dict[tuple[str, str], dict[str, Any]] = {}
        for (item, level), row in zip(items, rows, strict=True):
            props = {**item.get("properties", {}), LEVEL: level}
            stored = {**item, "properties": props}
            if self.asset_base and "assets" in item:
                stored["assets"] = {k: self._absolute(a) for k, a in item["assets"].items()}
            docs[(row["collection_id"], row["item_id"])] = stored
        with self._write() as conn:
            self._register_level(conn)
            collections: dict[str, dict[str, Any]] = {}
            for cid in sorted({r["collection_id"] for r in rows}):
                # Locked, so two writers widening one extent do not lose either widening.
                doc = self._collection(conn, cid, lock=True)
                if doc is None:
                    raise NotFound(f"no collection {cid!r} for its items")
                collections[cid] = doc
            self._register_numbers(conn, list(docs.values()))
            conn.exec_driver_sql(
                "SELECT pgstac.upsert_items(%s::jsonb)", (_j(list(docs.values())),)
            )
            for cid, doc in collections.items():
                self._widen_extent(conn, doc, [r for r in rows if r["collection_id"] == cid])

    def _absolute(self, asset: dict[str, Any]) -> dict[str, Any]:
        """The asset with a relative href (an object key) made absolute under asset_base."""
        href = str(asset.get("href", ""))
        if not href or "://" in href or href.startswith("/"):
            return asset
        return {**asset, "href": f"{self.asset_base}/{href}"}

    def get_item(
        self, collection_id: str, item_id: str, audience: list[str] | None = None
    ) -> dict[str, Any]:
        """An item document, or NotFound (also when ``audience`` may not see it)."""
        with self._read() as conn:
            item = conn.exec_driver_sql(
                "SELECT pgstac.get_item(%s, %s)", (item_id, collection_id)
            ).scalar()
        if item is None or not _may_see(item.get("properties", {}).get(LEVEL), audience):
            raise NotFound(f"no item {item_id!r} in collection {collection_id!r}")
        return dict(item)

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        """Delete an item; False if there was none."""
        with self._write() as conn:
            found = conn.exec_driver_sql(
                "SELECT 1 FROM pgstac.items WHERE collection = %s AND id = %s",
                (collection_id, item_id),
            ).scalar()
            if not found:
                return False
            conn.exec_driver_sql("SELECT pgstac.delete_item(%s, %s)", (item_id, collection_id))
        return True

    # -- search -----------------------------------------------------------------------

    def search(self, request: SearchRequest) -> tuple[list[dict[str, Any]], int | None]:
        """Items matching ``request`` in a stable order, and how many match (if ``count``).

        Sorted by ``request.sortby`` (default: newest first), then by collection and id,
        so pages never overlap or skip.
        """
        if request.access_levels is not None and not request.access_levels:
            return [], 0 if request.count else None
        body = self.search_body(request)
        with self._read() as conn:
            result = self._run_search(conn, body, request.offset)
            if result is None:  # the offset is past the last match
                if not request.count:
                    return [], None
                result = self._run_search(conn, {**body, "limit": 1}, 0)
                assert result is not None
                return [], int(result.get("numberMatched", 0))
        items = [dict(f) for f in result.get("features", [])]
        total = result.get("numberMatched") if request.count else None
        return items, None if total is None else int(total)

    def search_body(self, request: SearchRequest) -> dict[str, Any]:
        """The JSON body pgSTAC's ``search()`` takes for ``request`` (InputError if invalid)."""
        body: dict[str, Any] = {"limit": request.limit}
        if request.collections:
            body["collections"] = request.collections
        if request.ids:
            body["ids"] = request.ids
        converter = Cql2Json()
        parts: list[dict[str, Any]] = []
        if request.access_levels is not None:
            parts.append({"op": "in", "args": [{"property": LEVEL}, list(request.access_levels)]})
        if request.start or request.end:
            # pgSTAC keeps an item whose [datetime, end_datetime] overlaps the closed
            # interval, as SqlCatalog does; "datetime" costs it less than a filter would.
            start = _iso(request.start) if request.start else ".."
            end = _iso(request.end) if request.end else ".."
            body["datetime"] = f"{start}/{end}"
        if request.bbox:
            minx, miny, maxx, maxy = request.bbox
            if minx > maxx:  # crosses the antimeridian: the two halves
                halves = [_box(minx, miny, 180.0, maxy), _box(-180.0, miny, maxx, maxy)]
                parts.append(
                    {"op": "or", "args": [converter.spatial("intersects", h) for h in halves]}
                )
            else:
                body["bbox"] = list(request.bbox)
        if request.intersects:
            body["intersects"] = _geojson(request.intersects)
        if request.filter is not None:
            from geoetl.catalog.filters import parse_cql2

            parts.append(converter.convert(parse_cql2(request.filter, request.filter_lang)))
        where = _and(parts)
        if where is not None:
            body["filter"] = where
            body["filter-lang"] = "cql2-json"
        sortby = [
            {"field": self._sort_field(k.field), "direction": k.direction}
            for k in request.sortby or []
        ] or [{"field": "datetime", "direction": "desc"}]
        named = {k["field"] for k in sortby}
        sortby += [{"field": f, "direction": "asc"} for f in ("collection", "id") if f not in named]
        body["sortby"] = sortby
        # Counting is exact and never served from pgSTAC's cached statistics.
        context = "on" if request.count else "off"
        body["conf"] = {"context": context, "context_stats_ttl": "0 seconds"}
        return body

    def property_types(
        self, collection_id: str | None, audience: list[str] | None = None, sample: int = 500
    ) -> dict[str, str]:
        """Item property names and JSON types, from the newest ``sample`` items."""
        request = SearchRequest(
            collections=[collection_id] if collection_id is not None else None,
            access_levels=audience,
            limit=min(sample, 10_000),
            count=False,
        )
        body = self.search_body(request)
        body["sortby"] = [{"field": "datetime", "direction": "desc"}]
        body["fields"] = {"include": ["properties"], "exclude": []}
        if audience is not None and not audience:
            return {}
        types: dict[str, str] = {}
        with self._read() as conn:
            result = self._run_search(conn, body, 0) or {}
        for item in result.get("features", []):
            for name, value in (item.get("properties") or {}).items():
                if name not in types and value is not None:
                    types[name] = json_type(value)
        return types

    # -- internals --------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            # Read-only: pgSTAC's search() then keeps no statistics of its own.
            conn.exec_driver_sql(_SESSION, ("true",))
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(_SESSION, ("false",))
            yield conn

    def _run_search(
        self, conn: Connection, body: dict[str, Any], offset: int
    ) -> dict[str, Any] | None:
        """The FeatureCollection pgSTAC answers, or None when ``offset`` is past the end."""
        try:
            if offset == 0:
                result = conn.exec_driver_sql("SELECT pgstac.search(%s::jsonb)", (_j(body),))
            else:
                params = {"body": _j(body), "offset": offset}
                result = conn.exec_driver_sql(_SEARCH_AFTER, params)
            answer = result.scalar()
        except sa.exc.DBAPIError as exc:
            raise _input_error(exc) from None
        return None if answer is None else dict(answer)

    def _sort_field(self, field: str) -> str:
        if field in SORT_COLUMNS:
            return SORT_COLUMNS[field]
        return property_name(field)

    def _partitioning(self, collection_id: str) -> str | None:
        return None if collection_id in SYSTEM_COLLECTIONS else self.partition_trunc

    def _collection(
        self, conn: Connection, cid: str, *, lock: bool = False
    ) -> dict[str, Any] | None:
        sql = "SELECT content FROM pgstac.collections WHERE id = %s"
        doc = conn.exec_driver_sql(sql + (" FOR UPDATE" if lock else ""), (cid,)).scalar()
        return None if doc is None else dict(doc)

    def _create(self, conn: Connection, doc: dict[str, Any], partition: str | None) -> None:
        conn.exec_driver_sql("SELECT pgstac.create_collection(%s::jsonb)", (_j(doc),))
        if partition is not None:
            # pgSTAC's documented switch; on a collection without items it only records
            # how the items table will be partitioned.
            conn.exec_driver_sql(
                "UPDATE pgstac.collections SET partition_trunc = %s WHERE id = %s",
                (partition, doc["id"]),
            )

    def _register_level(self, conn: Connection) -> None:
        """``geoetl:access_level`` as an indexed string queryable (once per database)."""
        if self._level_registered:
            return
        known = conn.exec_driver_sql(
            "SELECT 1 FROM pgstac.queryables WHERE name = %s AND collection_ids IS NULL",
            (LEVEL,),
        ).scalar()
        if not known:
            definition = {"title": "geoetl access level", "type": "string"}
            definition["enum"] = list(ACCESS_ORDER)  # type: ignore[assignment]
            conn.exec_driver_sql(
                "SELECT pgstac.upsert_queryable(%s, %s::jsonb, 'to_text', 'BTREE')",
                (LEVEL, _j(definition)),
            )
        self._level_registered = True

    def _register_numbers(self, conn: Connection, items: list[dict[str, Any]]) -> None:
        """Register number properties as number queryables of their collection.

        pgSTAC reads an unregistered property as text when it sorts, so ``sortby=cloud``
        would put 100 before 30; registered, it is read with ``to_float``.
        """
        seen = {
            (item["collection"], name)
            for item in items
            for name, value in (item.get("properties") or {}).items()
            if isinstance(value, int | float)
            and not isinstance(value, bool)
            and name not in ("datetime", "start_datetime", "end_datetime")
        } - self._numbers
        if not seen:
            return
        rows = conn.exec_driver_sql(
            "SELECT name, unnest(coalesce(collection_ids, ARRAY[NULL]::text[])) "
            "FROM pgstac.queryables WHERE name = ANY(%s)",
            (sorted({name for _, name in seen}),),
        ).all()
        registered = {(cid, name) for name, cid in rows}
        for cid, name in sorted(seen):
            if (cid, name) not in registered and (None, name) not in registered:
                conn.exec_driver_sql(
                    "SELECT pgstac.upsert_queryable(%s, %s::jsonb, NULL, NULL, ARRAY[%s])",
                    (name, _j({"type": "number"}), cid),
                )
            self._numbers.add((cid, name))

    def _visible_extents(
        self, conn: Connection, docs: list[dict[str, Any]], audience: list[str] | None
    ) -> None:
        # A stored extent covers every item; a reader who may not see some of them gets
        # the extent of the ones it may see, so hidden items leave no trace in it.
        if audience is None or not docs:
            return
        ids = [d["id"] for d in docs]
        others = [level for level in ACCESS_ORDER if level not in audience]
        recompute = set(conn.exec_driver_sql(_HIDDEN, (ids, others)).scalars())
        if not recompute:
            return
        rows = {
            r.collection: r
            for r in conn.exec_driver_sql(_VISIBLE_EXTENTS, (sorted(recompute), list(audience)))
        }
        for doc in docs:
            if doc["id"] in recompute:
                r = rows.get(doc["id"])
                doc["extent"] = (
                    items_extent(None, None, None)
                    if r is None
                    else items_extent((r.minx, r.miny, r.maxx, r.maxy), _iso(r.start), _iso(r.end))
                )

    def _widen_extent(
        self, conn: Connection, doc: dict[str, Any], rows: list[dict[str, Any]]
    ) -> None:
        extent = widened_extent(doc, rows)
        if extent != doc.get("extent"):
            doc["extent"] = extent
            conn.exec_driver_sql("SELECT pgstac.update_collection(%s::jsonb)", (_j(doc),))


def _may_see(level: Any, audience: list[str] | None) -> bool:
    return audience is None or level in audience


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _input_error(exc: sa.exc.DBAPIError) -> Exception:
    """InputError for what pgSTAC refused in a search (a bad filter); others unchanged."""
    code = getattr(exc.orig, "sqlstate", None) or ""
    if code.startswith("22") or code in ("P0001", "42883"):
        message = str(getattr(exc.orig, "diag", None) and exc.orig.diag.message_primary)  # type: ignore[union-attr]
        return InputError(f"the search cannot be run: {message}")
    return exc
