"""GeoParquet 1.1 from Arrow attributes and shapely geometries, written in parts and merged.

Each load task writes its chunk as one part (WKB geometry, a ``bbox`` covering column,
``geo`` metadata); finalize streams the parts to the feature store, then into the
published file, merging the metadata (bbox, geometry types).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from geoetl.vector.memory import release_unused

GEOMETRY = "geometry"
COVERING = "bbox"
COMPRESSION = "zstd"
# Parts are scratch, read once by finalize: written fast (LZ4, no dictionary, no
# statistics), which halves their cost; the published file gets zstd and dictionaries.
PART_OPTIONS: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": False,
    "write_statistics": False,
}
# Rows per batch streamed from the parts to the feature store.
BATCH = 16_384


def part_table(
    attributes: pa.Table, geoms: npt.NDArray[np.object_], crs: CRS, geometry_type: str
) -> pa.Table:
    """``attributes`` plus WKB geometry and bbox columns, with GeoParquet metadata.

    The WKB (ISO) has the dimensions ``geometry_type`` declares: XY, or XYZ for a
    ``… Z`` type; nothing else (no M) reaches the GeoParquet file or the GeoPackage.
    """
    dimensions: Literal[2, 3] = 3 if geometry_type.endswith(" Z") else 2
    wkb = shapely.to_wkb(geoms, output_dimension=dimensions, flavor="iso")
    return wkb_part_table(
        attributes, pa.array(wkb, pa.binary()), shapely.bounds(geoms), crs, geometry_type
    )


def wkb_part_table(
    attributes: pa.Table,
    wkb: pa.Array,
    bounds: npt.NDArray[np.float64],
    crs: CRS,
    geometry_type: str,
) -> pa.Table:
    """:func:`part_table` of geometries already written as ISO WKB, with their bounds."""
    covering = pa.StructArray.from_arrays(
        [pa.array(bounds[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
    )
    table = pa.Table.from_arrays(
        [*attributes.columns, wkb, covering],
        names=[*attributes.column_names, GEOMETRY, COVERING],
    )
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": [geometry_type],
        "crs": crs.to_json_dict(),
        "bbox": _total(bounds),
        "covering": {COVERING: {k: [COVERING, k] for k in ("xmin", "ymin", "xmax", "ymax")}},
    }
    if geometry_type.endswith("Polygon"):
        column["orientation"] = "counterclockwise"  # harden() orients every polygon
    geo = {"version": "1.1.0", "primary_column": GEOMETRY, "columns": {GEOMETRY: column}}
    return table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})


def _total(bounds: npt.NDArray[np.float64]) -> list[float]:
    if not len(bounds):
        return []
    return [
        float(np.nanmin(bounds[:, 0])),
        float(np.nanmin(bounds[:, 1])),
        float(np.nanmax(bounds[:, 2])),
        float(np.nanmax(bounds[:, 3])),
    ]


def write_part(table: pa.Table, path: Path) -> None:
    """One part file."""
    pq.write_table(table, path, **PART_OPTIONS)


class PartWriter:
    """One part file written a batch (:func:`part_table`) at a time, each a row group.

    The ``geo`` metadata (every batch's geometry types, the bbox over all of them) is
    added to the file's footer when it is closed; :func:`part_geo` reads it back.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._geos: list[dict[str, Any]] = []

    def write(self, table: pa.Table) -> None:
        """Append a batch."""
        geo = json.loads((table.schema.metadata or {})[b"geo"])
        self._geos.append(geo)
        table = table.replace_schema_metadata(None)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, **PART_OPTIONS)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> str:
        """Finish the file; the geometry type it declares (``… Z`` when a batch had Z)."""
        if self._writer is None:
            raise ValueError(f"nothing was written to {self.path.name}")
        merged = merged_geo(self._geos)
        self._writer.add_key_value_metadata({"geo": json.dumps(merged)})
        self._writer.close()
        types: list[str] = merged["columns"][GEOMETRY]["geometry_types"]
        return max(types, key=lambda t: t.endswith(" Z"))

    def abort(self) -> None:
        """Drop the file."""
        if self._writer is not None:
            self._writer.close()
        self.path.unlink(missing_ok=True)


