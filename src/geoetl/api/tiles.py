"""Raster tiles for catalogued items, from titiler-core's TilerFactory.

Rasters are addressed by collection and item id; the COG path comes from the
catalog, never from the caller. Types get sensible defaults: DEMs and
multispectral bands are rescaled to their statistics, multispectral shows bands
3,2,1, categorical rasters keep their colour table (rio-tiler applies it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from titiler.core.dependencies import BidxExprParams, ImageRenderingParams
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

from geoetl.api.security import caller_levels
from geoetl.errors import NotFound
from geoetl.platform import Platform

PREFIX = "/raster/collections/{collection_id}/items/{item_id}"


def _item(request: Request, collection_id: str, item_id: str) -> dict[str, Any]:
    cached: dict[str, Any] | None = getattr(request.state, "geoetl_item", None)
    if cached is not None and cached.get("id") == item_id:
        return cached
    platform: Platform = request.app.state.platform
    item = platform.catalog.get_item(collection_id, item_id, caller_levels(request))
    request.state.geoetl_item = item
    return item


def _band_stats(item: dict[str, Any], asset: str) -> list[dict[str, Any]]:
    bands = item.get("assets", {}).get(asset, {}).get("raster:bands") or []
    return [b.get("statistics") or {} for b in bands]


def item_cog_path(
    request: Request,
    collection_id: Annotated[str, Path(description="STAC collection id.")],
    item_id: Annotated[str, Path(description="STAC item id.")],
    asset: Annotated[str, Query(description="Asset (tier) of the item to read.")] = "data",
) -> str:
    """The GDAL path of the item's COG asset; 404 for unknown items or assets."""
    item = _item(request, collection_id, item_id)
    assets = item.get("assets", {})
    if asset not in assets:
        raise NotFound(f"item {item_id} has no asset {asset!r}; it has {sorted(assets)}")
    platform: Platform = request.app.state.platform
    return platform.objects.gdal_path(assets[asset]["href"])


def default_layers(
    request: Request,
    collection_id: Annotated[str, Path()],
    item_id: Annotated[str, Path()],
    layer: Annotated[BidxExprParams, Depends()],
    asset: Annotated[str, Query(include_in_schema=False)] = "data",
) -> BidxExprParams:
    """Bands 3,2,1 for multispectral rasters unless the caller chose bands."""
    if layer.indexes or layer.expression:
        return layer
    item = _item(request, collection_id, item_id)
    kind = item["properties"].get("geoetl:raster_type")
    if kind in ("multispectral", "nir") and len(_band_stats(item, asset)) >= 3:
        layer.indexes = [3, 2, 1]
    return layer


def default_rendering(
    request: Request,
    collection_id: Annotated[str, Path()],
    item_id: Annotated[str, Path()],
    render: Annotated[ImageRenderingParams, Depends()],
    layer: Annotated[BidxExprParams, Depends(default_layers)],
    asset: Annotated[str, Query(include_in_schema=False)] = "data",
) -> ImageRenderingParams:
    """Rescale DEM and multispectral data to their statistics unless ``rescale`` is given."""
    if render.rescale:
        return render
    item = _item(request, collection_id, item_id)
    kind = item["properties"].get("geoetl:raster_type")
    if kind not in ("dem", "multispectral", "nir"):
        return render
    stats = _band_stats(item, asset)
    chosen = [stats[i - 1] for i in (layer.indexes or [1]) if 0 < i <= len(stats)]
    ranges = [
        (float(s["minimum"]), float(s["maximum"]))
        for s in chosen
        if "minimum" in s and "maximum" in s
    ]
    if ranges:
        render.rescale = ranges  # type: ignore[assignment]
    return render


def install(app: FastAPI) -> None:
    """Add the ``/raster/…`` routes and titiler's error-to-status table."""
    factory = TilerFactory(
        router_prefix=PREFIX,
        path_dependency=item_cog_path,
        # titiler types these as dataclasses; any dependency returning one works.
        layer_dependency=default_layers,  # type: ignore[arg-type]
        render_dependency=default_rendering,  # type: ignore[arg-type]
        add_part=False,
    )
    app.include_router(factory.router, prefix=PREFIX, tags=["raster tiles"])
    add_exception_handlers(app, DEFAULT_STATUS_CODES)
