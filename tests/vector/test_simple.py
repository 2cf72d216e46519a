"""The WKB fast path of a vector load gives the bytes cleaning with shapely gives.

``geoetl.vector.simple.split`` takes one-ring polygons off the shapely path. For every
row it takes, the MultiPolygon WKB and bounds must be exactly what reprojection,
``harden`` and ``shapely.to_wkb`` produce; every row that cleaning would change in
another way (holes, repeated vertices, invalid rings, antimeridian candidates, Z, M,
slivers) must be left to ``harden``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import shapely
from pyproj import CRS, Transformer

from geoetl.vector.harden import drop_m, harden
from geoetl.vector.read import list_layers, read_batches
from geoetl.vector.simple import split
from geoetl.workflows.process_vector import _reproject

DATA = Path(__file__).parents[2] / "examples" / "data"
UTM = CRS.from_epsg(32618)
WGS84 = CRS.from_epsg(4326)


def star(cx: float, cy: float, r: float, n: int, seed: int) -> shapely.Polygon:
    rng = np.random.default_rng(seed)
    angles = (np.arange(n) + rng.uniform(0, 0.5, n)) * 2 * np.pi / n  # star-shaped: valid
    radii = r * rng.uniform(0.5, 1.0, n)
    return shapely.Polygon(
        np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
    )


def with_nan() -> shapely.Polygon:
    with np.errstate(invalid="ignore"):  # shapely warns of the NaN it is asked for
        polygon: shapely.Polygon = shapely.Polygon([(0, 0), (np.nan, 0), (10, 10), (0, 10)])
    return polygon


def reference(
    geoms: np.ndarray, transformer: Transformer | None, geographic: bool
) -> tuple[list[bytes | None], np.ndarray]:
    """What the shapely path makes of every row: WKB (None when dropped) and bounds."""
    cleaned, _ = drop_m(geoms)
    if transformer is not None:
        cleaned = _reproject(cleaned, transformer)
    _families, cleaned, _report = harden(cleaned, keep_z=False, geographic=geographic)
    wkb = [
        None if g is None else shapely.to_wkb(g, output_dimension=2, flavor="iso") for g in cleaned
    ]
    return wkb, shapely.bounds(cleaned)


def check(geoms: list[object], transformer: Transformer | None, geographic: bool) -> set[int]:
    """The rows ``split`` took, after checking each against the shapely path."""
    array = np.empty(len(geoms), dtype=object)
    array[:] = geoms
    wkb = pa.array(
        [None if g is None else shapely.to_wkb(g, flavor="iso") for g in geoms], pa.binary()
    )
    done = split(wkb, transformer, geographic=geographic)
    expected, bounds = reference(array, transformer, geographic)
    assert list(done.rows) == sorted(done.rows)
    for row, value, box in zip(done.rows, done.wkb.to_pylist(), done.bounds, strict=True):
        assert value == expected[row], row
        assert list(box) == list(bounds[row]), row
    return {int(r) for r in done.rows}


def test_one_ring_polygons_in_either_orientation_take_the_fast_path() -> None:
    ccw = [star(500_000 + 50 * i, 4_500_000, 20, 4 + i % 9, i) for i in range(40)]
    cw = [shapely.Polygon(list(p.exterior.coords)[::-1]) for p in ccw[:10]]
    multi = [shapely.MultiPolygon([p]) for p in ccw[10:20]]
    geoms = [*ccw, *cw, *multi]
    to_wgs84 = Transformer.from_crs(UTM, WGS84, always_xy=True)
    assert check(geoms, to_wgs84, geographic=True) == set(range(len(geoms)))
    assert check(geoms, None, geographic=False) == set(range(len(geoms)))


def test_rows_cleaning_changes_otherwise_are_left_to_harden() -> None:
    ring = [(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)]
    cases = {
        "simple": shapely.Polygon(ring),
        "hole": shapely.Polygon(ring, [[(2, 2), (2, 4), (4, 4), (4, 2), (2, 2)]]),
        "two parts": shapely.MultiPolygon([shapely.Polygon(ring), star(50, 50, 5, 6, 1)]),
        "repeated vertex": shapely.Polygon([(0, 0), (10, 0), (10, 0), (10, 10), (0, 10), (0, 0)]),
        "bowtie": shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0)]),
        "flat": shapely.Polygon([(0, 0), (5, 0), (10, 0), (0, 0)]),
        "z": shapely.Polygon([(x, y, 5) for x, y in ring]),
        "m": shapely.from_wkt("POLYGON M ((0 0 1, 10 0 1, 10 10 1, 0 10 1, 0 0 1))"),
        "nan": with_nan(),
        "empty": shapely.from_wkt("POLYGON EMPTY"),
        "point": shapely.Point(1, 2),
        "line": shapely.LineString(ring),
        "wide": shapely.Polygon([(-170, 0), (170, 0), (170, 10), (-170, 10), (-170, 0)]),
        "missing": None,
    }
    taken = check(list(cases.values()), None, geographic=True)
    assert {list(cases)[i] for i in taken} == {"simple"}
    # In a projected CRS, the 340° wide polygon is just wide: nothing to split.
    taken = check(list(cases.values()), None, geographic=False)
    assert {list(cases)[i] for i in taken} == {"simple", "wide"}


def test_batches_without_values_take_nothing() -> None:
    for wkb in (pa.array([], pa.binary()), pa.array([None, None], pa.binary())):
        assert len(split(wkb, None, geographic=True).rows) == 0


def test_big_endian_wkb_is_left_to_harden() -> None:
    polygon = star(0, 0, 10, 7, 3)
    wkb = pa.array([shapely.to_wkb(polygon, byte_order=0), shapely.to_wkb(polygon)], pa.binary())
    assert list(split(wkb, None, geographic=True).rows) == [1]


def test_a_sliced_column_is_read_where_the_slice_starts() -> None:
    polygons = [star(10 * i, 0, 3, 5, i) for i in range(6)]
    wkb = pa.array([shapely.to_wkb(p) for p in polygons], pa.binary()).slice(2, 3)
    done = split(wkb, None, geographic=True)
    assert list(done.rows) == [0, 1, 2]
    assert [shapely.from_wkb(v).geoms[0] for v in done.wkb.to_pylist()] == [
        shapely.orient_polygons(p) for p in polygons[2:5]
    ]


@pytest.mark.parametrize(
    "name", ["buildings.gpkg", "nc.gpkg", "naturalearth_lowres.shp", "lux.shp"]
)
def test_the_sample_layers_give_the_same_bytes_both_ways(name: str) -> None:
    path = DATA / name
    (layer,) = list_layers(path)
    taken = 0
    for chunk in read_batches(path, layer.name, batch_size=64):
        wkb, geoms, crs = chunk.wkb, chunk.geometries, chunk.crs
        assert wkb is not None
        assert crs is not None
        source = CRS.from_user_input(crs)
        for target in (WGS84, CRS.from_epsg(3857)):
            transformer = (
                None
                if source.equals(target)
                else Transformer.from_crs(source, target, always_xy=True)
            )
            done = split(wkb, transformer, geographic=target.is_geographic)
            expected, bounds = reference(geoms, transformer, target.is_geographic)
            for row, value, box in zip(done.rows, done.wkb.to_pylist(), done.bounds, strict=True):
                assert value == expected[row]
                assert list(box) == list(bounds[row])
            taken += len(done.rows)
    assert taken > 0
