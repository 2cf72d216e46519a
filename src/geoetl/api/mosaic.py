"""A raster collection served as one layer: mosaic tiles, TileJSON, a map viewer, point values.

``/raster/collections/{collection_id}/…`` draws every item of a collection the caller
may see as one mosaic. A tile searches the catalog (the collection, the tile's bounds,
the caller's access levels; newest item first, the catalog's default order) and reads
the first :data:`ITEMS_PER_TILE` items' COGs with rio-tiler's ``mosaic_reader``. Where
items overlap, ``pixel_selection`` decides (``first``, the newest item's pixel, by
default; ``highest``, ``lowest``, ``mean``). More items than that over one tile are not
an error: the newest are drawn and the rest left out.

Only the platform's own COGs are read: each item's asset href must be an object of the
deployment's store (others are skipped), opened with the GTiff driver only, in the
store's GDAL settings for that one object (rasterio's settings are per thread, so each
reading thread sets its own). The limits of single-item tiles apply (``check_request``).

A tile where no visible item has data answers 204 No Content (as titiler's mosaics do);
an unknown or hidden collection, or one without a visible item, 404.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import morecantile
import numpy
import rasterio
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from morecantile import TileMatrixSet
from rasterio.warp import transform_bounds
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.mosaic.methods.base import MosaicMethodBase
from rio_tiler.mosaic.methods.defaults import FirstMethod, HighestMethod, LowestMethod, MeanMethod
from rio_tiler.types import ColorMapType
from titiler.core.algorithm import algorithms as available_algorithms
from titiler.core.algorithm.base import BaseAlgorithm
from titiler.core.dependencies import (
    BidxExprParams,
    ColorMapParams,
    DatasetParams,
    ImageRenderingParams,
    TileParams,
)
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from geoetl import gdalsafe
from geoetl.api.security import caller_levels
from geoetl.api.tiles import TEMPLATES, BoundedReader, check_request
from geoetl.catalog.models import SearchRequest
from geoetl.errors import InputError, NotFound
from geoetl.platform import Platform

PREFIX = "/raster/collections/{collection_id}"

ITEMS_PER_TILE = 50
"""Most items read for one tile (newest first); the same many give a layer's defaults."""
READ_THREADS = 4
"""Items read at once for one tile (the first-pixel method stops once the tile is full)."""
DEFAULT_MAXZOOM = 18  # when the items do not say their resolution

PIXEL_SELECTION: dict[str, type[MosaicMethodBase]] = {
    "first": FirstMethod,
    "highest": HighestMethod,
    "lowest": LowestMethod,
    "mean": MeanMethod,
}

CollectionId = Annotated[str, Path(description="STAC collection id.")]
TmsId = Annotated[str, Path(description="Tile matrix set id, e.g. WebMercatorQuad.")]
AssetParam = Annotated[str, Query(description="Asset (tier) of the items to read.")]
PixelSelection = Annotated[
    str,
    Query(
        description="Where items overlap: first (the newest item's pixel), highest, lowest, mean."
    ),
]


@dataclass(frozen=True)
class Source:
    """One stored COG of the mosaic: its GDAL path and the settings to read it."""

    item_id: str
    path: str
    env: dict[str, Any]


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _tms(tms_id: str) -> TileMatrixSet:
    try:
        return morecantile.tms.get(tms_id)
    except morecantile.errors.InvalidIdentifier:
        raise NotFound(
            f"unknown tile matrix set {tms_id[:50]!r}; known: {', '.join(morecantile.tms.list())}"
        ) from None


def _selection(name: str) -> type[MosaicMethodBase]:
    try:
        return PIXEL_SELECTION[name]
    except KeyError:
        raise InputError(
            f"pixel_selection={name[:20]!r} is not one of {', '.join(PIXEL_SELECTION)}"
        ) from None


def _search(
    request: Request,
    collection_id: str,
    bbox: tuple[float, float, float, float] | None,
    limit: int = ITEMS_PER_TILE,
) -> list[dict[str, Any]]:
    """The collection's items the caller may see (within ``bbox``), newest first."""
    items, _ = _platform(request).catalog.search(
        SearchRequest(
            collections=[collection_id],
            bbox=bbox,
            access_levels=caller_levels(request),
            limit=limit,
            count=False,
        )
    )
    return items


def visible_collection(request: Request, collection_id: str) -> dict[str, Any]:
    """The collection as the caller sees it; NotFound if hidden or none of its items is."""
    collection = _platform(request).catalog.get_collection(collection_id, caller_levels(request))
    if not _search(request, collection_id, None, limit=1):
        raise NotFound(f"collection {collection_id} has no raster items you may see")
    return collection


