"""A GeoParquet geometry column as shapely geometries: WKB or a native GeoArrow encoding.

GeoParquet 1.1 allows WKB and the six single-type GeoArrow encodings (``point`` …
``multipolygon``), whose coordinates are nested lists of ``{x, y[, z][, m]}`` structs
(separated) or of fixed-size lists (interleaved). Native columns are decoded with
:func:`shapely.from_ragged_array` on the column's own offset and coordinate buffers,
without a copy per geometry; M values are left out (geoetl drops them anyway).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely

from geoetl.errors import InputError

# Encoding → (shapely type, levels of lists above the coordinates).
NATIVE = {
    "point": (shapely.GeometryType.POINT, 0),
    "linestring": (shapely.GeometryType.LINESTRING, 1),
    "polygon": (shapely.GeometryType.POLYGON, 2),
    "multipoint": (shapely.GeometryType.MULTIPOINT, 1),
    "multilinestring": (shapely.GeometryType.MULTILINESTRING, 2),
    "multipolygon": (shapely.GeometryType.MULTIPOLYGON, 3),
}


def check_encoding(encoding: str, source: str) -> str:
    """The encoding, lower case; InputError unless GeoParquet defines it."""
    kind = encoding.lower()
    if kind != "wkb" and kind not in NATIVE:
        raise InputError(
            f"{source}: geometry encoding {encoding!r} is not one GeoParquet defines "
            f"(WKB or {', '.join(NATIVE)})"
        )
    return kind


def decode(
    column: pa.Array | pa.ChunkedArray, encoding: str, source: str
) -> npt.NDArray[np.object_]:
    """The geometries of ``column`` (None where it is null); InputError for other encodings."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array, pa.ExtensionArray):  # geoarrow.* types, when registered
        array = array.storage
    kind = check_encoding(encoding, source)
    if kind == "wkb":
        binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
        if not any(test(array.type) for test in binary):
            raise InputError(f"{source}: the WKB geometry column is {array.type}, not binary")
    try:
        if kind == "wkb":
            geoms: npt.NDArray[np.object_] = shapely.from_wkb(
                array.to_numpy(zero_copy_only=False), on_invalid="raise"
            )
            return geoms
        geometry_type, levels = NATIVE[kind]
        coords, offsets = _buffers(array, levels)
        geoms = shapely.from_ragged_array(geometry_type, coords, tuple(reversed(offsets)) or None)
    except (TypeError, ValueError, shapely.errors.GEOSException) as exc:
        raise InputError(
            f"{source}: the {kind} geometry column cannot be decoded ({exc})"
        ) from None
    if array.null_count:
        geoms[np.asarray(array.is_null())] = None
    return geoms


def _buffers(
    array: pa.Array, levels: int
) -> tuple[npt.NDArray[np.float64], list[npt.NDArray[np.int64]]]:
    """Coordinates (n rows of 2 or 3) and offsets, outermost first, each starting at 0."""
    offsets = []
    inner = array
    for _ in range(levels):
        if not (pa.types.is_list(inner.type) or pa.types.is_large_list(inner.type)):
            raise TypeError(f"expected a list, found {inner.type}")
        # A sliced list's offsets index into its whole child: cut the child to the slice.
        off = np.asarray(inner.offsets, dtype=np.int64)
        inner = inner.values.slice(int(off[0]), int(off[-1] - off[0]))
        offsets.append(off - off[0])
    return _coordinates(inner), offsets


def _coordinates(points: pa.Array) -> npt.NDArray[np.float64]:
    if pa.types.is_struct(points.type):  # separated: {x, y[, z][, m]}
        names = [points.type.field(i).name.lower() for i in range(points.type.num_fields)]
        keep = [n for n in ("x", "y", "z") if n in names]
        if keep[:2] != ["x", "y"]:
            raise TypeError(f"coordinate fields {names}: x and y are required")
        fields = points.flatten()  # respects the slice, unlike .field()
        return np.column_stack([np.asarray(fields[names.index(n)], dtype=np.float64) for n in keep])
    if pa.types.is_fixed_size_list(points.type):  # interleaved: [x, y(, z)(, m)]
        size = points.type.list_size
        name = points.type.value_field.name.lower()
        if size not in (2, 3, 4):
            raise TypeError(f"coordinates of {size} values")
        # .values is the whole child (flatten() would skip null points): cut the slice.
        flat = points.values.slice(points.offset * size, len(points) * size)
        values = np.asarray(flat, dtype=np.float64).reshape(-1, size)
        # xym interleaved: the field is named "xym"; keep x, y (and z, never m).
        dims = 2 if size == 2 or name == "xym" else 3
        return np.ascontiguousarray(values[:, :dims])
    raise TypeError(f"coordinates are {points.type}, not a struct or a fixed-size list")


# A WKB column tagged as GeoArrow's ``geoarrow.wkb`` extension type, its CRS in the tag:
# what a feature store's ``read`` returns and ``write_chunk`` takes. GeoPandas
# (``GeoDataFrame.from_arrow``), GDAL and other Arrow readers take it as it is.
EXTENSION_NAME = b"ARROW:extension:name"
EXTENSION_METADATA = b"ARROW:extension:metadata"


def wkb_field(name: str, crs: str | None) -> pa.Field:
    """A ``geoarrow.wkb`` field; ``crs`` is any text PROJ reads (WKT, PROJJSON, EPSG:n)."""
    meta: dict[str, Any] = {}
    if crs:
        try:
            meta = {"crs": json.loads(crs)}  # PROJJSON stays an object
        except ValueError:
            meta = {"crs": crs}
    return pa.field(
        name,
        pa.binary(),
        metadata={EXTENSION_NAME: b"geoarrow.wkb", EXTENSION_METADATA: json.dumps(meta).encode()},
    )


def geometry_of(table: pa.Table) -> tuple[str, str | None]:
    """The name of ``table``'s ``geoarrow.wkb`` column and its CRS text (None: none given).

    ValueError unless there is exactly one such column.
    """
    found = [f for f in table.schema if (f.metadata or {}).get(EXTENSION_NAME) == b"geoarrow.wkb"]
    if len(found) != 1:
        raise ValueError(f"expected one geoarrow.wkb column, found {len(found)}")
    meta = json.loads((found[0].metadata or {}).get(EXTENSION_METADATA) or b"{}")
    crs = meta.get("crs")
    text = None if crs is None else crs if isinstance(crs, str) else json.dumps(crs)
    return found[0].name, text


def require_geometry(table: pa.Table, what: str) -> tuple[str, str]:
    """:func:`geometry_of`, as InputError naming ``what`` when the column or its CRS is missing."""
    try:
        name, crs = geometry_of(table)
    except ValueError as exc:
        raise InputError(f"the features of {what}: {exc}") from None
    if crs is None:
        raise InputError(f"the features of {what} have no coordinate reference system")
    return name, crs
