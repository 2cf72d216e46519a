"""STAC items for COGs, built with rio-stac and pystac."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import rasterio
from affine import Affine
from pystac import Asset, Item, MediaType
from pystac.extensions.projection import ProjectionExtension
from rasterio.io import DatasetReader
from rasterio.warp import transform_geom
from rio_stac import create_stac_item
from rio_stac.stac import bbox_to_geom

from geoetl.raster.inspect import crs_string
from geoetl.storage.objectstore import sha256_file

FILE_EXT = "https://stac-extensions.github.io/file/v2.1.0/schema.json"


Cog: TypeAlias = Path | DatasetReader  # a local file, or a COG opened in place in the object store


@contextmanager
def _opened(cog: Cog) -> Iterator[DatasetReader]:
    if isinstance(cog, DatasetReader):
        yield cog
        return
    with rasterio.open(cog) as ds:
        yield ds


# rio-stac's band statistics read the raster decimated to this size (its default).
STATS_SIZE = 1024


@contextmanager
def _sampled(cog: Cog) -> Iterator[DatasetReader]:
    """What rio-stac reads band statistics from: the smallest overview that is large enough.

    That is the smallest of at least :data:`STATS_SIZE` px, or the raster itself when none
    is that large. rio-stac reads each band decimated and masked; through rasterio a
    masked read of the full resolution holds the whole mask, a byte per pixel (556 MiB
    measured for a 28,728 x 18,930 px COG with an alpha band), where an overview's mask
    is a few hundred KiB. The overview has the raster's extent: the item's geometry is
    the same.
    """
    with _opened(cog) as ds:
        factors = ds.overviews(1) if ds.count else []
        level = None
        for index, factor in enumerate(factors):
            if max(ds.width, ds.height) // factor >= STATS_SIZE:
                level = index
        if level is None:
            yield ds
            return
        with rasterio.open(ds.name, overview_level=level, driver=ds.driver) as sample:
            yield sample


def acquisition_datetime(cog: Cog) -> datetime | None:
    """The file's TIFF date tag, when it has a usable one."""
    with _opened(cog) as ds:
        value = ds.tags().get("TIFFTAG_DATETIME")
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def time_coverage(cog: Cog) -> tuple[datetime, datetime] | None:
    """The time range a COG's tags give (``time_coverage_start``/``_end``, ISO 8601).

    geoetl writes them for a NetCDF variable's time steps (:mod:`geoetl.raster.multidim`).
    """
    with _opened(cog) as ds:
        tags = ds.tags()
    try:
        start, end = (
            datetime.fromisoformat(tags[f"time_coverage_{edge}"].replace("Z", "+00:00"))
            for edge in ("start", "end")
        )
    except (KeyError, ValueError):
        return None
    if start.tzinfo is None or end.tzinfo is None or end < start:
        return None
    return start, end


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def file_fields(path: Path) -> dict[str, Any]:
    """File extension fields: size and a multihash SHA-256 checksum."""
    return file_facts(path.stat().st_size, sha256_file(path))


def file_facts(size: int, sha256: str) -> dict[str, Any]:
    """File extension fields of a file of ``size`` bytes with that hex SHA-256."""
    return {"file:size": size, "file:checksum": "1220" + sha256}


