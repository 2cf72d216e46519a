"""The common case of a vector load, done on the WKB bytes: one-ring polygons.

Most polygon layers (parcels, buildings, footprints) are polygons of one ring, or
multipolygons of one such polygon, that need nothing from cleaning but reprojection
and promotion to MultiPolygon. :func:`harden` (shapely) builds every geometry three
times for that: reprojected, promoted and oriented. Here such rows are found by their
WKB headers, their coordinates are reprojected where they lie in the WKB buffer, the
checks cleaning would make are made on those coordinates (no repeated vertex,
counter-clockwise, finite, not wider than 180° in a geographic CRS), GEOS checks their
validity, and the MultiPolygon WKB is the polygon's bytes behind a 9-byte header. The
bytes are the ones ``shapely.to_wkb`` writes for what :func:`harden` returns.

Every other row (holes, several parts, Z or M, big-endian WKB, anything that fails a
check) goes to :func:`harden` as before: :func:`split` says which rows are which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import Transformer

# WKB (little-endian, ISO/OGC 2D): a byte order byte, a uint32 type, then counts.
POLYGON, MULTIPOLYGON = 3, 6
POLYGON_HEAD = 13  # order, type, rings (1), points
MULTI_HEAD = 9  # order, type, parts (1)
# The header that makes a Polygon's WKB a MultiPolygon of it: 01, type 6, one part.
MULTI_PREFIX = pa.scalar(b"\x01\x06\x00\x00\x00\x01\x00\x00\x00", pa.binary())
EMPTY = pa.scalar(b"", pa.binary())
WHOLE = 2**31 - 1  # binary_slice's stop: to the end of each value
# The shoelace sum must exceed its rounding error by this factor to be trusted;
# rows closer to zero (slivers) are oriented by GEOS.
AREA_MARGIN = 64 * np.finfo(np.float64).eps


@dataclass
class Simple:
    """The rows of a batch done here, and their MultiPolygon WKB and bounds."""

    rows: npt.NDArray[np.int64]  # indices into the batch, ascending
    wkb: pa.BinaryArray  # one value per row of ``rows``
    bounds: npt.NDArray[np.float64]  # (len(rows), 4): xmin, ymin, xmax, ymax


def _uint32(data: npt.NDArray[np.uint8], at: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
    """The little-endian uint32 at each byte position ``at`` of ``data``."""
    b = data[at[:, None] + np.arange(4)].astype(np.uint32)
    out: npt.NDArray[np.uint32] = b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16 | b[:, 3] << 24
    return out


def _one_ring_polygons(wkb: pa.BinaryArray) -> tuple[npt.NDArray[np.int64], pa.BinaryArray]:
    """Rows holding a one-ring polygon (bare or the one part of a multipolygon), and it.

    Returns the rows and each one's polygon WKB (a multipolygon's header cut off).
    """
    n = len(wkb)
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset : wkb.offset + n + 1]
    starts = offsets[:-1].astype(np.int64)
    lengths = np.diff(offsets).astype(np.int64)
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8)
    valid = wkb.is_valid().to_numpy(zero_copy_only=False) & (lengths >= POLYGON_HEAD + 64)
    rows = np.flatnonzero(valid)
    starts, lengths = starts[rows], lengths[rows]
    kind = np.where(data[starts] == 1, _uint32(data, starts + 1), 0)
    multi = (kind == MULTIPOLYGON) & (_uint32(data, starts + 5) == 1) & (lengths >= 86)
    keep = (kind == POLYGON) | multi
    rows, starts, lengths, multi = rows[keep], starts[keep], lengths[keep], multi[keep]
    polygon = starts + np.where(multi, MULTI_HEAD, 0)  # where the (inner) polygon starts
    points = _uint32(data, polygon + 9).astype(np.int64)
    keep = (
        (data[polygon] == 1)
        & (_uint32(data, polygon + 1) == POLYGON)
        & (_uint32(data, polygon + 5) == 1)  # one ring
        & (points >= 4)
        & (np.where(multi, MULTI_HEAD, 0) + POLYGON_HEAD + 16 * points == lengths)
    )
    rows, multi = rows[keep], multi[keep]
    bare = wkb.take(pa.array(rows[~multi]))
    inner = pc.binary_slice(wkb.take(pa.array(rows[multi])), MULTI_HEAD, WHOLE)
    order = np.argsort(np.concatenate([rows[~multi], rows[multi]]), kind="stable")
    polygons = pa.concat_arrays([bare, inner.cast(pa.binary())]).take(pa.array(order))
    return rows, polygons


def split(wkb: pa.Array, transformer: Transformer | None, *, geographic: bool) -> Simple:
    """Reproject and check the one-ring polygons of ``wkb``; the rows that need nothing else.

    ``wkb`` is the batch's geometry column as read (ISO WKB). The rows not in the
    result are left for :func:`geoetl.vector.harden.harden`.
    """
    if not pa.types.is_binary(wkb.type):
        wkb = wkb.cast(pa.binary())
    none = Simple(np.zeros(0, dtype=np.int64), pa.array([], pa.binary()), np.zeros((0, 4)))
    if len(wkb) == 0:
        return none
    rows, polygons = _one_ring_polygons(wkb)
    if not len(rows):
        return none
    heads = pc.binary_slice(polygons, 0, POLYGON_HEAD)
    body = pc.binary_slice(polygons, POLYGON_HEAD, WHOLE).cast(pa.binary())
    points = np.diff(np.frombuffer(body.buffers()[1], dtype=np.int32)[: len(body) + 1]) // 16
    xy = np.frombuffer(body.buffers()[2], dtype="<f8")[: 2 * int(points.sum())].reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    if transformer is not None:
        x, y = (np.asarray(v, dtype=np.float64) for v in transformer.transform(x, y))
    first = np.concatenate([[0], np.cumsum(points)[:-1]]).astype(np.int64)
    row_of = np.repeat(np.arange(len(rows)), points)
    joined = row_of[1:] == row_of[:-1]  # consecutive vertices of one ring
    ok = np.logical_and.reduceat(np.isfinite(x) & np.isfinite(y), first)
    bounds = np.column_stack(
        [
            np.minimum.reduceat(x, first),
            np.minimum.reduceat(y, first),
            np.maximum.reduceat(x, first),
            np.maximum.reduceat(y, first),
        ]
    )
    # A vertex equal to the next: shapely's remove_repeated_points would drop it.
    ok[row_of[1:][(x[1:] == x[:-1]) & (y[1:] == y[:-1]) & joined]] = False
    # Orientation: the shoelace sum about each ring's corner, trusted when it is clearly
    # away from 0 (slivers are left to GEOS). Clockwise rings are reversed, as
    # shapely's orient_polygons reverses them.
    with np.errstate(invalid="ignore", over="ignore"):
        u, v = x - bounds[row_of, 0], y - bounds[row_of, 1]
        cross = np.where(joined, u[:-1] * v[1:] - u[1:] * v[:-1], 0.0)
        size = np.where(joined, np.abs(u[:-1] * v[1:]) + np.abs(u[1:] * v[:-1]), 0.0)
        area = np.add.reduceat(np.append(cross, 0.0), first)
        error = np.add.reduceat(np.append(size, 0.0), first) * AREA_MARGIN
    ok &= np.abs(area) > error
    if geographic:  # wider than 180°: a candidate for the antimeridian split
        ok &= bounds[:, 2] - bounds[:, 0] <= 180
    clockwise = area < 0
    if clockwise.any():
        at = np.arange(len(x))
        flip = clockwise[row_of]
        back = 2 * first[row_of] + points[row_of] - 1 - at
        order = np.where(flip, back, at)
        x, y = x[order], y[order]
    coords = pa.BinaryArray.from_buffers(
        pa.binary(),
        len(rows),
        [
            None,
            pa.py_buffer(np.concatenate([[0], np.cumsum(16 * points)]).astype(np.int32)),
            pa.py_buffer(np.column_stack([x, y]).reshape(-1)),
        ],
    )
    keep = pa.array(np.flatnonzero(ok))
    heads, coords = heads.cast(pa.binary()).take(keep), coords.take(keep)
    rows, bounds = rows[ok], bounds[ok]
    if len(rows):  # validity is GEOS's call, on the rows that passed the checks above
        polygon = pc.binary_join_element_wise(heads, coords, EMPTY)
        valid = shapely.is_valid(shapely.from_wkb(polygon.to_numpy(zero_copy_only=False)))
        keep = pa.array(np.flatnonzero(valid))
        heads, coords, rows, bounds = (
            heads.take(keep),
            coords.take(keep),
            rows[valid],
            bounds[valid],
        )
    multi = pc.binary_join_element_wise(MULTI_PREFIX, heads, coords, EMPTY)
    return Simple(rows, multi.cast(pa.binary()), bounds)
