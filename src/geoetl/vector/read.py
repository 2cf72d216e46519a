"""Open any vector dataset GDAL reads: find the dataset (also inside a zip), list layers, read."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely
from pydantic import BaseModel, Field
from pyogrio.errors import DataLayerError, DataSourceError

from geoetl import gdalsafe
from geoetl.errors import InputError
from geoetl.vector import geoarrow
from geoetl.vector.archive import check_archive, safe_extract
from geoetl.vector.columns import check_column_count

# Files that are a dataset on their own (a .gdb folder is one too).
DATASET_SUFFIXES = set(gdalsafe.VECTOR_SUFFIXES)
SHAPEFILE_SIDECARS = (".dbf", ".shx")
# Layers GDAL reports that hold no features of the user's (GeoPackage metadata, etc.).
METADATA_LAYERS = {"layer_styles", "gpkg_metadata", "gpkg_metadata_reference"}


class LayerInfo(BaseModel):
    """One layer of a dataset."""

    name: str
    geometry_type: str | None = Field(description="None: the layer has no geometry.")
    features: int
    crs: str | None
    fields: list[str]
    default_crs: str | None = Field(
        default=None, description="The CRS assumed without crs or input_crs (CSV lat/lon)."
    )
    geometry_columns: list[str] = Field(
        default_factory=list, description="CSV columns the geometry is read from."
    )
    column_types: dict[str, str] = Field(
        default_factory=dict, description="Types detected for a CSV's text columns."
    )


class CsvOptions(BaseModel):
    """How to find geometries in a CSV: lat/lon columns or a WKT column."""

    lat: str | None = None
    lon: str | None = None
    wkt: str | None = None


# Column names a CSV's geometry is found by when none is named (any case). Latitude and
# longitude are WGS 84 degrees unless input_crs says otherwise; x/y and WKT need a CRS.
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "long", "lng", "longitude")
X_NAMES, Y_NAMES = ("x",), ("y",)
WKT_NAMES = ("wkt", "geometry", "geom")
LATLON_CRS = "EPSG:4326"


class CsvGeometry(NamedTuple):
    """Where a CSV's geometry comes from: GDAL open options, the columns, the assumed CRS."""

    options: dict[str, str]
    columns: list[str]
    default_crs: str | None


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


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _open_options(path: Path, csv: CsvGeometry | None = None) -> dict[str, Any]:
    if path.suffix.lower() == ".gml":
        return {"WRITE_GFS": "NO"}  # GDAL would write a .gfs file next to the source
    return dict(csv.options) if csv else {}


def _shown(names: list[str], most: int = 50) -> str:
    listed = ", ".join(repr(n) for n in names[:most])
    return listed + (f", … ({len(names)} in all)" if len(names) > most else "") or "none"


def csv_geometry(src: gdalsafe.UserFile, csv: CsvOptions | None) -> CsvGeometry:
    """The columns a CSV's geometry is read from: those named in ``csv``, else found by name.

    Call inside :func:`geoetl.gdalsafe.reading_vector`. An InputError names what is
    missing and lists the file's columns when no geometry can be found.
    """
    csv = csv or CsvOptions()
    info = gdalsafe.vector_info(src)  # no geometry options: every column is a field
    header = [str(f) for f in info.get("fields", [])]
    by_name = {h.lower(): h for h in reversed(header)}  # the first of names alike in case
    columns = f"its columns are: {_shown(header)}"

    def named(option: str, value: str) -> str:
        found = by_name.get(value.lower())
        if found is None:
            raise InputError(
                f"{option} names column {value[:100]!r}, which {src.name} does not have; {columns}"
            )
        if "," in found:  # GDAL takes a comma-separated list of names
            raise InputError(
                f"{src.name}: column {found[:100]!r} has a comma in its name; rename it to use "
                "it as the geometry"
            )
        return found

    def first(names: tuple[str, ...]) -> str | None:
        return next((by_name[n] for n in names if n in by_name), None)

    if csv.wkt:
        return _wkt_geometry(named("csv_wkt", csv.wkt))
    if csv.lat or csv.lon:
        if not (csv.lat and csv.lon):
            raise InputError("give both csv_lat and csv_lon (or csv_wkt)")
        return _point_geometry(named("csv_lon", csv.lon), named("csv_lat", csv.lat), LATLON_CRS)
    lon, lat = first(LON_NAMES), first(LAT_NAMES)
    if lon and lat:
        return _point_geometry(lon, lat, LATLON_CRS)
    x, y = first(X_NAMES), first(Y_NAMES)
    if x and y:
        return _point_geometry(x, y, None)
    wkt = first(WKT_NAMES)
    if wkt:
        return _wkt_geometry(wkt)
    raise InputError(no_geometry(src.name, src.name, header))


