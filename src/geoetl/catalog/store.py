"""The STAC catalog on SQL: items and collections as JSON, with bbox and datetime indexed.

On SQLite an R-tree answers bbox searches; on PostgreSQL plain indexes do until the
pgSTAC backend (same interface) replaces this one there.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geoetl.catalog.models import SYSTEM_COLLECTIONS, SearchRequest
from geoetl.catalog.tables import stac_collections, stac_items
from geoetl.errors import Conflict, InputError, NotFound

STAC_VERSION = "1.1.0"


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def new_collection(collection_id: str, description: str, access_level: str) -> dict[str, Any]:
    """A minimal valid STAC collection whose extent grows as items arrive."""
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": collection_id,
        "description": description,
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
        "geoetl:access_level": access_level,
    }


class SqlCatalog:
    """Collections and items in the platform database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"

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

    def get_collection(self, collection_id: str) -> dict[str, Any]:
        """A collection document, or NotFound."""
        with self._read() as conn:
            row = self._collection_row(conn, collection_id)
        if row is None:
            raise NotFound(f"no collection {collection_id!r}")
        return dict(row.data)

    def upsert_item(self, item: dict[str, Any], access_level: str) -> None:
        """Create or replace an item, and widen its collection's extent to cover it."""
        cid, iid = item.get("collection"), item.get("id")
        if not cid or not iid:
            raise InputError("a STAC item needs an id and a collection")
        bbox = item.get("bbox")
        if not bbox or len(bbox) < 4:
            raise InputError(f"STAC item {iid} has no bbox")
        minx, miny, maxx, maxy = (bbox[0], bbox[1], bbox[-2 if len(bbox) == 6 else 2], bbox[-1])
        props = item.get("properties", {})
        when = _epoch(props.get("datetime") or props.get("start_datetime"))
        if when is None:
            raise InputError(f"STAC item {iid} has no datetime")
        now = time.time()
        values = {
            "data": item,
            "datetime": when,
            "minx": minx,
            "miny": miny,
            "maxx": maxx,
            "maxy": maxy,
            "access_level": access_level,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            collection = self._collection_row(conn, cid)
            if collection is None:
                raise NotFound(f"no collection {cid!r} for item {iid!r}")
            updated = conn.execute(
                sa.update(stac_items)
                .where(stac_items.c.collection_id == cid, stac_items.c.item_id == iid)
                .values(**values)
            ).rowcount
            if not updated:
                conn.execute(
                    sa.insert(stac_items).values(
                        collection_id=cid, item_id=iid, created_at=now, **values
                    )
                )
            self._widen_extent(conn, cid, dict(collection.data))

    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        """An item document, or NotFound."""
        with self._read() as conn:
            data = conn.execute(
                sa.select(stac_items.c.data).where(
                    stac_items.c.collection_id == collection_id, stac_items.c.item_id == item_id
                )
            ).scalar()
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

    def search(self, request: SearchRequest) -> tuple[list[dict[str, Any]], int]:
        """Items matching ``request`` (newest first) and how many match in all."""
        query = sa.select(stac_items.c.data)
        count = sa.select(sa.func.count()).select_from(stac_items)
        conditions: list[sa.ColumnElement[bool]] = []
        if request.collections:
            conditions.append(stac_items.c.collection_id.in_(request.collections))
        if request.ids:
            conditions.append(stac_items.c.item_id.in_(request.ids))
        if request.access_levels:
            conditions.append(stac_items.c.access_level.in_(request.access_levels))
        if request.start:
            conditions.append(stac_items.c.datetime >= request.start.timestamp())
        if request.end:
            conditions.append(stac_items.c.datetime <= request.end.timestamp())
        if request.bbox:
            conditions.append(self._bbox_condition(request.bbox))
        query = (
            query.where(*conditions)
            .order_by(stac_items.c.datetime.desc(), stac_items.c.item_id)
            .limit(request.limit)
            .offset(request.offset)
        )
        with self._read() as conn:
            items = [dict(d) for d in conn.execute(query).scalars()]
            total = conn.execute(count.where(*conditions)).scalar_one()
        return items, int(total)

    # -- internals ------------------------------------------------------------------------

    def _read(self) -> Connection:
        # Readers must not take SQLite's write lock.
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

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

    def _widen_extent(self, conn: Connection, cid: str, doc: dict[str, Any]) -> None:
        row = conn.execute(
            sa.select(
                sa.func.min(stac_items.c.minx),
                sa.func.min(stac_items.c.miny),
                sa.func.max(stac_items.c.maxx),
                sa.func.max(stac_items.c.maxy),
                sa.func.min(stac_items.c.datetime),
                sa.func.max(stac_items.c.datetime),
            ).where(stac_items.c.collection_id == cid)
        ).one()

        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")

        doc["extent"] = {
            "spatial": {"bbox": [[row[0], row[1], row[2], row[3]]]},
            "temporal": {"interval": [[iso(row[4]), iso(row[5])]]},
        }
        conn.execute(
            sa.update(stac_collections)
            .where(stac_collections.c.collection_id == cid)
            .values(data=doc, updated_at=time.time())
        )
