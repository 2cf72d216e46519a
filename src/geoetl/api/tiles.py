"""Raster tiles for catalogued items, from titiler-core's TilerFactory.

Rasters are addressed by collection and item id; the COG path comes from the
catalog, never from the caller. Types get sensible defaults: DEMs and
multispectral bands are rescaled to their statistics, multispectral shows bands
3,2,1, categorical rasters keep their colour table (rio-tiler applies it).

Every size or count a caller controls is bounded, so one request cannot take the
process's memory: previews up to ``GEOETL_MAX_IMAGE_PX`` a side, statistics read onto
at most ``GEOETL_MAX_STATISTICS_PX``, tiles, buffers, band lists, expressions,
histogram bins and the like by fixed limits (``check_request``). A preview's size is
checked once more as rio-tiler will compute it (``BoundedReader``): a width alone gives
a height that follows the raster's aspect ratio.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

import attr
import jinja2
from fastapi import Depends, FastAPI, Path, Query, Request
from rasterio.vrt import WarpedVRT
from rio_tiler.errors import InvalidExpression, PointOutsideBounds
from rio_tiler.expression import parse_expression
from rio_tiler.io import Reader
from rio_tiler.models import ImageData, PointData
from rio_tiler.utils import cast_to_sequence, output_size
from starlette.templating import Jinja2Templates
from titiler.core.dependencies import (
    BidxExprParams,
    DefaultDependency,
    ImageRenderingParams,
    PartFeatureParams,
    PreviewParams,
)
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

from geoetl import gdalsafe, lifecycle
from geoetl.api.security import caller_levels, get_caller
from geoetl.errors import InputError, NotFound
from geoetl.platform import Platform

PREFIX = "/raster/collections/{collection_id}/items/{item_id}"


def _item(request: Request, collection_id: str, item_id: str) -> dict[str, Any]:
    cached: dict[str, Any] | None = getattr(request.state, "geoetl_item", None)
    if cached is not None and cached.get("id") == item_id:
        return cached
    platform: Platform = request.app.state.platform
    version = _version(request)
    if version is None:
        item = platform.catalog.get_item(collection_id, item_id, caller_levels(request))
    else:
        item = lifecycle.item_version(
            platform,
            collection_id,
            item_id,
            version,
            caller_levels(request),
            drafts=get_caller(request).is_admin,
        )
    request.state.geoetl_item = item
    return item


def _version(request: Request) -> int | None:
    """``?version=N``: one published version of the item (default: the current one)."""
    raw = request.query_params.get("version")
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise InputError(f"version must be a whole number from 1, not {raw[:20]!r}")
    return int(raw)


def _band_stats(item: dict[str, Any], asset: str) -> list[dict[str, Any]]:
    bands = item.get("assets", {}).get(asset, {}).get("raster:bands") or []
    return [b.get("statistics") or {} for b in bands]


def _asset_key(request: Request, collection_id: str, item_id: str, asset: str) -> str:
    item = _item(request, collection_id, item_id)
    assets = item.get("assets", {})
    if asset not in assets:
        raise NotFound(f"item {item_id} has no asset {asset!r}; it has {sorted(assets)}")
    platform: Platform = request.app.state.platform
    key = platform.objects.key_of(str(assets[asset].get("href", "")))
    if key is None:
        raise NotFound(f"asset {asset!r} of item {item_id} is not in this deployment's storage")
    return key


def item_cog_path(
    request: Request,
    collection_id: Annotated[str, Path(description="STAC collection id.")],
    item_id: Annotated[str, Path(description="STAC item id.")],
    asset: Annotated[str, Query(description="Asset (tier) of the item to read.")] = "data",
) -> str:
    """The GDAL path of the item's COG asset; 404 for unknown items or assets.

    On S3 or Azure a ``/vsis3/``/``/vsiaz/`` path: the COG is read in place with range
    requests, never downloaded.
    """
    key = _asset_key(request, collection_id, item_id, asset)
    platform: Platform = request.app.state.platform
    return platform.objects.gdal_path(key)


def item_gdal_env(
    request: Request,
    collection_id: Annotated[str, Path()],
    item_id: Annotated[str, Path()],
    asset: Annotated[str, Query(include_in_schema=False)] = "data",
) -> dict[str, Any]:
    """GDAL settings for this request's read (``rasterio.Env`` keywords).

    The store's endpoint and credentials for this one read, with the COG's path as the
    only network file GDAL may open (no sidecar probes); none at all on a local store.
    """
    key = _asset_key(request, collection_id, item_id, asset)
    platform: Platform = request.app.state.platform
    return gdalsafe.rasterio_env_kwargs(gdalsafe.stored_options(platform.objects, key))


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


# -- limits ----------------------------------------------------------------------------
# Fixed limits bound the work of one request, whatever the data; the two image sizes
# are settings because they trade memory for detail.
MAX_TILESIZE = 1024  # px a side; the tile matrix sets here use 256 or 512
MAX_BUFFER = 64  # px added on each side of a tile
MAX_PADDING = 64  # px read around a tile for resampling
MAX_BANDS = 16  # bidx values, ;-separated expressions, rescale ranges
MAX_EXPRESSION_CHARS = 1000  # expression, color_formula
MAX_HISTOGRAM_BINS = 1000
MAX_STAT_VALUES = 100  # percentiles (p), categories (c)
MAX_ZOOM = 30  # z, minzoom, maxzoom
MAX_COVER_SCALE = 10  # POST /statistics coverage: (cover_scale x image side)^2 bytes
MAX_FEATURES = 100  # features in one POST /statistics
MAX_JSON_DEPTH = 8  # colormap, algorithm_params

STATISTICS_ROUTES = frozenset({"statistics", "geojson_statistics"})
SIZED_ROUTES = STATISTICS_ROUTES | {"preview"}


@dataclass(frozen=True)
class Cap:
    """A size limit: its maximum and where it comes from."""

    maximum: int
    rule: str  # e.g. "a preview is at most {max} px a side"
    setting: str | None = None

    def explain(self) -> str:
        """The rule with its number and what sets it."""
        source = f"setting {self.setting}" if self.setting else "a fixed limit"
        return f"{self.rule.format(max=self.maximum)} ({source})"


def _route_name(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "name", ""))


def image_cap(request: Request) -> Cap:
    """The size limit of the image this request reads: statistics or preview."""
    settings = request.app.state.platform.settings
    if _route_name(request) in STATISTICS_ROUTES:
        return Cap(
            settings.max_statistics_px,
            "statistics are read onto at most {max} px a side",
            "GEOETL_MAX_STATISTICS_PX",
        )
    return Cap(settings.max_image_px, "a preview is at most {max} px a side", "GEOETL_MAX_IMAGE_PX")


def _number(name: str, raw: str, cap: Cap, *, minimum: float = 1, whole: bool = True) -> float:
    """``raw`` as a number from ``minimum`` to the cap's maximum, else InputError."""
    try:
        value = float(int(raw)) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise InputError(f"{name}={raw!r} is not {kind}: {cap.explain()}") from None
    if not math.isfinite(value) or value < minimum:
        raise InputError(f"{name}={raw!r} is too small: the least is {minimum:g}; {cap.explain()}")
    if value > cap.maximum:
        raise InputError(f"{name}={raw!r} is too large: {cap.explain()}")
    return value


