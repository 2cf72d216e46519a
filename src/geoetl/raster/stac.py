"""STAC items for COGs, built with rio-stac and pystac."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rasterio
from pystac import Asset, Item, MediaType
from pystac.extensions.projection import ProjectionExtension
from rio_stac import create_stac_item
from rio_stac.stac import bbox_to_geom

from geoetl.raster.inspect import crs_string
from geoetl.storage.objectstore import sha256_file

FILE_EXT = "https://stac-extensions.github.io/file/v2.1.0/schema.json"


def acquisition_datetime(path: Path) -> datetime | None:
    """The file's TIFF date tag, when it has a usable one."""
    with rasterio.open(path) as ds:
        value = ds.tags().get("TIFFTAG_DATETIME")
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def file_fields(path: Path) -> dict[str, Any]:
    """File extension fields: size and a multihash SHA-256 checksum."""
    return {"file:size": path.stat().st_size, "file:checksum": "1220" + sha256_file(path)}


def add_projection(item: Item, cog: Path) -> None:
    """The projection extension: the CRS code (or WKT2), native bbox, footprint, shape, transform.

    rio-stac can add these too, but asks PROJ to identify the CRS twice per item, which
    costs about 0.5 s for a CRS whose WKT has no EPSG authority; ``crs_string`` remembers
    the identification made when the raster was validated.
    """
    with rasterio.open(cog) as ds:
        if ds.crs is None:
            return
        identified = crs_string(ds.crs)
        ProjectionExtension.ext(item, add_if_missing=True).apply(
            code=identified if identified.startswith("EPSG:") else None,
            wkt2=None if identified.startswith("EPSG:") else ds.crs.to_wkt(),
            bbox=list(ds.bounds),
            geometry=bbox_to_geom(ds.bounds),
            shape=[ds.height, ds.width],
            transform=list(ds.transform),
        )


def build_item(
    cog: Path,
    *,
    item_id: str,
    collection_id: str,
    href: str,
    properties: dict[str, Any],
    extra_assets: dict[str, tuple[Path, str, str]] | None = None,
) -> dict[str, Any]:
    """A STAC item for ``cog`` (proj, raster and file extensions); never a null datetime."""
    when = acquisition_datetime(cog) or datetime.now(tz=UTC)
    item = create_stac_item(
        str(cog),
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
    item.assets["data"].extra_fields.update(file_fields(cog))
    for name, (path, asset_href, title) in (extra_assets or {}).items():
        item.add_asset(
            name,
            Asset(
                href=asset_href,
                media_type=MediaType.COG,
                roles=["data"],
                title=title,
                extra_fields=file_fields(path),
            ),
        )
    if FILE_EXT not in item.stac_extensions:
        item.stac_extensions.append(FILE_EXT)
    doc: dict[str, Any] = item.to_dict(include_self_link=False)
    return doc
