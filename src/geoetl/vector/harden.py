"""Clean features before loading: repair, 2D, dedupe vertices, antimeridian, winding, families.

Every step counts what it changed, so the job's validation report can say it.

Measures (M) are always dropped: GeoJSON (RFC 7946, the OGC API output) has no place
for them — a fourth or third number is read as altitude — and GeoParquet 1.1 declares
Z only; published data keeps X, Y and, with ``keep_z``, Z.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pydantic import BaseModel, Field
from shapely.geometry.base import BaseGeometry

FAMILY_OF = {
    "Point": "points",
    "MultiPoint": "points",
    "LineString": "lines",
    "LinearRing": "lines",
    "MultiLineString": "lines",
    "Polygon": "polygons",
    "MultiPolygon": "polygons",
}
MULTI = {
    "points": shapely.MultiPoint,
    "lines": shapely.MultiLineString,
    "polygons": shapely.MultiPolygon,
}


class HardenReport(BaseModel):
    """What cleaning did to the features."""

    read: int = 0
    repaired: int = 0
    dropped: dict[str, int] = Field(default_factory=dict, description="Count by reason.")
    z_dropped: int = 0
    m_dropped: int = Field(default=0, description="Features whose M (measure) values were dropped.")
    antimeridian_split: int = 0
    families: dict[str, int] = Field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` features dropped for ``reason``."""
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n


def family_of(geom: BaseGeometry | None) -> str | None:
    """points, lines or polygons; None for empty or collections."""
    if geom is None or geom.is_empty:
        return None
    return FAMILY_OF.get(geom.geom_type)


def _parts_of_family(geom: BaseGeometry, family: str) -> list[BaseGeometry]:
    parts = shapely.get_parts(geom)
    out: list[BaseGeometry] = []
    for part in parts:
        if part.geom_type == "GeometryCollection":
            out.extend(_parts_of_family(part, family))
        elif FAMILY_OF.get(part.geom_type) == family and not part.is_empty:
            out.append(part)
    return out


def _as_multi(parts: list[BaseGeometry], family: str) -> BaseGeometry:
    singles: list[BaseGeometry] = []
    for p in parts:
        singles.extend(shapely.get_parts(p))
    build: Any = MULTI[family]
    result: BaseGeometry = build(singles)
    return result


def repair(geom: BaseGeometry, family: str) -> BaseGeometry | None:
    """A valid geometry of the same family, or None when nothing of it survives."""
    fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    parts = _parts_of_family(fixed, family)
    if not parts:
        return None
    merged = _as_multi(parts, family)
    return merged if merged.is_valid else shapely.make_valid(merged)


def _to_0_360(c: np.ndarray) -> np.ndarray:
    return np.column_stack([np.where(c[:, 0] < 0, c[:, 0] + 360, c[:, 0]), c[:, 1]])


def _minus_360(c: np.ndarray) -> np.ndarray:
    return np.column_stack([c[:, 0] - 360, c[:, 1]])


def _crosses(part: BaseGeometry) -> bool:
    # A segment longer than 180 degrees of longitude is a jump across ±180, not a real edge.
    rings = shapely.get_rings(part) if part.geom_type == "Polygon" else [part]
    for ring in rings:
        coords = shapely.get_coordinates(ring)
        if len(coords) < 2:
            continue
        jumps = np.abs(np.diff(coords[:, 0])) > 180
        # An edge along a pole (Antarctica's closure at -90°) is real, not a wrap.
        polar = (np.abs(coords[:-1, 1]) >= 89.99) & (np.abs(coords[1:, 1]) >= 89.99)
        if bool(np.any(jumps & ~polar)):
            return True
    return False


def split_antimeridian(geom: BaseGeometry) -> BaseGeometry:
    """Cut lon/lat lines and polygons that wrap across ±180° into parts on each side.

    Parts already split at the antimeridian (as Natural Earth's Russia is) are
    left alone: only parts with a segment jumping more than 180° are cut.
    """
    parts = list(shapely.get_parts(geom))
    if not any(_crosses(p) for p in parts):
        return geom
    pieces: list[BaseGeometry] = []
    for part in parts:
        if not _crosses(part):
            pieces.append(part)
            continue
        shifted = shapely.transform(part, _to_0_360)
        west = shapely.clip_by_rect(shifted, 0, -90, 180, 90)
        east = shapely.transform(shapely.clip_by_rect(shifted, 180, -90, 360, 90), _minus_360)
        pieces.extend(
            p for p in (*shapely.get_parts(west), *shapely.get_parts(east)) if not p.is_empty
        )
    build: Any = type(geom) if geom.geom_type.startswith("Multi") else None
    if build is None:
        build = shapely.MultiPolygon if geom.geom_type == "Polygon" else shapely.MultiLineString
    result: BaseGeometry = build(pieces)
    return result