def _is_cog(asset: dict[str, Any]) -> bool:
    return str(asset.get("type", "")).startswith("image/tiff")


def sources(request: Request, items: list[dict[str, Any]], asset: str) -> list[Source]:
    """The stored COGs of ``items``' ``asset``; items without one in this store are left out."""
    objects = _platform(request).objects
    found = []
    for item in items:
        data = item.get("assets", {}).get(asset)
        if not isinstance(data, dict) or not _is_cog(data):
            continue
        key = objects.key_of(str(data.get("href", "")))
        if key is None:
            continue
        env = gdalsafe.rasterio_env_kwargs(gdalsafe.stored_options(objects, key))
        found.append(Source(str(item.get("id", "")), objects.gdal_path(key), env))
    return found


# -- defaults from the items' metadata --------------------------------------------------


def _kind(items: list[dict[str, Any]]) -> str | None:
    kind = items[0].get("properties", {}).get("geoetl:raster_type") if items else None
    return str(kind) if kind else None


def _band_stats(item: dict[str, Any], asset: str) -> list[dict[str, Any]]:
    bands = item.get("assets", {}).get(asset, {}).get("raster:bands") or []
    return [b.get("statistics") or {} for b in bands]


def default_layer(layer: BidxExprParams, items: list[dict[str, Any]], asset: str) -> None:
    """Bands 3,2,1 for multispectral rasters unless the caller chose bands (as item tiles)."""
    if layer.indexes or layer.expression or not items:
        return
    if _kind(items) in ("multispectral", "nir") and len(_band_stats(items[0], asset)) >= 3:
        layer.indexes = [3, 2, 1]


def default_rescale(
    layer: BidxExprParams, items: list[dict[str, Any]], asset: str
) -> list[tuple[float, float]]:
    """DEM and multispectral ranges: each band's least minimum and greatest maximum.

    Over ``items``: one range for the whole layer, so tiles match at their edges.
    """
    if _kind(items) not in ("dem", "multispectral", "nir"):
        return []
    ranges: list[tuple[float, float]] = []
    for index in layer.indexes or [1]:
        lows, highs = [], []
        for item in items:
            stats = _band_stats(item, asset)
            if 0 < index <= len(stats) and "minimum" in stats[index - 1]:
                lows.append(float(stats[index - 1]["minimum"]))
                highs.append(float(stats[index - 1]["maximum"]))
        if not lows:
            return []
        ranges.append((min(lows), max(highs)))
    return ranges


def _finite(values: tuple[float, ...]) -> bool:
    return all(math.isfinite(v) for v in values)


def zoom_range(
    tms: TileMatrixSet, items: list[dict[str, Any]], bounds: list[float]
) -> tuple[int, int]:
    """The zooms: the whole extent in a tile or so, to the finest item's pixels."""
    finest: float | None = None
    for item in items:
        shape = item.get("properties", {}).get("proj:shape")
        bbox = item.get("bbox")
        if not (isinstance(shape, list) and len(shape) == 2 and bbox and len(bbox) >= 4):
            continue
        try:
            left, bottom = tms.xy(bbox[0], max(bbox[1], -85.0))
            right, top = tms.xy(bbox[-2], min(bbox[-1], 85.0))
        except Exception:
            continue
        rows, cols = int(shape[0]), int(shape[1])
        if rows < 1 or cols < 1 or not _finite((left, bottom, right, top)):
            continue
        res = max(abs(right - left) / cols, abs(top - bottom) / rows)
        if res > 0:
            finest = res if finest is None else min(finest, res)
    if finest is None:
        return tms.minzoom, min(tms.maxzoom, DEFAULT_MAXZOOM)
    maxzoom = tms.zoom_for_res(finest)
    try:
        left, bottom = tms.xy(bounds[0], max(bounds[1], -85.0))
        right, top = tms.xy(bounds[2], min(bounds[3], 85.0))
        side = max(abs(right - left), abs(top - bottom))
        minzoom = tms.zoom_for_res(side / 256) if side > 0 and math.isfinite(side) else 0
    except Exception:
        minzoom = tms.minzoom
    minzoom = max(tms.minzoom, min(minzoom, maxzoom))
    return minzoom, maxzoom


def _extent(collection: dict[str, Any]) -> list[float]:
    boxes = collection.get("extent", {}).get("spatial", {}).get("bbox") or []
    box = boxes[0] if boxes else None
    if not box or len(box) < 4:
        return [-180.0, -90.0, 180.0, 90.0]
    if len(box) == 6:
        return [float(box[0]), float(box[1]), float(box[3]), float(box[4])]
    return [float(v) for v in box[:4]]


