"""STAC documents as every catalog backend stores them: pure functions, no database.

A new collection's skeleton, the indexed facts of an item (collection, id, bbox,
datetime interval, access level), collection extents widened by new items, and the
text a free-text collection search (``q``) matches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from geoetl.errors import InputError

STAC_VERSION = "1.1.0"


def epoch(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (None for none)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def iso(ts: float) -> str:
    """A timestamp as STAC writes it: UTC with ``Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


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


def json_type(value: Any) -> str:
    """The JSON Schema type of a property value (for queryables)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def searchable_text(doc: dict[str, Any]) -> str:
    """What a collection's free-text search matches: id, title, description, keywords."""
    parts = [doc.get("id", ""), doc.get("title", ""), doc.get("description", "")]
    parts += [str(k) for k in doc.get("keywords", [])]
    return " ".join(str(p) for p in parts).lower()


def item_row(item: dict[str, Any], access_level: str) -> dict[str, Any]:
    """The indexed facts of one item; InputError when it lacks what search needs.

    A 3D bbox is ``[minx, miny, minz, maxx, maxy, maxz]``: x and y are taken from
    positions 0, 1, 3 and 4.
    """
    cid, iid = item.get("collection"), item.get("id")
    if not cid or not iid:
        raise InputError("a STAC item needs an id and a collection")
    bbox = item.get("bbox")
    if not bbox or len(bbox) not in (4, 6):
        raise InputError(f"STAC item {iid} has no bbox of 4 or 6 numbers")
    if len(bbox) == 6:
        minx, miny, maxx, maxy = bbox[0], bbox[1], bbox[3], bbox[4]
    else:
        minx, miny, maxx, maxy = bbox
    props = item.get("properties", {})
    when = epoch(props.get("datetime") or props.get("start_datetime"))
    if when is None:
        raise InputError(f"STAC item {iid} has no datetime")
    return {
        "collection_id": cid,
        "item_id": iid,
        "data": item,
        "datetime": when,
        "end_datetime": epoch(props.get("end_datetime")) or when,
        "minx": minx,
        "miny": miny,
        "maxx": maxx,
        "maxy": maxy,
        "access_level": access_level,
    }


def widened_extent(doc: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The collection's extent grown to cover ``rows`` (from :func:`item_row`).

    A collection that has no item yet (open temporal interval) takes the rows' extent.
    """
    interval = doc.get("extent", {}).get("temporal", {}).get("interval", [[None, None]])
    boxes = [(r["minx"], r["miny"], r["maxx"], r["maxy"]) for r in rows]
    times = [r["datetime"] for r in rows] + [r["end_datetime"] for r in rows]
    if interval[0][0] is not None:
        boxes.append(tuple(doc["extent"]["spatial"]["bbox"][0]))
        times += [epoch(interval[0][0]), epoch(interval[0][1])]
    known = [t for t in times if t is not None]
    return {
        "spatial": {
            "bbox": [
                [
                    min(b[0] for b in boxes),
                    min(b[1] for b in boxes),
                    max(b[2] for b in boxes),
                    max(b[3] for b in boxes),
                ]
            ]
        },
        "temporal": {"interval": [[iso(min(known)), iso(max(known))]]},
    }


def items_extent(
    bbox: tuple[float, float, float, float] | None, start: str | None, end: str | None
) -> dict[str, Any]:
    """A collection extent from its items' bounds; an empty collection's when bbox is None."""
    if bbox is None:
        empty: dict[str, Any] = new_collection("", "", "public")["extent"]
        return empty
    return {
        "spatial": {"bbox": [list(bbox)]},
        "temporal": {"interval": [[start, end]]},
    }