# shapely type ids: 0 Point, 1 LineString, 2 LinearRing, 3 Polygon, 4 MultiPoint,
# 5 MultiLineString, 6 MultiPolygon, 7 GeometryCollection.
FAMILIES = ("points", "lines", "polygons")
_FAMILY_OF_TYPE = np.array([0, 1, 1, 2, 0, 1, 2, -1], dtype=np.int8)
_SINGLE_TYPES = {"points": (0,), "lines": (1,), "polygons": (3,)}
_BUILD: dict[str, Callable[..., Any]] = {
    "points": shapely.multipoints,
    "lines": shapely.multilinestrings,
    "polygons": shapely.multipolygons,
}
_GeomArray = npt.NDArray[np.object_]


def _dominant_family(geom: BaseGeometry) -> str | None:
    kinds = Counter(FAMILY_OF.get(p.geom_type) for p in shapely.get_parts(geom))
    kinds.pop(None, None)
    return kinds.most_common(1)[0][0] if kinds else None


def _promote(geoms: _GeomArray, family: str) -> _GeomArray:
    """Each geometry as the Multi* of its parts of ``family`` (None when none is left)."""
    out: _GeomArray = np.full(len(geoms), None, dtype=object)
    single = (shapely.get_type_id(geoms) == _SINGLE_TYPES[family][0]) & ~shapely.is_empty(geoms)
    if single.any():  # the common case: one part each, no need to split them
        out[single] = _BUILD[family](geoms[single][:, np.newaxis])
    rest = np.flatnonzero(~single)
    if len(rest):
        out[rest] = _promote_parts(geoms[rest], family)
    return out


def _promote_parts(geoms: _GeomArray, family: str) -> _GeomArray:
    out: _GeomArray = np.full(len(geoms), None, dtype=object)
    parts, index = shapely.get_parts(geoms, return_index=True)
    types = shapely.get_type_id(parts)
    nested = np.zeros(len(geoms), dtype=bool)
    # Collections left by make_valid and bare rings (rare): part by part.
    nested[index[(types == 7) | (types == 2)]] = True
    keep = np.isin(types, _SINGLE_TYPES[family]) & ~shapely.is_empty(parts) & ~nested[index]
    if keep.any():
        _BUILD[family](parts[keep], indices=index[keep], out=out)
    for i in np.flatnonzero(nested):
        found = _parts_of_family(geoms[i], family)
        out[i] = _as_multi(found, family) if found else None
    return out


def as_multi(geoms: _GeomArray, family: str) -> _GeomArray:
    """Geometries of one family as its Multi* type; polygons counter-clockwise (RFC 7946)."""
    promoted = _promote(geoms, family)
    if family == "polygons":
        promoted = shapely.orient_polygons(promoted, exterior_cw=False)
    return promoted


# OGR / PostGIS type names of shapely's type ids (a LinearRing is stored as a LineString).
TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def promote_to_multi(geoms: _GeomArray) -> _GeomArray:
    """Points, lines and polygons as one-part multi geometries (GDAL's promote_to_multi)."""
    out = geoms.copy()
    types = shapely.get_type_id(geoms)
    for type_id, builder in (
        (0, shapely.multipoints),
        (1, shapely.multilinestrings),
        (3, shapely.multipolygons),
    ):
        rows = np.flatnonzero(types == type_id)
        if len(rows):
            out[rows] = builder(geoms[rows], indices=np.arange(len(rows)))
    return out


def common_type(geoms: _GeomArray) -> str:
    """The one type name of every present geometry, else ``Geometry``."""
    types = {int(t) for t in shapely.get_type_id(geoms) if t >= 0}
    if len(types) == 1:
        return TYPE_NAMES.get(types.pop(), "Geometry")
    return "Geometry"


def has_repeated_points(geoms: _GeomArray) -> npt.NDArray[np.bool_]:
    """Per geometry: whether two consecutive vertices are the same point (in X and Y).

    A vectorized look at the coordinates, so that ``remove_repeated_points`` (which
    rebuilds every geometry it is given) runs only where it changes something. The
    last vertex of one ring and the first of the next count too: at worst a geometry
    is cleaned that needed no cleaning.
    """
    found = np.zeros(len(geoms), dtype=bool)
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    if len(coords) > 1:
        same = (coords[1:] == coords[:-1]).all(axis=1) & (index[1:] == index[:-1])
        found[index[1:][same]] = True
    return found


