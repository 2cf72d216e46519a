"""The STAC catalog on SQL: items and collections as JSON, with bbox and datetime indexed.

On SQLite an R-tree answers bbox searches; on PostgreSQL plain indexes do until the
pgSTAC backend (same interface) replaces this one there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geoetl.catalog.documents import (
    iso,
    item_row,
    items_extent,
    json_type,
    new_collection,
    searchable_text,
    widened_extent,
)
from geoetl.catalog.models import SYSTEM_COLLECTIONS, SearchRequest
from geoetl.catalog.tables import stac_collections, stac_items
from geoetl.errors import Conflict, NotFound

if TYPE_CHECKING:
    from geoetl.catalog.filters import ItemSql


class SqlCatalog:
    """Collections and items in the platform database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._sql: ItemSql | None = None

    @property
    def sql(self) -> ItemSql:
        """Filter/sort expressions for this database (PostGIS looked up once)."""
        if self._sql is None:
            # pygeofilter is imported when a filter or sort is first used, not at start-up.
            from geoetl.catalog.filters import ItemSql
            from geoetl.catalog.tables import POSTGIS_SCHEMA

            schema = None
            if not self.sqlite:
                with self._read() as conn:
                    schema = conn.execute(POSTGIS_SCHEMA).scalar()
            self._sql = ItemSql(self.engine.dialect.name, schema)
        return self._sql

    def ensure_system_collections(self) -> None:
        """Create ``system-rasters`` and ``system-vectors`` if missing."""
        for cid, description in SYSTEM_COLLECTIONS.items():
            with self.engine.begin() as conn:
                if self._collection_row(conn, cid) is None:
                    self._insert_collection(
                        conn, new_collection(cid, description, "public"), "public", system=True
                    )

    def upsert_collection(self, collection: dict[str, Any], access_level: str) -> None:
        """Create or replace a collection document."""
        cid = collection["id"]
        with self.engine.begin() as conn:
            row = self._collection_row(conn, cid)
            if row is None:
                self._insert_collection(conn, collection, access_level, system=False)
                return
            conn.execute(
                sa.update(stac_collections)
                .where(stac_collections.c.collection_id == cid)
                .values(data=collection, access_level=access_level, updated_at=time.time())
            )

    def ensure_collection(self, collection_id: str, access_level: str) -> None:
        """Make sure an items' collection exists (a new one takes the item's level)."""
        with self.engine.begin() as conn:
            if self._collection_row(conn, collection_id) is None:
                doc = new_collection(collection_id, f"Collection {collection_id}", access_level)
                self._insert_collection(conn, doc, access_level, system=False)

    def get_collection(
        self, collection_id: str, audience: list[str] | None = None
    ) -> dict[str, Any]:
        """A collection document, or NotFound (also when ``audience`` may not see it)."""
        with self._read() as conn:
            row = self._collection_row(conn, collection_id)
            if row is None or (audience is not None and row.access_level not in audience):
                raise NotFound(f"no collection {collection_id!r}")
            docs = [dict(row.data)]
            self._visible_extents(conn, docs, audience)
        return docs[0]

    def list_collections(
        self, audience: list[str] | None = None, q: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every collection ``audience`` may see, by id; ``q`` keeps those matching any term."""
        query = sa.select(stac_collections.c.data).order_by(stac_collections.c.collection_id)
        if audience is not None:
            query = query.where(stac_collections.c.access_level.in_(audience))
        with self._read() as conn:
            docs = [dict(d) for d in conn.execute(query).scalars()]
            self._visible_extents(conn, docs, audience)
        if q:
            terms = [t.lower() for t in q if t.strip()]
            docs = [d for d in docs if any(t in searchable_text(d) for t in terms)]
        return docs

    def upsert_item(self, item: dict[str, Any], access_level: str) -> None:
        """Create or replace an item, and widen its collection's extent to cover it."""
        self.upsert_items([(item, access_level)])

    def upsert_items(self, items: list[tuple[dict[str, Any], str]]) -> None:
        """Create or replace many items (each with its access level) in one transaction."""
        rows = [item_row(item, level) for item, level in items]
        now = time.time()
        with self.engine.begin() as conn:
            collections: dict[str, dict[str, Any]] = {}
            for cid in sorted({r["collection_id"] for r in rows}):
                collection = self._collection_row(conn, cid)
                if collection is None:
                    raise NotFound(f"no collection {cid!r} for its items")
                collections[cid] = dict(collection.data)
            existing = set()
            for cid in collections:
                ids = [r["item_id"] for r in rows if r["collection_id"] == cid]
                for chunk in range(0, len(ids), 500):
                    existing |= {
                        (cid, iid)
                        for iid in conn.execute(
                            sa.select(stac_items.c.item_id).where(
                                stac_items.c.collection_id == cid,
                                stac_items.c.item_id.in_(ids[chunk : chunk + 500]),
                            )
                        ).scalars()
                    }
            fresh = [
                {**r, "created_at": now, "updated_at": now}
                for r in rows
                if (r["collection_id"], r["item_id"]) not in existing
            ]
            if fresh:
                conn.execute(sa.insert(stac_items), fresh)
            for r in rows:
                if (r["collection_id"], r["item_id"]) in existing:
                    conn.execute(
                        sa.update(stac_items)
                        .where(
                            stac_items.c.collection_id == r["collection_id"],
                            stac_items.c.item_id == r["item_id"],
                        )
                        .values(**{k: v for k, v in r.items() if k != "item_id"}, updated_at=now)
                    )
            for cid, doc in collections.items():
                mine = [r for r in rows if r["collection_id"] == cid]
                self._widen_extent(conn, cid, doc, mine)

    def get_item(
        self, collection_id: str, item_id: str, audience: list[str] | None = None
    ) -> dict[str, Any]:
        """An item document, or NotFound (also when ``audience`` may not see it)."""
        query = sa.select(stac_items.c.data).where(
            stac_items.c.collection_id == collection_id, stac_items.c.item_id == item_id
        )
        if audience is not None:
            query = query.where(stac_items.c.access_level.in_(audience))
        with self._read() as conn:
            data = conn.execute(query).scalar()
        if data is None:
            raise NotFound(f"no item {item_id!r} in collection {collection_id!r}")
        return dict(data)

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        """Delete an item; False if there was none."""
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    sa.delete(stac_items).where(
                        stac_items.c.collection_id == collection_id,
                        stac_items.c.item_id == item_id,
                    )
                ).rowcount
            )

    def delete_collection(self, collection_id: str) -> None:
        """Delete an empty, non-system collection."""
        with self.engine.begin() as conn:
            row = self._collection_row(conn, collection_id)
            if row is None:
                raise NotFound(f"no collection {collection_id!r}")
            if row.system:
                raise Conflict(f"{collection_id} is a system collection and is never deleted")
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(stac_items)
                .where(stac_items.c.collection_id == collection_id)
            ).scalar_one()
            if count:
                raise Conflict(f"collection {collection_id} still has {count} item(s)")
            conn.execute(
                sa.delete(stac_collections).where(stac_collections.c.collection_id == collection_id)
            )

    def search(self, request: SearchRequest) -> tuple[list[dict[str, Any]], int | None]:
        """Items matching ``request`` and how many match in all (None unless ``count``).

        Results are sorted by ``request.sortby`` (default: newest first), then by
        collection and id, so pages never overlap or skip.
        """
        conditions = self._conditions(request)
        order: list[Any] = []
        for key in request.sortby or []:
            expr = self.sql.sort_key(key.field)
            order.append(expr.desc() if key.direction == "desc" else expr.asc())
        if not request.sortby:
            order.append(stac_items.c.datetime.desc())
        order += [stac_items.c.collection_id, stac_items.c.item_id]
        query = (
            sa.select(stac_items.c.data)
            .where(*conditions)
            .order_by(*order)
            .limit(request.limit)
            .offset(request.offset)
        )
        with self._read() as conn:
            items = [dict(d) for d in conn.execute(query).scalars()]
            total = None
            if request.count:
                if request.offset == 0 and len(items) < request.limit:
                    total = len(items)
                else:
                    total = conn.execute(
                        sa.select(sa.func.count()).select_from(stac_items).where(*conditions)
                    ).scalar_one()
        return items, None if total is None else int(total)

    def property_types(
        self, collection_id: str | None, audience: list[str] | None = None, sample: int = 500
    ) -> dict[str, str]:
        """Item property names and JSON types, from the newest ``sample`` items."""
        query = sa.select(stac_items.c.data).order_by(stac_items.c.datetime.desc()).limit(sample)
        if collection_id is not None:
            query = query.where(stac_items.c.collection_id == collection_id)
        if audience is not None:
            query = query.where(stac_items.c.access_level.in_(audience))
        types: dict[str, str] = {}
        with self._read() as conn:
            for data in conn.execute(query).scalars():
                for name, value in (data.get("properties") or {}).items():
                    if name not in types and value is not None:
                        types[name] = json_type(value)
        return types

    # -- internals ------------------------------------------------------------------------

    def _conditions(self, request: SearchRequest) -> list[Any]:
        conditions: list[Any] = []
        if request.collections:
            conditions.append(stac_items.c.collection_id.in_(request.collections))
        if request.ids:
            conditions.append(stac_items.c.item_id.in_(request.ids))
        if request.access_levels is not None:
            conditions.append(stac_items.c.access_level.in_(request.access_levels))
        # An item [datetime, end_datetime] overlaps the asked interval.
        if request.start:
            conditions.append(stac_items.c.end_datetime >= request.start.timestamp())
        if request.end:
            conditions.append(stac_items.c.datetime <= request.end.timestamp())
        if request.bbox:
            minx, miny, maxx, maxy = request.bbox
            if minx > maxx:  # crosses the antimeridian
                conditions.append(
                    sa.or_(
                        self._bbox_condition((minx, miny, 180.0, maxy)),
                        self._bbox_condition((-180.0, miny, maxx, maxy)),
                    )
                )
            else:
                conditions.append(self._bbox_condition(request.bbox))
        if request.intersects:
            conditions.append(self.sql.spatial("intersects", request.intersects))
        if request.filter is not None:
            from geoetl.catalog.filters import parse_cql2

            conditions.append(self.sql.where(parse_cql2(request.filter, request.filter_lang)))
        return conditions

    def _read(self) -> Connection:
        # Readers must not take SQLite's write lock.
        conn = self.engine.connect().execution_options(sqlite_begin="DEFERRED")
        if self.sqlite:
            raw = conn.connection.driver_connection
            raw.create_function("geoetl_relate", 3, sqlite_relate, deterministic=True)  # type: ignore[union-attr]
        return conn

    def _bbox_condition(self, bbox: tuple[float, float, float, float]) -> Any:
        minx, miny, maxx, maxy = bbox
        if self.sqlite:
            rtree = sa.table(
                "stac_items_rtree",
                sa.column("rid"),
                sa.column("minx"),
                sa.column("maxx"),
                sa.column("miny"),
                sa.column("maxy"),
            )
            return stac_items.c.rid.in_(
                sa.select(rtree.c.rid).where(
                    rtree.c.maxx >= minx,
                    rtree.c.minx <= maxx,
                    rtree.c.maxy >= miny,
                    rtree.c.miny <= maxy,
                )
            )
        return sa.and_(
            stac_items.c.maxx >= minx,
            stac_items.c.minx <= maxx,
            stac_items.c.maxy >= miny,
            stac_items.c.miny <= maxy,
        )

    def _collection_row(self, conn: Connection, cid: str) -> Any:
        return conn.execute(
            sa.select(stac_collections).where(stac_collections.c.collection_id == cid)
        ).first()

    def _insert_collection(
        self, conn: Connection, doc: dict[str, Any], access_level: str, *, system: bool
    ) -> None:
        now = time.time()
        conn.execute(
            sa.insert(stac_collections).values(
                collection_id=doc["id"],
                data=doc,
                access_level=access_level,
                system=system,
                created_at=now,
                updated_at=now,
            )
        )

    def _visible_extents(
        self, conn: Connection, docs: list[dict[str, Any]], audience: list[str] | None
    ) -> None:
        # A stored extent covers every item; a reader who may not see some of them gets
        # the extent of the ones it may see, so hidden items leave no trace in it.
        if audience is None or not docs:
            return
        c = stac_items.c
        hidden = conn.execute(
            sa.select(c.collection_id)
            .where(c.collection_id.in_([d["id"] for d in docs]), c.access_level.not_in(audience))
            .group_by(c.collection_id)
        ).scalars()
        recompute = set(hidden)
        if not recompute:
            return
        rows = {
            r.collection_id: r
            for r in conn.execute(
                sa.select(
                    c.collection_id,
                    sa.func.min(c.minx).label("minx"),
                    sa.func.min(c.miny).label("miny"),
                    sa.func.max(c.maxx).label("maxx"),
                    sa.func.max(c.maxy).label("maxy"),
                    sa.func.min(c.datetime).label("start"),
                    sa.func.max(sa.func.coalesce(c.end_datetime, c.datetime)).label("end"),
                )
                .where(c.collection_id.in_(recompute), c.access_level.in_(audience))
                .group_by(c.collection_id)
            )
        }

        def iso_or_none(ts: float | None) -> str | None:
            return None if ts is None else iso(ts)

        for doc in docs:
            if doc["id"] in recompute:
                r = rows.get(doc["id"])
                doc["extent"] = (
                    items_extent(None, None, None)
                    if r is None
                    else items_extent(
                        (r.minx, r.miny, r.maxx, r.maxy), iso_or_none(r.start), iso_or_none(r.end)
                    )
                )

    def _widen_extent(
        self, conn: Connection, cid: str, doc: dict[str, Any], rows: list[dict[str, Any]]
    ) -> None:
        doc["extent"] = widened_extent(doc, rows)
        conn.execute(
            sa.update(stac_collections)
            .where(stac_collections.c.collection_id == cid)
            .values(data=doc, updated_at=time.time())
        )


def sqlite_relate(relation: str, geometry_json: str | None, wkb: bytes) -> int:
    """SQLite function ``geoetl_relate(relation, item geometry JSON, query WKB)``."""
    import shapely

    if geometry_json is None:
        return 0
    item = shapely.from_geojson(geometry_json)
    query = shapely.from_wkb(wkb)
    return int(bool(getattr(item, relation)(query)))