def _count(name: str, values: list[str], cap: Cap) -> None:
    if len(values) > cap.maximum:
        raise InputError(f"{len(values)} {name} values are too many: {cap.explain()}")


def _json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, counted without parsing (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


FIXED: dict[str, Cap] = {
    "tilesize": Cap(MAX_TILESIZE, "tiles are at most {max} px a side"),
    "buffer": Cap(MAX_BUFFER, "a tile buffer is at most {max} px"),
    "padding": Cap(MAX_PADDING, "a tile padding is at most {max} px"),
    "bidx": Cap(MAX_BANDS, "at most {max} bands (bidx) per request"),
    "expression": Cap(MAX_EXPRESSION_CHARS, "an expression is at most {max} characters"),
    "expressions": Cap(MAX_BANDS, "an expression has at most {max} ;-separated bands"),
    "color_formula": Cap(MAX_EXPRESSION_CHARS, "a color_formula is at most {max} characters"),
    "rescale": Cap(MAX_BANDS, "at most {max} rescale ranges"),
    "histogram_bins": Cap(MAX_HISTOGRAM_BINS, "a histogram has at most {max} bins"),
    "p": Cap(MAX_STAT_VALUES, "at most {max} percentiles (p)"),
    "c": Cap(MAX_STAT_VALUES, "at most {max} categories (c)"),
    "percentile": Cap(100, "a percentile (p) is from 0 to {max}"),
    "zoom": Cap(MAX_ZOOM, "zoom levels go up to {max}"),
    "cover_scale": Cap(MAX_COVER_SCALE, "cover_scale is at most {max}"),
    "features": Cap(MAX_FEATURES, "statistics take at most {max} features per request"),
    "json": Cap(MAX_JSON_DEPTH, "JSON parameters nest at most {max} levels deep"),
}


async def check_request(request: Request) -> None:
    """Refuse (400) raster requests whose sizes or counts are out of bounds.

    Runs before titiler's own parameter handling, on every route of the factory, so
    malformed values get the same kind of answer as oversized ones.
    """
    query = request.query_params
    route = _route_name(request)
    if route in SIZED_ROUTES:
        cap = image_cap(request)
        sizes = {name: query.get(name) for name in ("width", "height", "max_size")}
        # /preview/{width}x{height}.{format} takes the size in the path.
        sizes.update({k: v for k, v in request.path_params.items() if k in sizes})
        for name, raw in sizes.items():
            if raw is not None:
                _number(name, raw, cap)
        if route == "geojson_statistics" and bool(sizes["width"]) != bool(sizes["height"]):
            raise InputError(
                "give both width and height, or max_size: with one of them only, the other "
                "follows the feature's shape and is not bounded"
            )
    for name in ("tilesize", "padding"):
        if (raw := query.get(name)) is not None:
            _number(name, raw, FIXED[name])
    if (raw := query.get("buffer")) is not None:
        _number("buffer", raw, FIXED["buffer"], minimum=0.5, whole=False)
    for name in ("minzoom", "maxzoom"):
        if (raw := query.get(name)) is not None:
            _number(name, raw, FIXED["zoom"], minimum=0)
    if "z" in request.path_params:
        _number("z", str(request.path_params["z"]), FIXED["zoom"], minimum=0)
    for name in ("bidx", "rescale", "p", "c"):
        _count(name, query.getlist(name), FIXED[name])
    for raw in query.getlist("p"):
        _number("p", raw, FIXED["percentile"], minimum=0)
    for name in ("expression", "color_formula"):
        if len(raw := query.get(name) or "") > MAX_EXPRESSION_CHARS:
            raise InputError(f"{name} has {len(raw)} characters: {FIXED[name].explain()}")
    if (raw := query.get("expression")) is not None:
        _count("expression", raw.split(";"), FIXED["expressions"])
    if (raw := query.get("histogram_bins")) is not None:
        edges = raw.split(",")
        if len(edges) == 1:
            _number("histogram_bins", raw, FIXED["histogram_bins"])
        elif len(edges) > MAX_HISTOGRAM_BINS + 1:
            raise InputError(
                f"{len(edges)} histogram_bins edges are too many: "
                f"{FIXED['histogram_bins'].explain()}"
            )
    if (raw := query.get("cover_scale")) is not None:
        _number("cover_scale", raw, FIXED["cover_scale"])
    for name in ("colormap", "algorithm_params"):
        if (raw := query.get(name)) and _json_depth(raw) > MAX_JSON_DEPTH:
            raise InputError(f"{name} is nested too deep: {FIXED['json'].explain()}")
    if route == "geojson_statistics":
        await _check_features(request)


async def _check_features(request: Request) -> None:
    # FastAPI has read and parsed the body already (it is cached on the request).
    body = await request.body()
    try:
        doc = json.loads(body)
    except ValueError:
        return  # FastAPI's body validation says what is wrong
    features = doc.get("features") if isinstance(doc, dict) else None
    if isinstance(features, list) and len(features) > MAX_FEATURES:
        raise InputError(f"{len(features)} features are too many: {FIXED['features'].explain()}")


# -- the reads themselves ----------------------------------------------------------------


@dataclass
class ReaderLimits(DefaultDependency):
    """Options for ``BoundedReader``: the largest image side this request may read."""

    max_px: int = 0
    cap_text: str = ""


def reader_limits(request: Request) -> ReaderLimits:
    """The cap of this request's route, handed to the reader."""
    cap = image_cap(request)
    return ReaderLimits(max_px=cap.maximum, cap_text=cap.explain())


@attr.s
class BoundedReader(Reader):
    """rio-tiler's Reader that refuses a preview or statistics read over ``max_px``.

    The size is computed as rio-tiler will (``output_size``), on the dataset or its
    reprojection (a WarpedVRT's size costs no pixel reads), before anything is read.
    Band indexes (``bidx``, or those an expression names) must exist.
    """

    max_px: int = attr.ib(default=0, kw_only=True)
    cap_text: str = attr.ib(default="", kw_only=True)

    def __attrs_post_init__(self) -> None:
        """Open the COG with the GTiff driver only, then let rio-tiler read it."""
        if not self.dataset:
            from rasterio.io import DatasetReader

            self.dataset = self._ctx_stack.enter_context(
                DatasetReader(self.input, driver=list(gdalsafe.STORED_RASTER_DRIVERS))
            )
        super().__attrs_post_init__()  # type: ignore[no-untyped-call]

    def _check_bands(self, indexes: Any, expression: str | None) -> None:
        assert self.dataset is not None  # opened by Reader.__attrs_post_init__
        try:
            wanted = parse_expression(expression) if expression else indexes
        except InvalidExpression as exc:
            raise InputError(f"expression: {exc}") from None
        if wanted is None:
            return
        count = self.dataset.count
        missing = sorted({int(i) for i in cast_to_sequence(wanted)} - set(range(1, count + 1)))
        if missing:
            raise InputError(
                f"band {missing[0]} does not exist: this raster has bands 1 to {count}"
            )

    def part(self, bbox: Any, *args: Any, **kwargs: Any) -> ImageData:
        """``Reader.part`` (tiles, features), for bands that exist."""
        self._check_bands(kwargs.get("indexes"), kwargs.get("expression"))
        result: ImageData = super().part(bbox, *args, **kwargs)
        return result

    def point(self, lon: float, lat: float, *args: Any, **kwargs: Any) -> PointData:
        """``Reader.point``, for bands that exist, inside the raster."""
        self._check_bands(kwargs.get("indexes"), kwargs.get("expression"))
        try:
            result: PointData = super().point(lon, lat, *args, **kwargs)
        except PointOutsideBounds:
            raise InputError(f"the point {lon},{lat} is outside the raster") from None
        return result

    def read(self, indexes: Any = None, expression: str | None = None, **kwargs: Any) -> ImageData:
        """``Reader.read``, after checking the bands and the size of the image it would make."""
        self._check_bands(indexes, expression)
        if self.max_px:
            height, width = self._output_size(kwargs)
            if max(height, width) > self.max_px:
                raise InputError(
                    f"the image would be {width} x {height} px (a width or height alone "
                    f"keeps the raster's aspect ratio): {self.cap_text}; give both width "
                    "and height, or max_size"
                )
        result: ImageData = super().read(indexes=indexes, expression=expression, **kwargs)
        return result

    def _output_size(self, kwargs: dict[str, Any]) -> tuple[int, int]:
        dataset = self.dataset
        assert dataset is not None  # opened by Reader.__attrs_post_init__
        dst_crs = kwargs.get("dst_crs")
        if dst_crs is not None and dst_crs != dataset.crs:
            with WarpedVRT(dataset, crs=dst_crs) as vrt:
                rows, cols = vrt.height, vrt.width
        else:
            rows, cols = dataset.height, dataset.width
        height, width = output_size(
            dataset_height=rows,
            dataset_width=cols,
            output_height=kwargs.get("height"),
            output_width=kwargs.get("width"),
            max_size=kwargs.get("max_size"),
        )
        return int(height), int(width)


def preview_size(request: Request, params: Annotated[PreviewParams, Depends()]) -> PreviewParams:
    """The preview/statistics size; titiler's default (1024) lowered to the cap if need be."""
    if params.max_size is not None:
        params.max_size = min(params.max_size, image_cap(request).maximum)
    return params


def part_size(
    request: Request, params: Annotated[PartFeatureParams, Depends()]
) -> PartFeatureParams:
    """POST /statistics reads each feature onto at most the statistics cap by default.

    (titiler's default reads the feature's window at full resolution.)
    """
    if not (params.width or params.height) and params.max_size is None:
        params.max_size = image_cap(request).maximum
    return params


# geoetl's own map viewer (map.html, on Leaflet shipped with geoetl: no CDN) first;
# titiler's templates for the rest.
TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        autoescape=jinja2.select_autoescape(["html"]),
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("geoetl.api", "templates"),
                jinja2.PackageLoader("titiler.core", "templates"),
            ]
        ),
    )
)


def install(app: FastAPI) -> None:
    """Add the ``/raster/…`` routes and titiler's error-to-status table."""
    factory = TilerFactory(
        router_prefix=PREFIX,
        reader=BoundedReader,
        path_dependency=item_cog_path,
        environment_dependency=item_gdal_env,
        # titiler types these as dataclasses; any dependency returning one works.
        reader_dependency=reader_limits,  # type: ignore[arg-type]
        layer_dependency=default_layers,  # type: ignore[arg-type]
        render_dependency=default_rendering,  # type: ignore[arg-type]
        img_preview_dependency=preview_size,  # type: ignore[arg-type]
        img_part_dependency=part_size,  # type: ignore[arg-type]
        add_part=False,
        templates=TEMPLATES,
    )
    app.include_router(
        factory.router,
        prefix=PREFIX,
        tags=["raster tiles"],
        dependencies=[Depends(check_request)],
    )
    from geoetl.api import mosaic  # collections as one layer (it imports this module)

    mosaic.install(app)
    add_exception_handlers(app, DEFAULT_STATUS_CODES)
