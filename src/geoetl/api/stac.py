"""Read-only STAC documents for catalogued items and collections (the STAC API grows here)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from geoetl.api.deps import PlatformDep
from geoetl.platform import Platform

router = APIRouter(prefix="/stac", tags=["stac"])
GEOJSON = "application/geo+json"


def public_item(platform: Platform, request: Request, item: dict[str, Any]) -> dict[str, Any]:
    """The stored item with links for this API and asset hrefs GDAL can open."""
    cid, iid = item["collection"], item["id"]
    doc = {**item, "assets": {k: dict(v) for k, v in item.get("assets", {}).items()}}
    for asset in doc["assets"].values():
        asset["href"] = platform.objects.gdal_path(asset["href"])
    collection = str(request.url_for("get_collection", collection_id=cid))
    tiles = f"/raster/collections/{cid}/items/{iid}"
    doc["links"] = [
        {
            "rel": "self",
            "href": str(request.url_for("get_item", collection_id=cid, item_id=iid)),
            "type": GEOJSON,
        },
        {"rel": "collection", "href": collection, "type": "application/json"},
        {"rel": "parent", "href": collection, "type": "application/json"},
        {
            "rel": "tiles",
            "href": str(request.base_url).rstrip("/") + f"{tiles}/WebMercatorQuad/tilejson.json",
            "type": "application/json",
        },
    ]
    return doc


@router.get("/collections/{collection_id}", name="get_collection")
def get_collection(collection_id: str, request: Request, platform: PlatformDep) -> dict[str, Any]:
    """A STAC collection."""
    doc = platform.catalog.get_collection(collection_id)
    doc["links"] = [
        {"rel": "self", "href": str(request.url), "type": "application/json"},
    ]
    return doc


@router.get("/collections/{collection_id}/items/{item_id}", name="get_item")
def get_item(
    collection_id: str, item_id: str, request: Request, platform: PlatformDep
) -> dict[str, Any]:
    """A STAC item."""
    return public_item(platform, request, platform.catalog.get_item(collection_id, item_id))