def drop_m(geoms: Sequence[BaseGeometry | None] | _GeomArray) -> tuple[_GeomArray, int]:
    """``geoms`` without M values (XYM → XY, XYZM → XYZ) and how many had them.

    Done before reprojection: shapely's transform keeps neither M nor, on XYZM, Z.
    """
    arr: _GeomArray = np.empty(len(geoms), dtype=object)
    arr[:] = list(geoms)
    measured = shapely.has_m(arr)
    if measured.any():
        z = measured & shapely.has_z(arr)
        flat = measured & ~z
        arr[flat] = shapely.force_2d(arr[flat])
        # WKB of at most three dimensions drops M and keeps Z (force_3d would not).
        arr[z] = shapely.from_wkb(shapely.to_wkb(arr[z], output_dimension=3))
    # An empty geometry has no measure to lose.
    return arr, int((measured & ~shapely.is_empty(arr)).sum())


def harden(
    geoms: Sequence[BaseGeometry | None] | _GeomArray, *, keep_z: bool, geographic: bool
) -> tuple[dict[str, list[int]], _GeomArray, HardenReport]:
    """Clean ``geoms`` (already in the target CRS), array-wise with shapely.

    Returns the row indices per family, the cleaned geometries (an object array, None
    where dropped) and the report. M values are dropped (:func:`drop_m`), Z too unless
    ``keep_z``. Every kept geometry is valid, of one family,
    promoted to its Multi* type, polygons counter-clockwise (RFC 7946). Only the
    rare cases go geometry by geometry: collections, candidates for an antimeridian
    split (wider than 180 degrees) and invalid geometries.
    """
    arr, m_dropped = drop_m(geoms)  # a copy: the caller's geometries are left alone
    report = HardenReport(read=len(arr), m_dropped=m_dropped)
    type_id = shapely.get_type_id(arr)
    missing = (type_id < 0) | shapely.is_empty(arr)
    report.drop("empty or missing geometry", int(missing.sum()))
    kind = np.where(missing, -1, _FAMILY_OF_TYPE[np.maximum(type_id, 0)]).astype(np.int8)
    for i in np.flatnonzero(~missing & (type_id == 7)):
        family = _dominant_family(arr[i])
        if family is None:
            report.drop("unsupported geometry type")
            continue
        arr[i] = _as_multi(_parts_of_family(arr[i], family), family)
        kind[i] = FAMILIES.index(family)
    live = kind >= 0
    if not keep_z:
        z = live & shapely.has_z(arr)
        arr[z] = shapely.force_2d(arr[z])
        report.z_dropped = int(z.sum())
    repeated = np.flatnonzero(live)
    repeated = repeated[has_repeated_points(arr[repeated])]
    arr[repeated] = shapely.remove_repeated_points(arr[repeated], tolerance=0.0)
    if geographic:
        # Only a geometry wider than 180 degrees can hold a jump across ±180.
        wide = live & (kind != 0)
        bounds = shapely.bounds(arr[wide])
        for i in np.flatnonzero(wide)[bounds[:, 2] - bounds[:, 0] > 180]:
            split = split_antimeridian(arr[i])
            if split is not arr[i]:
                report.antimeridian_split += 1
                arr[i] = split
    valid = np.zeros(len(arr), dtype=bool)
    valid[live] = shapely.is_valid(arr[live])
    for i in np.flatnonzero(live & ~valid):
        fixed = repair(arr[i], FAMILIES[kind[i]])
        if fixed is None:
            report.drop("invalid geometry with nothing left after repair")
            kind[i] = -1
            arr[i] = None
            continue
        report.repaired += 1
        arr[i] = fixed
    families: dict[str, list[int]] = {}
    for code, family in enumerate(FAMILIES):
        rows = np.flatnonzero(kind == code)
        if not len(rows):
            continue
        promoted = as_multi(arr[rows], family)
        arr[rows] = promoted
        left = shapely.is_missing(promoted)
        report.drop("empty or missing geometry", int(left.sum()))
        kind[rows[left]] = -1
        if not left.all():
            families[family] = rows[~left].tolist()
    arr[kind < 0] = None
    families = dict(sorted(families.items(), key=lambda kv: kv[1][0]))
    report.families = {k: len(v) for k, v in families.items()}
    return families, arr, report


def summary(report: HardenReport) -> dict[str, Any]:
    """The report as plain JSON."""
    return report.model_dump()
