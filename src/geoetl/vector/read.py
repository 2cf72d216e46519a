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

from geoetl import gdalsafe
from geoetl.errors import InputError
from geoetl.vector.archive import check_archive, safe_extract
from geoetl.vector.columns import check_column_count

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
    """The dataset to open: ``path`` itself, or the one dataset inside a zip archive.

    The dataset is a checked user file (:func:`geoetl.gdalsafe.user_file`): no VRT or
    other reference format, nothing outside its folder (a zip's extraction folder).
    """
    folder = path.parent
    gdalsafe.user_file(path)
    if path.suffix.lower() == ".zip":
        folder = scratch / "unzipped"
        files = safe_extract(path, folder)
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
        gdalsafe.user_file(path, folder=folder)
    if path.suffix.lower() == ".kmz":
        check_archive(path)  # GDAL unpacks it: the same limits as for an uploaded zip
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
    if path.suffix.lower() == ".gml":
        return {"WRITE_GFS": "NO"}  # GDAL would write a .gfs file next to the source
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
    check_column_count(len(fields), path.name)
    return LayerInfo(
        name=path.stem,
        geometry_type=",".join(column.get("geometry_types", [])) or None,
        features=meta.num_rows,
        crs=None if crs is None else json.dumps(crs) if isinstance(crs, dict) else str(crs),
        fields=fields,
    )


def list_layers(path: Path, csv: CsvOptions | None = None) -> list[LayerInfo]:
    """The layers with features; metadata-only layers are left out.

    The file is checked (:mod:`geoetl.gdalsafe`) and GDAL's driver for it must be one
    geoetl accepts before any layer is read; a layer with more than
    :data:`~geoetl.vector.columns.MAX_COLUMNS` columns is refused.
    """
    if _is_parquet(path):
        gdalsafe.user_file(path)
        return [_parquet_layer(path)]
    options = _open_options(path, csv)
    with gdalsafe.reading_vector(path) as src:
        if path.suffix.lower() == ".csv":
            check_column_count(csv_header_columns(path), path.name)
        try:
            gdalsafe.vector_info(src, **options)
            layers = pyogrio.list_layers(src.path)
        except (DataSourceError, DataLayerError) as exc:
            raise InputError(f"{path.name} is not a vector dataset GDAL can read ({exc})") from None
        out = []
        for name, geometry_type in layers:
            if name in METADATA_LAYERS:
                continue
            # Some drivers (GML) do not know their count until asked to scan.
            info = gdalsafe.vector_info(src, layer=name, force_feature_count=True, **options)
            fields = [str(f) for f in info.get("fields", [])]
            check_column_count(len(fields), f"layer {name!r} of {path.name}")
            out.append(
                LayerInfo(
                    name=str(name),
                    geometry_type=info.get("geometry_type") or geometry_type,
                    features=int(info.get("features") or 0),
                    crs=info.get("crs"),
                    fields=fields,
                )
            )
    return out


# CSV separators GDAL's CSV driver detects on its own.
CSV_SEPARATORS = b",;\t|"
# How much of a CSV's first line is read to count its columns. GDAL's CSV driver reads
# lines up to 10 MB (MAX_LINE_SIZE) and keeps at most 2,000 fields, silently: the
# header is counted here so a wider file is refused with its real column count.
CSV_HEADER_BYTES = 64 * 1024 * 1024


def csv_header_columns(path: Path) -> int:
    """The number of columns in a CSV's header line (quotes respected).

    The separator is the one of comma, semicolon, tab or pipe that splits the header
    into the most columns; a header longer than :data:`CSV_HEADER_BYTES` counts what was
    read.
    """
    counts = dict.fromkeys(CSV_SEPARATORS, 0)
    quoted = False
    read = 0
    with path.open("rb") as fh:
        while read < CSV_HEADER_BYTES and (block := fh.read(1024 * 1024)):
            read += len(block)
            if not quoted and b'"' not in block:
                line, newline, _ = block.partition(b"\n")
                for sep in counts:
                    counts[sep] += line.count(sep)
                if newline:
                    break
                continue
            for byte in block:
                if byte == 0x22:  # '"'
                    quoted = not quoted
                elif quoted:
                    continue
                elif byte == 0x0A:
                    return 1 + max(counts.values())
                elif byte in counts:
                    counts[byte] += 1
    return 1 + max(counts.values())


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
        gdalsafe.user_file(path)
        return _parquet_chunk(path, skip, limit)
    options = _open_options(path, csv)
    with gdalsafe.reading_vector(path) as src:
        try:
            gdalsafe.vector_info(src, layer=layer, **options)  # the driver, before any data
            meta, table = pyogrio.read_arrow(
                src.path, layer=layer, skip_features=skip, max_features=limit, **options
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
