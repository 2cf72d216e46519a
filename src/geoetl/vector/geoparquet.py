"""GeoParquet 1.1 from Arrow attributes and shapely geometries, written in parts and merged.

Each load task writes its chunk as one part (WKB geometry, a ``bbox`` covering column,
``geo`` metadata); finalize streams the parts into the published file, merging the
metadata (bbox, geometry types), and feeds the same parts to the GeoPackage writer.
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

GEOMETRY = "geometry"
COVERING = "bbox"
COMPRESSION = "zstd"


def part_table(
    attributes: pa.Table, geoms: npt.NDArray[np.object_], crs: CRS, geometry_type: str
) -> pa.Table:
    """``attributes`` plus WKB geometry and bbox columns, with GeoParquet metadata.

    The WKB (ISO) has the dimensions ``geometry_type`` declares: XY, or XYZ for a
    ``… Z`` type; nothing else (no M) reaches the GeoParquet file or the GeoPackage.
    """
    bounds = shapely.bounds(geoms)
    covering = pa.StructArray.from_arrays(
        [pa.array(bounds[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
    )
    dimensions: Literal[2, 3] = 3 if geometry_type.endswith(" Z") else 2
    wkb = shapely.to_wkb(geoms, output_dimension=dimensions, flavor="iso")
    table = pa.Table.from_arrays(
        [*attributes.columns, pa.array(wkb, pa.binary()), covering],
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
    pq.write_table(table, path, compression=COMPRESSION)


def merge_parts(parts: list[Path], out: Path) -> tuple[int, list[float]]:
    """Write the parts, in order, as one GeoParquet file; its row count and bbox."""
    metas = [pq.read_schema(p).metadata or {} for p in parts]
    geos = [json.loads(m[b"geo"]) for m in metas]
    merged = geos[0]
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
    schema = pq.read_schema(parts[0]).with_metadata({b"geo": json.dumps(merged).encode()})
    rows = 0
    with pq.ParquetWriter(out, schema, compression=COMPRESSION) as writer:
        for path in parts:
            table = pq.read_table(path, schema=schema)
            writer.write_table(table)
            rows += table.num_rows
    return rows, column["bbox"]


def batches(parts: list[Path], columns: list[str]) -> pa.RecordBatchReader:
    """The parts' ``columns`` as one stream of record batches (for the GeoPackage)."""
    schema = pq.read_schema(parts[0])
    fields = [schema.field(c) for c in columns]

    def read() -> Iterator[pa.RecordBatch]:
        for path in parts:
            yield from pq.ParquetFile(path).iter_batches(columns=columns, batch_size=65_536)

    return pa.RecordBatchReader.from_batches(pa.schema(fields), read())
