"""Open any vector dataset GDAL reads: find the dataset (also inside a zip), list layers, read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely
from pydantic import BaseModel
from pyogrio.errors import DataLayerError, DataSourceError

from geoetl.errors import InputError
from geoetl.vector.archive import safe_extract

# Files that are a dataset on their own (a .gdb folder is one too).
DATASET_SUFFIXES = {
    ".shp",
    ".gpkg",
    ".geojson",
    ".json",
    ".kml",
    ".kmz",
    ".csv",
    ".fgb",
    ".parquet",
    ".geoparquet",
    ".gml",
}
SHAPEFILE_SIDECARS = (".dbf", ".shx")
# Layers GDAL reports that hold no features of the user's (GeoPackage metadata, etc.).
METADATA_LAYERS = {"layer_styles", "gpkg_metadata", "gpkg_metadata_reference"}


class LayerInfo(BaseModel):
    """One layer of a dataset."""

    name: str
    geometry_type: str | None
    features: int
    crs: str | None
    fields: list[str]


class CsvOptions(BaseModel):
    """How to find geometries in a CSV: lat/lon columns or a WKT column."""

    lat: str | None = None
    lon: str | None = None
    wkt: str | None = None


def find_dataset(path: Path, scratch: Path) -> Path:
    """The dataset to open: ``path`` itself, or the one dataset inside a zip archive."""
    if path.suffix.lower() == ".zip":
        files = safe_extract(path, scratch / "unzipped")
        candidates = sorted(
            {f.parent for f in files if f.parent.suffix.lower() == ".gdb"}
            | {f for f in files if f.suffix.lower() in DATASET_SUFFIXES}
        )
        if not candidates:
            raise InputError(
                f"{path.name} holds no vector dataset GDAL reads "
                f"(looked for {', '.join(sorted(DATASET_SUFFIXES))} or a .gdb folder)"
            )
        if len(candidates) > 1:
            names = ", ".join(c.name for c in candidates)
            raise InputError(
                f"{path.name} holds several datasets ({names}); upload one dataset per archive"
            )
        path = candidates[0]
    if path.suffix.lower() == ".shp":
        missing = [s for s in SHAPEFILE_SIDECARS if not _sidecar(path, s).exists()]
        if missing:
            raise InputError(
                f"{path.name} comes without its {' and '.join(missing)} file(s); a shapefile "
                "needs .shp, .shx and .dbf together (zip them, or upload all of them)"
            )
    return path


def _sidecar(shp: Path, suffix: str) -> Path:
    for candidate in (shp.with_suffix(suffix), shp.with_suffix(suffix.upper())):
        if candidate.exists():
            return candidate
    return shp.with_suffix(suffix)


def _open_options(path: Path, csv: CsvOptions | None) -> dict[str, Any]:
    if path.suffix.lower() != ".csv":
        return {}
    csv = csv or CsvOptions()
    if csv.wkt:
        return {"GEOM_POSSIBLE_NAMES": csv.wkt, "KEEP_GEOM_COLUMNS": "NO"}
    return {
        "X_POSSIBLE_NAMES": csv.lon or "lon,longitude,x,lng",
        "Y_POSSIBLE_NAMES": csv.lat or "lat,latitude,y",
        "GEOM_POSSIBLE_NAMES": "wkt,geometry,geom",
        "KEEP_GEOM_COLUMNS": "NO",
    }


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".geoparquet")


def _parquet_layer(path: Path) -> LayerInfo:
    # GDAL builds without the Parquet driver are common: read GeoParquet with pyarrow.
    try:
        meta = pq.read_metadata(path)
        geo = json.loads((meta.metadata or {}).get(b"geo", b"{}"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable GeoParquet file ({exc})") from None
    primary = geo.get("primary_column")
    if not primary:
        raise InputError(f"{path.name} is Parquet without GeoParquet metadata (no geometry)")
    column = geo["columns"][primary]
    crs = column.get("crs", "OGC:CRS84")
    fields = [n for n in meta.schema.names if n not in (primary, "bbox")]
    return LayerInfo(
        name=path.stem,
        geometry_type=",".join(column.get("geometry_types", [])) or None,
        features=meta.num_rows,
        crs=None if crs is None else json.dumps(crs) if isinstance(crs, dict) else str(crs),
        fields=fields,
    )


def list_layers(path: Path, csv: CsvOptions | None = None) -> list[LayerInfo]:
    """The layers with features; metadata-only layers are left out."""
    if _is_parquet(path):
        return [_parquet_layer(path)]
    options = _open_options(path, csv)
    try:
        layers = pyogrio.list_layers(path)
    except DataSourceError as exc:
        raise InputError(f"{path.name} is not a vector dataset GDAL can read ({exc})") from None
    out = []
    for name, geometry_type in layers:
        if name in METADATA_LAYERS:
            continue
        # Some drivers (GML) do not know their count until asked to scan.
        info = pyogrio.read_info(path, layer=name, force_feature_count=True, **options)
        out.append(
            LayerInfo(
                name=str(name),
                geometry_type=info.get("geometry_type") or geometry_type,
                features=int(info.get("features") or 0),
                crs=info.get("crs"),
                fields=[str(f) for f in info.get("fields", [])],
            )
        )
    return out


class Chunk(NamedTuple):
    """A slice of a layer: attributes as Arrow, geometries as shapely, the layer's CRS."""

    attributes: pa.Table
    geometries: npt.NDArray[np.object_]
    crs: str | None


def _parquet_chunk(path: Path, skip: int, limit: int | None) -> Chunk:
    table = pq.read_table(path).slice(skip, limit)
    geo = json.loads((table.schema.metadata or {}).get(b"geo", b"{}"))
    primary = geo["primary_column"]
    column = geo["columns"][primary]
    covering = column.get("covering", {}).get("bbox", {}).get("xmin", [None])[0]
    # GeoPandas decodes every GeoParquet geometry encoding (WKB and native GeoArrow).
    geoms = gpd.GeoDataFrame.from_arrow(table.select([primary]), geometry=primary)
    crs = column.get("crs", "OGC:CRS84")
    drop = [primary, *([covering] if covering in table.column_names else [])]
    return Chunk(
        table.drop_columns(drop),
        geoms.geometry.to_numpy(),
        None if crs is None else json.dumps(crs) if isinstance(crs, dict) else str(crs),
    )


def read_chunk(
    path: Path,
    layer: str,
    csv: CsvOptions | None = None,
    *,
    skip: int = 0,
    limit: int | None = None,
) -> Chunk:
    """Read (part of) a layer through GDAL's Arrow interface.

    The attribute schema comes from the layer definition, so every chunk of a layer
    has the same Arrow schema whatever its values (an all-null column stays typed).
    """
    if _is_parquet(path):
        return _parquet_chunk(path, skip, limit)
    try:
        meta, table = pyogrio.read_arrow(
            path,
            layer=layer,
            skip_features=skip,
            max_features=limit,
            **_open_options(path, csv),
        )
    except (DataSourceError, DataLayerError) as exc:
        raise InputError(f"cannot read layer {layer!r} of {path.name}: {exc}") from None
    geometry = meta.get("geometry_name") or "wkb_geometry"
    if geometry not in table.column_names:
        raise InputError(
            f"layer {layer!r} of {path.name} has no geometry; for a CSV give csv_lat/csv_lon "
            "or csv_wkt naming the coordinate columns"
        )
    geoms = shapely.from_wkb(table[geometry].to_numpy(zero_copy_only=False))
    return Chunk(table.drop_columns([geometry]), geoms, meta.get("crs"))
