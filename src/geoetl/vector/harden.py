"""Clean features before loading: repair, 2D, dedupe vertices, antimeridian, winding, families.

Every step counts what it changed, so the job's validation report can say it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
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


def harden(
    geoms: list[BaseGeometry | None], *, keep_z: bool, geographic: bool
) -> tuple[dict[str, list[int]], list[BaseGeometry | None], HardenReport]:
    """Clean ``geoms`` (already in the target CRS).

    Returns the row indices per family, the cleaned geometries (None where
    dropped) and the report. Every kept geometry is valid, of one family,
    promoted to its Multi* type.
    """
    report = HardenReport(read=len(geoms))
    out: list[BaseGeometry | None] = []
    families: dict[str, list[int]] = {}
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            report.drop("empty or missing geometry")
            out.append(None)
            continue
        family = family_of(geom)
        if family is None:  # a collection: keep its dominant family
            kinds = Counter(FAMILY_OF.get(p.geom_type) for p in shapely.get_parts(geom))
            kinds.pop(None, None)
            if not kinds:
                report.drop("unsupported geometry type")
                out.append(None)
                continue
            family = kinds.most_common(1)[0][0]
            assert family is not None
            geom = _as_multi(_parts_of_family(geom, family), family)
        if not keep_z and shapely.has_z(geom):
            geom = shapely.force_2d(geom)
            report.z_dropped += 1
        geom = shapely.remove_repeated_points(geom, tolerance=0.0)
        if geographic and family != "points":
            split = split_antimeridian(geom)
            if split is not geom:
                report.antimeridian_split += 1
                geom = split
        if not geom.is_valid:
            fixed = repair(geom, family)
            if fixed is None:
                report.drop("invalid geometry with nothing left after repair")
                out.append(None)
                continue
            report.repaired += 1
            geom = fixed
        geom = _as_multi(_parts_of_family(geom, family), family)
        if family == "polygons":
            geom = shapely.orient_polygons(geom, exterior_cw=False)  # RFC 7946 winding
        out.append(geom)
        families.setdefault(family, []).append(i)
    report.families = {k: len(v) for k, v in families.items()}
    return families, out, report


def summary(report: HardenReport) -> dict[str, Any]:
    """The report as plain JSON."""
    return report.model_dump()
