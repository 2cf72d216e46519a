"""The STAC catalog on pgSTAC: what stac-fastapi-pgstac and titiler-pgstac read, unmodified.

Items and collections are written only through pgSTAC's own functions
(``create_collection``, ``update_collection``, ``upsert_items``, ``delete_item``,
``delete_collection``), so every write is an upsert and a retried task writes the same
rows again.

Searches read pgSTAC's ``items`` table directly, as one SQL statement built from a
:class:`~geoetl.catalog.models.SearchRequest` by the catalogs' one CQL2 translator
(:class:`~geoetl.catalog.filters.ItemSql` over :data:`PGSTAC_ITEMS`), and the rows are
hydrated in Python with pypgstac's ``hydrate`` against each item's base item
(``collection_base_item``), as stac-fastapi-pgstac does with ``nohydrate``. The
documents are the ones pgSTAC's ``search()`` answers (a test compares them), at a
fraction of its cost: ``search()`` spends 15 to 18 ms on this project's machine on
translating its JSON, an ``EXPLAIN`` over every partition to choose datetime chunks and
``content_hydrate`` in PL/pgSQL, before any row is read.

- the CQL2 filter (text or JSON) is parsed by :func:`geoetl.cql2.parse`; properties are
  ``jsonb_extract_path`` of the item's content, compared as jsonb (numbers as numbers);
- ``start``/``end`` keep items whose [``datetime``, ``end_datetime``] overlaps them, on
  pgSTAC's indexed columns (partitions outside the interval are pruned);
- ``bbox`` and ``intersects`` are ``ST_Intersects`` on the item geometry (its GiST index);
  a bbox crossing the antimeridian is its two halves;
- access levels are ``= ANY`` of an array on the item property ``geoetl:access_level``;
- every value above (and limit, offset) is a named parameter, and so is every literal
  of the filter and the geometry (``cql0``, ``cql1``, … in the order the translator
  meets them): searches giving the same fields, sort keys and filter structure share
  one statement text (:func:`_shape` and :func:`~geoetl.catalog.filters.statement_shape`),
  compiled once and kept;
- the order is ``sortby`` (default newest first), then collection and id ascending, as
  SqlCatalog orders; ``offset`` and ``limit`` page it. A newest-first search with no
  bbox, geometry, interval or ids walks the partitions' ``datetime`` indexes newest
  first and stops at the page (the planner, which cannot estimate how many items a
  property filter keeps, would otherwise read and sort every item);
- ``count`` counts the matches with the same where clause.

Access levels live in the documents (``geoetl:access_level`` in each item's properties
and in each collection), so pgSTAC's other readers see them too; a document without one
is seen only by callers with no audience restriction.

Partitioning (pgSTAC's ``partition_trunc``, chosen when a collection is created):
pgSTAC always keeps one table per collection; ``GEOETL_PGSTAC_PARTITION`` (default
``none``) may split user collections further by ``year`` or ``month`` of their datetime.
System collections are never split (one item per dataset, datetimes over decades).
Every partition costs every search that the datetime cannot prune (a bbox, a property
filter) planning time and an index probe: 10 collections of 5 years of items are 50
partitions, and a bbox search on them cost 12 ms in-process against 6 ms on 10
(``docs/benchmarks.md``). Within a collection the datetime index serves date-bounded and
newest-first searches; yearly partitions pay off only for collections of many millions
of items.

Differences from SqlCatalog a caller can notice: pgSTAC drops properties whose value is
null; the bbox search tests the item geometry (PostGIS ``st_intersects``), not only its
bbox; a collection document gains ``geoetl:access_level`` when the caller's lacked it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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
from geoetl.catalog.tables import POSTGIS_SCHEMA
from geoetl.engine.db import SYNCHRONOUS_COMMIT
from geoetl.errors import Conflict, NotFound

if TYPE_CHECKING:
    from geoetl.catalog.filters import ItemSql, Literals

LEVEL = "geoetl:access_level"
# Datetime partitioning of collections other than the system ones (module docstring).
DEFAULT_PARTITION: str | None = None
# pgSTAC's items table as searches read it (pgSTAC creates and migrates it).
ITEMS = sa.Table(
    "items",
    sa.MetaData(),
    sa.Column("id", sa.Text),
    sa.Column("geometry", sa.types.NullType),
    sa.Column("collection", sa.Text),
    sa.Column("datetime", sa.DateTime(timezone=True)),
    sa.Column("end_datetime", sa.DateTime(timezone=True)),
    sa.Column("content", JSONB),
    schema="pgstac",
)
# pgSTAC's extent and search helpers are unqualified inside the SQL it generates.
# A search reads a handful of rows: parallel workers cost more to start than they save.
_SESSION = (
    "SELECT set_config('search_path', 'pgstac, public', true), "
    "set_config('pgstac.readonly', %s, true), "
    "set_config('max_parallel_workers_per_gather', '0', true), "
    "set_config('enable_sort', %s, true)"
)
# A search's statement runs without parallel workers even outside a transaction that
# set ``max_parallel_workers_per_gather``: a parallel-unsafe function anywhere in a
# statement (``set_config`` is one) keeps the planner from parallel plans. Starting the
# workers of a Gather costs about 20 ms here, for a search that reads a few index pages
# in 1 ms. Evaluated once per returned row; the setting it makes ends with the statement.
_SERIAL = sa.func.set_config("max_parallel_workers_per_gather", "0", True)
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


def _iso(value: datetime | date) -> str:
    """A timestamp as STAC writes it (UTC, ``Z``)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_TEXTS = ARRAY(sa.Text)