def footprint(transform: Affine, width: int, height: int) -> dict[str, Any]:
    """The grid's outline in its own CRS: a GeoJSON polygon through its four corners.

    For a rotated or sheared grid this is the rotated rectangle, not its envelope; the
    ring runs counter-clockwise (RFC 7946) whatever the sign of the pixel size.
    """
    corners = [transform * xy for xy in ((0, height), (width, height), (width, 0), (0, 0))]
    ring = [*corners, corners[0]]
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring))
    if area2 < 0:
        ring.reverse()
    return {"type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in ring]]}


def _envelope(geometry: dict[str, Any]) -> list[float]:
    xs = [float(p[0]) for ring in geometry["coordinates"] for p in ring]
    ys = [float(p[1]) for ring in geometry["coordinates"] for p in ring]
    return [min(xs), min(ys), max(xs), max(ys)]


def add_projection(item: Item, cog: Cog) -> None:
    """The projection extension: the CRS code (or WKT2), native bbox, footprint, shape, transform.

    rio-stac can add these too, but asks PROJ to identify the CRS twice per item, which
    costs about 0.25 s each for a CRS whose WKT has no EPSG authority; ``crs_string``
    remembers the identification made when the raster was validated. A CRS without an
    EPSG code is given as WKT2 (2019), as ``proj:wkt2`` requires. A rotated grid's
    item geometry is its footprint (the rotated rectangle) in EPSG:4326, the bbox that
    footprint's envelope; rio-stac gives the envelope of the bounds for both.
    """
    with _opened(cog) as ds:
        if ds.crs is None:
            return
        identified = crs_string(ds.crs)
        native = footprint(ds.transform, ds.width, ds.height)
        rotated = not ds.transform.is_rectilinear
        ProjectionExtension.ext(item, add_if_missing=True).apply(
            code=identified if identified.startswith("EPSG:") else None,
            wkt2=None if identified.startswith("EPSG:") else ds.crs.to_wkt(version="WKT2_2019"),
            bbox=_envelope(native) if rotated else list(ds.bounds),
            geometry=native if rotated else bbox_to_geom(ds.bounds),
            shape=[ds.height, ds.width],
            transform=list(ds.transform),
        )
        if rotated:
            geometry = transform_geom(ds.crs, "EPSG:4326", _densified(native))
            item.geometry = geometry
            item.bbox = _envelope(geometry)


def _band_units(item: Item, cog: Cog) -> None:
    """A band's unit from its ``units`` metadata (CF) where GDAL's unit field is empty.

    A COG warped by GDAL's COG driver keeps band metadata but not the unit field.
    """
    bands = item.assets["data"].extra_fields.get("raster:bands") or []
    with _opened(cog) as ds:
        for index, band in enumerate(bands, start=1):
            if not band.get("unit") and index <= ds.count:
                unit = ds.tags(index).get("units")
                if unit:
                    band["unit"] = unit


def _densified(polygon: dict[str, Any], points: int = 21) -> dict[str, Any]:
    """``polygon`` with ``points`` vertices per edge, so a reprojected edge may curve."""
    ring = polygon["coordinates"][0]
    dense: list[list[float]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        for step in range(points):
            t = step / points
            dense.append([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t])
    dense.append(list(ring[-1]))
    return {"type": "Polygon", "coordinates": [dense]}


def build_item(
    cog: Cog,
    *,
    item_id: str,
    collection_id: str,
    href: str,
    properties: dict[str, Any],
    extra_assets: dict[str, tuple[Path | dict[str, Any], str, str]] | None = None,
    files: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A STAC item for ``cog`` (proj, raster and file extensions); never a null datetime.

    ``cog`` is a local file or a dataset opened in place (statistics come from its
    overviews: a few range reads). ``files`` gives the file fields (:func:`file_facts`)
    of a COG that is not a local file; an extra asset gives its path or its fields.
    """
    when = acquisition_datetime(cog) or datetime.now(tz=UTC)
    coverage = time_coverage(cog)
    if coverage is not None:
        when = coverage[0]
        if coverage[1] != coverage[0]:
            properties = {
                **properties,
                "start_datetime": _stamp(coverage[0]),
                "end_datetime": _stamp(coverage[1]),
            }
    with _sampled(cog) as sample:
        item = create_stac_item(
            sample,
            input_datetime=when,
            collection=collection_id,
            id=item_id,
            asset_name="data",
            asset_roles=["data"],
            asset_media_type=MediaType.COG,
            asset_href=href,
            with_proj=False,  # added below, with the CRS identified once per ingest
            with_raster=True,
            properties=properties,
        )
    add_projection(item, cog)
    _band_units(item, cog)
    if files is None:
        assert isinstance(cog, Path), "give the file fields of a COG opened in place"
        files = file_fields(cog)
    item.assets["data"].extra_fields.update(files)
    for name, (path, asset_href, title) in (extra_assets or {}).items():
        item.add_asset(
            name,
            Asset(
                href=asset_href,
                media_type=MediaType.COG,
                roles=["data"],
                title=title,
                extra_fields=file_fields(path) if isinstance(path, Path) else path,
            ),
        )
    if FILE_EXT not in item.stac_extensions:
        item.stac_extensions.append(FILE_EXT)
    doc: dict[str, Any] = item.to_dict(include_self_link=False)
    return doc