# -- routes ------------------------------------------------------------------------------

router = APIRouter(prefix=PREFIX, tags=["raster mosaics"], dependencies=[Depends(check_request)])


def _tile_bbox(tms: TileMatrixSet, x: int, y: int, z: int) -> tuple[float, float, float, float]:
    """The tile's bounds in longitude and latitude (the catalog's CRS)."""
    if not tms.minzoom <= z <= tms.maxzoom:
        raise InputError(f"zoom {z} is not in {tms.id} ({tms.minzoom} to {tms.maxzoom})")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise InputError(f"tile {z}/{x}/{y} does not exist in {tms.id}")
    west, south, east, north = tms.bounds(morecantile.Tile(x, y, z))
    if tms.geographic_crs != WGS84_CRS:
        west, south, east, north = transform_bounds(
            tms.geographic_crs, WGS84_CRS, west, south, east, north
        )
    return (
        max(-180.0, west),
        max(-90.0, min(south, north)),
        min(180.0, east),
        min(90.0, max(south, north)),
    )


@router.get(
    "/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
    name="collection_tile",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "image/tiff": {}}},
        204: {"description": "No visible item has data in this tile."},
    },
)
@router.get(
    "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}",
    name="collection_tile_with_format",
    response_class=Response,
    include_in_schema=False,
)
def tile(
    request: Request,
    collection_id: CollectionId,
    tileMatrixSetId: TmsId,
    z: Annotated[int, Path(description="Zoom level.")],
    x: Annotated[int, Path(description="Tile column.")],
    y: Annotated[int, Path(description="Tile row.")],
    layer: Annotated[BidxExprParams, Depends()],
    dataset: Annotated[DatasetParams, Depends()],
    tile_params: Annotated[TileParams, Depends()],
    render: Annotated[ImageRenderingParams, Depends()],
    colormap: Annotated[ColorMapType | None, Depends(ColorMapParams)],
    post_process: Annotated[BaseAlgorithm | None, Depends(available_algorithms.dependency)],
    format: ImageType | None = None,
    tilesize: Annotated[int | None, Query(gt=0, description="Tile size in pixels.")] = None,
    pixel_selection: PixelSelection = "first",
    asset: AssetParam = "data",
) -> Response:
    """One tile of the collection's mosaic; 204 where no visible item has data."""
    tms = _tms(tileMatrixSetId)
    method = _selection(pixel_selection)
    bbox = _tile_bbox(tms, x, y, z)
    items = _search(request, collection_id, bbox)
    found = sources(request, items, asset)
    if not found:
        visible_collection(request, collection_id)  # 404 when hidden or without items
        return Response(status_code=204)
    default_layer(layer, items, asset)
    if not render.rescale:
        render.rescale = default_rescale(layer, items, asset) or None  # type: ignore[assignment]
    colormaps: dict[str, Any] = {}
    lock = threading.Lock()

    def read(source: Source, *args: Any, **kwargs: Any) -> ImageData:
        with rasterio.Env(**source.env), BoundedReader(source.path, tms=tms) as src:
            image: ImageData = src.tile(*args, **kwargs)
            with lock:
                colormaps[source.path] = getattr(src, "colormap", None)
            return image

    try:
        image, used = mosaic_reader(
            found,
            read,
            x,
            y,
            z,
            pixel_selection=method(),
            threads=min(READ_THREADS, len(found)),
            allowed_exceptions=(TileOutsideBounds,),
            tilesize=tilesize,
            **tile_params.as_dict(),
            **layer.as_dict(),
            **dataset.as_dict(),
        )
    except EmptyMosaicError:
        return Response(status_code=204)
    if post_process:
        image = post_process(image)
    content, media_type = render_image(
        image,
        output_format=format,
        colormap=colormap or (colormaps.get(used[0].path) if used else None),
        **render.as_dict(),
    )
    headers = {"Content-Bbox": ",".join(map(str, image.bounds))} if image.bounds else {}
    return Response(content, media_type=media_type, headers=headers)


LAYER_KEYS = frozenset({"tilematrixsetid", "tile_format", "minzoom", "maxzoom"})