_INSTANT = sa.DateTime(timezone=True)
_BOX = ("minx", "miny", "maxx", "maxy")
# Compiled search statements kept per shape (:func:`_shape`); sort keys are the
# caller's, so the number of shapes is bounded by clearing them all now and then.
MAX_SHAPES = 256


def _bound(name: str, type_: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


def _shape(request: SearchRequest) -> tuple[Any, ...]:
    """What a search's SQL text depends on, besides its filter's and geometry's shape.

    Two searches of one shape (and one :func:`~geoetl.catalog.filters.statement_shape`
    of their filter and geometry) differ only in their :meth:`PgstacCatalog._values`.
    """
    return (
        bool(request.collections),
        bool(request.ids),
        request.access_levels is not None,
        bool(request.start),
        bool(request.end),
        0 if not request.bbox else 1 if request.bbox[0] <= request.bbox[2] else 2,
        tuple((key.field, key.direction) for key in request.sortby or ()),
    )


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
        self._sql: ItemSql | None = None
        # Per shape of search: the statement's text and the constants it binds.
        self._shaped: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}

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
        first = request.sortby[0].field if request.sortby else "datetime"
        walk_dates = first in ("datetime", "properties.datetime") and not (
            request.bbox or request.intersects or request.ids or request.start or request.end
        )
        values = self._values(request)
        shape: tuple[Any, ...] | None = _shape(request)
        literal: list[Any] = []  # the filter's and the geometry's clauses
        if request.filter is not None or request.intersects:
            from geoetl.catalog.filters import Literals, statement_shape

            literals = Literals()
            literal = self._literal_conditions(request, literals)
            values.update(literals.values)
            found = statement_shape(literal, literals)
            shape = None if found is None else (shape, found)
        page = self._shaped.get(shape) if shape is not None else None
        # Built only when the statement is not kept already (or a count needs them).
        conditions = [*self._conditions(request), *literal] if page is None else None
        if page is None:  # compiled once per shape and kept (if it has one)
            assert conditions is not None
            compiled = self._page(request, conditions).compile(self.engine)
            if "POSTCOMPILE" in compiled.string:  # an expanding IN would need its values
                raise AssertionError("a search statement must bind its lists as arrays")
            page = (compiled.string, compiled.params)
            if shape is not None:
                if len(self._shaped) >= MAX_SHAPES:  # sort keys and filters are the caller's
                    self._shaped.clear()
                self._shaped[shape] = page
        text, constants = page
        params = {**constants, **values}
        # Newest first over the whole table walks the datetime index (the planner would
        # sort every match); any other search is one statement on its own, read without
        # a transaction or session settings. Either is one round trip.
        if walk_dates:
            items = self._hydrated(self._walked(text, params))
        else:
            with self._statements() as conn:
                items = self._hydrated(conn.exec_driver_sql(text, params))
        total = None
        if request.count:
            if request.offset == 0 and len(items) < request.limit:
                total = len(items)
            else:
                count = sa.select(sa.func.count(), _SERIAL).select_from(ITEMS)
                count = count.where(*(conditions or [*self._conditions(request), *literal]))
                with self._statements() as conn:
                    total = conn.execute(count, values).scalars().first()
        return items, None if total is None else int(total)

    def _page(self, request: SearchRequest, conditions: list[Any]) -> sa.Select[Any]:
        """The statement of a search's page (limit and offset bound by name too)."""
        order: list[Any] = []
        for key in request.sortby or []:
            expr = self.sql.sort_key(key.field)
            order.append(expr.desc() if key.direction == "desc" else expr.asc())
        if not request.sortby:
            order.append(ITEMS.c.datetime.desc())
        order += [ITEMS.c.collection, ITEMS.c.id]
        query = self._documents().where(*conditions).order_by(*order)
        query = query.limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))
        return query.add_columns(_SERIAL)

    def property_types(
        self, collection_id: str | None, audience: list[str] | None = None, sample: int = 500
    ) -> dict[str, str]:
        """Item property names and JSON types, from the newest ``sample`` items."""
        if audience is not None and not audience:
            return {}
        request = SearchRequest(
            collections=[collection_id] if collection_id is not None else None,
            access_levels=audience,
        )
        properties = ITEMS.c.content["properties"]
        query = (
            sa.select(properties)
            .where(*self._conditions(request))
            .order_by(ITEMS.c.datetime.desc())
            .limit(sample)
        )
        types: dict[str, str] = {}
        with self._read() as conn:
            for found in conn.execute(query, self._values(request)).scalars():
                for name, value in (found or {}).items():
                    if name not in types and value is not None:
                        types[name] = json_type(value)
        return types

    @property
    def sql(self) -> ItemSql:
        """The CQL2 and sort translator over pgSTAC's items (PostGIS looked up once)."""
        if self._sql is None:
            # pygeofilter is imported when a search first sorts or filters, not at
            # start-up nor for a search by ids (a job's check of its target).
            from geoetl.catalog.filters import ItemSql, ItemTable

            table = ItemTable(
                id=ITEMS.c.id,
                collection=ITEMS.c.collection,
                datetime=ITEMS.c.datetime,
                document=ITEMS.c.content,
                epoch=False,
                geometry=ITEMS.c.geometry,
            )
            self._sql = ItemSql("postgresql", self._postgis_schema, table)
        return self._sql

    @functools.cached_property
    def _postgis_schema(self) -> str | None:
        """The schema PostGIS is installed in (looked up once; None without PostGIS)."""
        with self.engine.connect() as conn:
            schema: str | None = conn.execute(POSTGIS_SCHEMA).scalar()
        return schema

    # -- internals --------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction with pgSTAC's session settings."""
        reads = self.engine.connect().execution_options(**{SYNCHRONOUS_COMMIT: "any"})
        with reads as conn, conn.begin():
            # Read-only: pgSTAC's functions then keep no statistics of their own.
            conn.exec_driver_sql(_SESSION, ("true", "on"))
            yield conn

    def _walked(self, text: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a search planned with sorts off: PostgreSQL walks the datetime indexes.

        ``BEGIN``, the transaction's settings, the statement and ``COMMIT`` go out
        together in psycopg's pipeline mode: one round trip, not four. An error leaves
        the transaction failed, and the pool rolls it back when the connection returns.
        """
        raw = self.engine.raw_connection()
        try:
            pg = raw.driver_connection
            assert isinstance(pg, psycopg.Connection)
            with pg.pipeline():
                pg.execute(_SESSION, ("true", "off"))
                cursor = pg.execute(text, params)
                pg.execute("COMMIT")
            return cursor.fetchall()
        except psycopg.OperationalError:
            raw.invalidate()  # lost: not given to the next search
            raise
        finally:
            raw.close()

    @contextmanager
    def _statements(self) -> Iterator[Connection]:
        """Reads of pgSTAC's tables that call no pgSTAC function needing its settings.

        Autocommit: each statement is one round trip, with no ``BEGIN``, settings or
        ``COMMIT`` around it. Every name in them is schema-qualified.
        """
        options = {"isolation_level": "AUTOCOMMIT", SYNCHRONOUS_COMMIT: "any"}
        with self.engine.connect().execution_options(**options) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(_SESSION, ("false", "on"))
            yield conn

    def _conditions(self, request: SearchRequest) -> list[Any]:
        """The search's where clauses, but for its filter and geometry.

        What :meth:`_values` gives is bound by name, so the same clauses serve every
        search of the same shape.
        """
        conditions: list[Any] = []
        if request.collections:
            conditions.append(ITEMS.c.collection == sa.any_(_bound("collections", _TEXTS)))
        if request.ids:
            conditions.append(ITEMS.c.id == sa.any_(_bound("ids", _TEXTS)))
        if request.access_levels is not None:
            level = sa.func.jsonb_extract_path_text(ITEMS.c.content, "properties", LEVEL)
            conditions.append(level == sa.any_(_bound("levels", _TEXTS)))
        # An item [datetime, end_datetime] overlaps the asked interval.
        if request.start:
            conditions.append(ITEMS.c.end_datetime >= _bound("start", _INSTANT))
        if request.end:
            conditions.append(ITEMS.c.datetime <= _bound("end", _INSTANT))
        if request.bbox:
            sql = self.sql
            minx, miny, maxx, maxy = (_bound(name, sa.Float) for name in _BOX)
            if request.bbox[0] > request.bbox[2]:  # crosses the antimeridian: two halves
                halves = [sql.box(minx, miny, 180.0, maxy), sql.box(-180.0, miny, maxx, maxy)]
                conditions.append(sa.or_(*halves))
            else:
                conditions.append(sql.box(minx, miny, maxx, maxy))
        return conditions

    def _literal_conditions(self, request: SearchRequest, literals: Literals) -> list[Any]:
        """The clauses of the search's geometry and CQL2 filter, their values in ``literals``."""
        from geoetl.catalog.filters import parse_cql2

        sql = self.sql.binding(literals)
        conditions: list[Any] = []
        if request.intersects:
            conditions.append(sql.spatial("intersects", request.intersects))
        if request.filter is not None:
            conditions.append(sql.where(parse_cql2(request.filter, request.filter_lang)))
        return conditions

    def _values(self, request: SearchRequest) -> dict[str, Any]:
        """The values of a search's named parameters (:meth:`PgstacCatalog._conditions`)."""
        values: dict[str, Any] = {"limit": request.limit, "offset": request.offset}
        if request.collections:
            values["collections"] = list(request.collections)
        if request.ids:
            values["ids"] = list(request.ids)
        if request.access_levels is not None:
            values["levels"] = list(request.access_levels)
        if request.start:
            values["start"] = self.sql.time_value(request.start)
        if request.end:
            values["end"] = self.sql.time_value(request.end)
        if request.bbox:
            values.update(zip(_BOX, request.bbox, strict=True))
        return values

    def _documents(self) -> sa.Select[Any]:
        """What hydrating an item needs: its columns, content and base item."""
        st = getattr(sa.func, self._postgis_schema or "public")
        tag = sa.cast(ITEMS.c.content["pgstac:base_item"].astext, sa.Integer)
        return sa.select(
            ITEMS.c.id,
            ITEMS.c.collection,
            st.st_asgeojson(ITEMS.c.geometry, 20),
            ITEMS.c.content,
            sa.func.pgstac.collection_base_item(ITEMS.c.collection, tag),
        )

    def _hydrated(self, rows: Any) -> list[dict[str, Any]]:
        """Full item documents, as pgSTAC's ``content_hydrate`` makes them."""
        from pypgstac.hydration import hydrate

        items = []
        for item_id, collection, geometry, content, base, *_ in rows:
            doc = {"id": item_id, "geometry": json.loads(geometry), "collection": collection}
            doc["type"] = "Feature"
            doc.update(content)
            doc.pop("pgstac:base_item", None)
            items.append(hydrate(base or {}, doc))
        return items

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