def _point_geometry(lon: str, lat: str, crs: str | None) -> CsvGeometry:
    options = {"X_POSSIBLE_NAMES": lon, "Y_POSSIBLE_NAMES": lat, "KEEP_GEOM_COLUMNS": "NO"}
    return CsvGeometry(options, [lat, lon], crs)


def _wkt_geometry(column: str) -> CsvGeometry:
    return CsvGeometry({"GEOM_POSSIBLE_NAMES": column, "KEEP_GEOM_COLUMNS": "NO"}, [column], None)


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
    geoarrow.check_encoding(str(column.get("encoding", "WKB")), path.name)
    crs = column.get("crs", "OGC:CRS84")
    fields = [n for n in meta.schema.names if n not in (primary, "bbox")]
    check_column_count(len(fields), path.name)
    return LayerInfo(
        name=path.stem,
        # No types listed: any type (GeoParquet 1.1), not "no geometry".
        geometry_type=",".join(column.get("geometry_types", [])) or "Unknown",
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
    with gdalsafe.reading_vector(path) as src:
        geometry = None
        if _is_csv(path):
            check_column_count(csv_header_columns(path), path.name)
        try:
            if _is_csv(path):
                geometry = csv_geometry(src, csv)
            options = _open_options(path, geometry)
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
            layer = LayerInfo(
                name=str(name),
                geometry_type=info.get("geometry_type") or geometry_type,
                features=int(info.get("features") or 0),
                crs=info.get("crs"),
                fields=fields,
            )
            if geometry is not None:
                layer.default_crs = geometry.default_crs
                layer.geometry_columns = geometry.columns
                layer.column_types = _csv_types(src, layer.name, options)
            out.append(layer)
    return out


def _csv_types(src: gdalsafe.UserFile, layer: str, options: dict[str, Any]) -> dict[str, str]:
    """The types of a CSV's text columns, over the whole file (one streamed pass)."""
    # Here, not at the top: it loads pyarrow.compute, which no other format needs.
    from geoetl.vector.csvtypes import detect_types

    try:
        with pyogrio.open_arrow(
            src.path, layer=layer, read_geometry=False, use_pyarrow=True, **options
        ) as (_meta, reader):
            return detect_types(reader)
    except (DataSourceError, DataLayerError) as exc:
        raise InputError(f"cannot read layer {layer!r} of {src.name}: {exc}") from None


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


class Chunk:
    """A slice of a layer: attributes as Arrow, geometries as shapely, the layer's CRS.

    ``wkb`` is the geometry column as read, when the source gave WKB (GDAL does); the
    shapely geometries are then decoded from it when first asked for.
    """

    def __init__(
        self,
        attributes: pa.Table,
        crs: str | None,
        *,
        geometries: npt.NDArray[np.object_] | None = None,
        wkb: pa.Array | None = None,
    ) -> None:
        if geometries is None and wkb is None:
            raise ValueError("a chunk needs its geometries or their WKB")
        self.attributes, self.crs, self.wkb = attributes, crs, wkb
        self._geometries = geometries

    @property
    def geometries(self) -> npt.NDArray[np.object_]:
        """The geometries as shapely objects (None where missing)."""
        if self._geometries is None:
            assert self.wkb is not None
            self._geometries = shapely.from_wkb(self.wkb.to_numpy(zero_copy_only=False))
        return self._geometries


def _parquet_chunk(path: Path, skip: int, limit: int | None) -> Chunk:
    batches = list(_parquet_batches(path, skip, limit, PARQUET_BATCH))
    if len(batches) == 1:
        return batches[0]
    if not batches:  # nothing in range: the layer's empty chunk, with its schema
        return next(_parquet_batches(path, 0, 0, PARQUET_BATCH, empty=True))
    attributes = pa.concat_tables([b.attributes for b in batches])
    geometries = np.concatenate([b.geometries for b in batches])
    return Chunk(attributes, batches[0].crs, geometries=geometries)


# Rows decoded at a time from a GeoParquet source (an upper bound for read_batches).
PARQUET_BATCH = 65_536


def _parquet_batches(
    path: Path, skip: int, limit: int | None, batch_size: int, *, empty: bool = False
) -> Iterator[Chunk]:
    """Rows ``skip`` to ``skip + limit`` of a GeoParquet file, a batch at a time.

    Only the row groups holding those rows are read. ``empty`` yields one batch of no
    rows (the schema of the file).
    """
    source = pq.ParquetFile(path)
    geo = json.loads((source.schema_arrow.metadata or {}).get(b"geo", b"{}"))
    primary = geo["primary_column"]
    column = geo["columns"][primary]
    encoding = str(column.get("encoding", "WKB"))
    covering = column.get("covering", {}).get("bbox", {}).get("xmin", [None])[0]
    crs = column.get("crs", "OGC:CRS84")
    crs_text = None if crs is None else json.dumps(crs) if isinstance(crs, dict) else str(crs)
    end = source.metadata.num_rows if limit is None else min(skip + limit, source.metadata.num_rows)
    groups: list[int] = []
    first_row = start = 0
    for i in range(source.num_row_groups):
        rows = source.metadata.row_group(i).num_rows
        if start + rows > skip and start < end:
            if not groups:
                first_row = start
            groups.append(i)
        start += rows
    if empty:
        table = source.schema_arrow.empty_table()
        yield _parquet_rows(table, primary, covering, crs_text, encoding, path.name)
        return
    position = first_row
    for batch in source.iter_batches(batch_size=batch_size, row_groups=groups):
        lo, hi = max(skip - position, 0), min(end - position, batch.num_rows)
        position += batch.num_rows
        if hi > lo:
            table = pa.Table.from_batches([batch.slice(lo, hi - lo)])
            yield _parquet_rows(table, primary, covering, crs_text, encoding, path.name)
        if position >= end:
            break


def _parquet_rows(
    table: pa.Table,
    primary: str,
    covering: str | None,
    crs: str | None,
    encoding: str,
    source: str,
) -> Chunk:
    """A batch's attributes and geometries (``encoding``: the column's; ``source``: the file)."""
    geoms = geoarrow.decode(table.column(primary), encoding, source)
    drop = [primary, *([covering] if covering in table.column_names else [])]
    return Chunk(table.drop_columns(drop), crs, geometries=geoms)


def read_batches(
    path: Path,
    layer: str,
    csv: CsvOptions | None = None,
    *,
    skip: int = 0,
    limit: int | None = None,
    column_types: dict[str, str] | None = None,
    batch_size: int = 65_536,
) -> Generator[Chunk, None, None]:
    """Like :func:`read_chunk`, a batch of at most ``batch_size`` features at a time.

    Only one batch is decoded at once (GDAL's Arrow stream, or a GeoParquet file's row
    groups), so memory stays that of a batch however many features are read. Every
    batch of a layer has the same Arrow schema.
    """
    if _is_parquet(path):
        gdalsafe.user_file(path)
        yield from _parquet_batches(path, skip, limit, min(batch_size, PARQUET_BATCH))
        return
    with gdalsafe.reading_vector(path) as src, ExitStack() as stack:
        try:
            options = _open_options(path, csv_geometry(src, csv) if _is_csv(path) else None)
            gdalsafe.vector_info(src, layer=layer, **options)  # the driver, before any data
            meta, reader = stack.enter_context(
                pyogrio.open_arrow(
                    src.path,
                    layer=layer,
                    skip_features=skip,  # GDAL's Arrow stream takes no max_features:
                    batch_size=batch_size if limit is None else min(batch_size, limit),
                    use_pyarrow=True,
                    **options,
                )
            )
        except (DataSourceError, DataLayerError) as exc:
            raise InputError(f"cannot read layer {layer!r} of {path.name}: {exc}") from None
        geometry = meta.get("geometry_name") or "wkb_geometry"
        if geometry not in reader.schema.names:
            raise InputError(
                no_geometry(path.name, layer, [str(f) for f in meta.get("fields", [])])
            )
        left = limit
        while left is None or left > 0:  # the stream stops after ``limit`` features
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (DataSourceError, DataLayerError) as exc:
                raise InputError(f"cannot read layer {layer!r} of {path.name}: {exc}") from None
            if left is not None:
                batch = batch.slice(0, left)
                left -= batch.num_rows
            table = pa.Table.from_batches([batch])
            del batch
            yield _chunk_of(table, geometry, column_types, meta.get("crs"))


def _chunk_of(
    table: pa.Table, geometry: str, column_types: dict[str, str] | None, crs: str | None
) -> Chunk:
    wkb = table[geometry].combine_chunks()
    attributes = table.drop_columns([geometry])
    if column_types:
        from geoetl.vector.csvtypes import apply_types

        attributes = apply_types(attributes, column_types)
    return Chunk(attributes, crs, wkb=wkb)


def read_chunk(
    path: Path,
    layer: str,
    csv: CsvOptions | None = None,
    *,
    skip: int = 0,
    limit: int | None = None,
    column_types: dict[str, str] | None = None,
) -> Chunk:
    """Read (part of) a layer through GDAL's Arrow interface.

    The attribute schema comes from the layer definition, so every chunk of a layer
    has the same Arrow schema whatever its values (an all-null column stays typed).
    A CSV's text columns are converted to ``column_types`` (:attr:`LayerInfo.column_types`,
    detected over the whole file by :func:`list_layers`).
    """
    if _is_parquet(path):
        gdalsafe.user_file(path)
        return _parquet_chunk(path, skip, limit)
    with gdalsafe.reading_vector(path) as src:
        try:
            options = _open_options(path, csv_geometry(src, csv) if _is_csv(path) else None)
            gdalsafe.vector_info(src, layer=layer, **options)  # the driver, before any data
            meta, table = pyogrio.read_arrow(
                src.path, layer=layer, skip_features=skip, max_features=limit, **options
            )
        except (DataSourceError, DataLayerError) as exc:
            raise InputError(f"cannot read layer {layer!r} of {path.name}: {exc}") from None
    geometry = meta.get("geometry_name") or "wkb_geometry"
    if geometry not in table.column_names:
        raise InputError(no_geometry(path.name, layer, [str(f) for f in meta.get("fields", [])]))
    return _chunk_of(table, geometry, column_types, meta.get("crs"))


def no_geometry(dataset: str, layer: str, fields: list[str], others: Sequence[str] = ()) -> str:
    """What to say about a layer without geometry (a table of attributes only)."""
    if dataset.lower().endswith(".csv"):
        return (
            f"{dataset} has no geometry: name its coordinate columns with csv_lat and csv_lon "
            f"(or a column of WKT geometries with csv_wkt); its columns are: {_shown(fields)}"
        )
    message = (
        f"layer {layer!r} of {dataset} has no geometry (a table of attributes only, columns: "
        f"{_shown(fields, 20)}); geoetl publishes features with a geometry"
    )
    if others:
        message += f" — choose a layer that has one with layer: {_shown(list(others), 20)}"
    return message