@router.get("/{tileMatrixSetId}/tilejson.json", name="collection_tilejson")
def tilejson(
    request: Request,
    collection_id: CollectionId,
    tileMatrixSetId: TmsId,
    layer: Annotated[BidxExprParams, Depends()],
    tile_format: Annotated[ImageType | None, Query(description="Tile format.")] = None,
    tilesize: Annotated[int | None, Query(gt=0, description="Tile size in pixels.")] = None,
    minzoom: Annotated[int | None, Query(description="Overrides the minzoom.")] = None,
    maxzoom: Annotated[int | None, Query(description="Overrides the maxzoom.")] = None,
    asset: AssetParam = "data",
) -> dict[str, Any]:
    """TileJSON of the collection as the caller sees it.

    ``bounds`` is the collection's extent over the items the caller may see; the zooms
    come from the items' resolutions; without ``rescale`` the tile URL carries one
    range for the whole layer, from the statistics of the (first 50) visible items.
    """
    tms = _tms(tileMatrixSetId)
    collection = visible_collection(request, collection_id)
    items = _search(request, collection_id, None)
    bounds = _extent(collection)
    low, high = zoom_range(tms, items, bounds)
    route: dict[str, Any] = {
        "collection_id": collection_id,
        "tileMatrixSetId": tileMatrixSetId,
        "z": "{z}",
        "x": "{x}",
        "y": "{y}",
    }
    if tile_format is not None:
        route["format"] = tile_format.value
        url = str(request.url_for("collection_tile_with_format", **route))
    else:
        url = str(request.url_for("collection_tile", **route))
    query = [(k, v) for k, v in request.query_params.multi_items() if k.lower() not in LAYER_KEYS]
    if "rescale" not in request.query_params:
        default_layer(layer, items, asset)
        for lo, hi in default_rescale(layer, items, asset):
            query.append(("rescale", f"{lo:g},{hi:g}"))
    if query:
        url += "?" + urlencode(query)
    url = url.replace("%7B", "{").replace("%7D", "}")
    return {
        "tilejson": "3.0.0",
        "name": collection.get("title") or collection_id,
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [url],
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, low],
        "minzoom": minzoom if minzoom is not None else low,
        "maxzoom": maxzoom if maxzoom is not None else high,
        "tilesize": tilesize or tms.matrix(tms.minzoom).tileWidth,
    }


@router.get("/{tileMatrixSetId}/map.html", name="collection_map", response_class=Response)
def map_viewer(
    request: Request,
    collection_id: CollectionId,
    tileMatrixSetId: TmsId,
) -> Response:
    """A Leaflet map of the collection (Leaflet served by geoetl: no CDN)."""
    tms = _tms(tileMatrixSetId)
    visible_collection(request, collection_id)
    query = urlencode(request.query_params.multi_items())
    tilejson_url = str(
        request.url_for(
            "collection_tilejson", collection_id=collection_id, tileMatrixSetId=tileMatrixSetId
        )
    )
    point_url = (
        str(
            request.url_for(
                "collection_point", collection_id=collection_id, lon="{lon}", lat="{lat}"
            )
        )
        .replace("%7B", "{")
        .replace("%7D", "}")
    )
    point_query = urlencode(
        [
            (k, v)
            for k, v in request.query_params.multi_items()
            if k in ("bidx", "expression", "asset", "pixel_selection")
        ]
    )
    response: Response = TEMPLATES.TemplateResponse(
        request,
        name="map.html",
        context={
            "tilejson_endpoint": tilejson_url + (f"?{query}" if query else ""),
            "point_endpoint": point_url + (f"?{point_query}" if point_query else ""),
            "tms": tms,
            "resolutions": [matrix.cellSize for matrix in tms],
        },
        media_type="text/html",
    )
    return response


@router.get("/point/{lon},{lat}", name="collection_point")
def point(
    request: Request,
    collection_id: CollectionId,
    lon: Annotated[float, Path(description="Longitude.")],
    lat: Annotated[float, Path(description="Latitude.")],
    layer: Annotated[BidxExprParams, Depends()],
    asset: AssetParam = "data",
) -> dict[str, Any]:
    """The values at a point: of the newest visible item with data there."""
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"the point {lon},{lat} is not a longitude and latitude")
    items = _search(request, collection_id, (lon, lat, lon, lat))
    found = sources(request, items, asset)
    if not found:
        visible_collection(request, collection_id)
    for source in found:
        with rasterio.Env(**source.env), BoundedReader(source.path) as src:
            west, south, east, north = src.get_geographic_bounds(WGS84_CRS)
            if not (west <= lon <= east and south <= lat <= north):
                continue
            data = src.point(lon, lat, **layer.as_dict())
        values = data.array
        mask = numpy.ma.getmaskarray(values)
        if bool(mask.all()):
            continue
        return {
            "coordinates": [lon, lat],
            "item_id": source.item_id,
            "values": [
                None if bool(m) else v.item() for v, m in zip(values.data, mask, strict=True)
            ],
            "band_names": data.band_names,
        }
    return {"coordinates": [lon, lat], "values": [], "detail": "no data here"}


def install(app: FastAPI) -> None:
    """Add the collection mosaic routes."""
    app.include_router(router)