def part_geo(path: Path) -> dict[str, Any]:
    """A part's ``geo`` metadata: in the Arrow schema (one table) or the footer (streamed)."""
    found = (pq.read_metadata(path).metadata or {}).get(b"geo")
    if found is None:
        found = (pq.read_schema(path).metadata or {})[b"geo"]
    geo: dict[str, Any] = json.loads(found)
    return geo


def merged_geo(geos: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``geo`` metadata for several parts: every geometry type, the bbox over all."""
    merged: dict[str, Any] = json.loads(json.dumps(geos[0]))
    column = merged["columns"][GEOMETRY]
    types = {t for g in geos for t in g["columns"][GEOMETRY]["geometry_types"]}
    column["geometry_types"] = sorted(types)
    boxes = [g["columns"][GEOMETRY]["bbox"] for g in geos if g["columns"][GEOMETRY]["bbox"]]
    column["bbox"] = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        if boxes
        else []
    )
    return merged


class MergedParts:
    """The parts, in order, as one stream of rows and as one GeoParquet file.

    Each pass reads the parts a row group at a time, so memory stays that of one row
    group: :meth:`batches` streams the rows to a feature store, :meth:`finish` writes
    the merged file. The parts are read twice (scratch parts read fast, see
    :data:`PART_OPTIONS`) so that the file can be written while the database indexes
    what it was sent.
    """

    def __init__(self, parts: list[Path], out: Path) -> None:
        self.parts, self.out = parts, out
        merged = merged_geo([part_geo(p) for p in parts])
        self.bbox: list[float] = merged["columns"][GEOMETRY]["bbox"]
        self.schema = pq.read_schema(parts[0]).with_metadata({b"geo": json.dumps(merged).encode()})

    def _groups(self) -> Iterator[pa.Table]:
        """The parts' row groups, in order, in the merged schema."""
        for path in self.parts:
            source = pq.ParquetFile(path)
            for i in range(source.num_row_groups):
                table = source.read_row_group(i)
                if table.schema != self.schema:
                    table = table.cast(self.schema)
                yield table
                del table
                release_unused()

    def batches(self, columns: list[str]) -> pa.RecordBatchReader:
        """The rows' ``columns`` as one stream of record batches (for the feature store)."""
        fields = [self.schema.field(c) for c in columns]

        def read() -> Iterator[pa.RecordBatch]:
            for table in self._groups():
                yield from table.select(columns).to_batches(max_chunksize=BATCH)

        return pa.RecordBatchReader.from_batches(pa.schema(fields), read())

    def finish(self) -> tuple[int, list[float]]:
        """Write the merged file: its row count and bbox."""
        rows = 0
        # Dictionaries for the attributes only: every geometry and bbox is distinct, so
        # a dictionary of them is built for nothing (15% of the write).
        attributes = [n for n in self.schema.names if n not in (GEOMETRY, COVERING)]
        with pq.ParquetWriter(
            self.out, self.schema, compression=COMPRESSION, use_dictionary=attributes
        ) as writer:
            for table in self._groups():
                writer.write_table(table)
                rows += table.num_rows
        return rows, self.bbox


def merge_parts(parts: list[Path], out: Path) -> tuple[int, list[float]]:
    """Write the parts, in order, as one GeoParquet file; its row count and bbox.

    Streamed a row group at a time: memory stays that of one part's row group.
    """
    return MergedParts(parts, out).finish()


def batches(parts: list[Path], columns: list[str]) -> pa.RecordBatchReader:
    """The parts' ``columns`` as one stream of record batches (for the GeoPackage)."""
    schema = pq.read_schema(parts[0])
    fields = [schema.field(c) for c in columns]

    def read() -> Iterator[pa.RecordBatch]:
        # A row group at a time: iter_batches reads ahead, holding most of a part.
        for path in parts:
            source = pq.ParquetFile(path)
            for i in range(source.num_row_groups):
                group = source.read_row_group(i, columns=columns)
                yield from group.to_batches(max_chunksize=BATCH)
                del group
                release_unused()

    return pa.RecordBatchReader.from_batches(pa.schema(fields), read())
