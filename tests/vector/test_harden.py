"""Cleaning rules on synthetic hard cases."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from geoetl.errors import InputError
from geoetl.vector.archive import safe_extract
from geoetl.vector.columns import sanitize_columns
from geoetl.vector.harden import drop_m, harden, has_repeated_points, split_antimeridian

BOWTIE = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])


def test_self_intersecting_polygon_is_repaired_as_polygons() -> None:
    families, out, report = harden([BOWTIE], keep_z=False, geographic=True)
    assert families == {"polygons": [0]}
    fixed = out[0]
    assert fixed is not None
    assert fixed.is_valid
    assert fixed.geom_type == "MultiPolygon"
    assert fixed.area == pytest.approx(2.0)  # both triangles kept, not one
    assert len(fixed.geoms) == 2
    assert report.repaired == 1


def test_mixed_types_split_by_family_and_promoted_to_multi() -> None:
    geoms = [Point(1, 1), LineString([(0, 0), (1, 1)]), Polygon([(0, 0), (1, 0), (1, 1)]), None]
    families, out, report = harden(geoms, keep_z=False, geographic=True)
    assert families == {"points": [0], "lines": [1], "polygons": [2]}
    assert [g.geom_type if g else None for g in out] == [
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        None,
    ]
    assert report.dropped == {"empty or missing geometry": 1}


def test_collapsed_polygon_is_dropped_with_a_reason() -> None:
    line_like = Polygon([(0, 0), (1, 1), (2, 2), (0, 0)])
    families, out, report = harden([line_like], keep_z=False, geographic=True)
    assert families == {}
    assert out == [None]
    assert report.dropped == {"invalid geometry with nothing left after repair": 1}


def test_z_is_dropped_unless_kept() -> None:
    line = LineString([(0, 0, 5), (1, 1, 6)])
    _, out, report = harden([line], keep_z=False, geographic=True)
    assert out[0] is not None
    assert not shapely.has_z(out[0])
    assert report.z_dropped == 1
    _, kept, _ = harden([line], keep_z=True, geographic=True)
    assert kept[0] is not None
    assert shapely.has_z(kept[0])


def test_m_is_always_dropped_and_counted_z_only_kept_when_asked() -> None:
    geoms = shapely.from_wkt(
        [
            "LINESTRING M (0 0 5, 1 1 6)",
            "LINESTRING ZM (0 0 10 5, 1 1 20 6)",
            "POLYGON M ((0 0 1, 1 0 2, 1 1 3, 0 0 1))",
            "LINESTRING Z (0 0 1, 1 1 2)",
            "POINT M EMPTY",
        ]
    )
    assert shapely.has_m(geoms[:3]).all()  # control: shapely keeps what the WKB carries
    flat, dropped = drop_m(geoms)
    assert dropped == 3  # the empty point has no measure to lose
    assert not shapely.has_m(flat).any()
    # XYZM loses M, not Z (shapely's force_3d would keep M's slot, transform would NaN Z).
    assert shapely.get_coordinates(flat[1], include_z=True)[:, 2].tolist() == [10, 20]
    assert shapely.has_m(geoms[0])  # the caller's array is left alone
    _, out, report = harden(geoms, keep_z=True, geographic=True)
    assert report.m_dropped == 3
    assert report.z_dropped == 0
    assert not shapely.has_m(out[:3]).any()
    assert shapely.has_z(out[1])
    assert shapely.get_coordinates(out[1], include_z=True)[:, 2].tolist() == [10, 20]
    _, out, report = harden(geoms, keep_z=False, geographic=True)
    assert (report.m_dropped, report.z_dropped) == (3, 2)
    assert not (shapely.has_m(out[:4]) | shapely.has_z(out[:4])).any()


def test_antimeridian_polygon_is_split_on_both_sides() -> None:
    crossing = Polygon([(170, -10), (-170, -10), (-170, 10), (170, 10)])
    split = split_antimeridian(crossing)
    assert split.geom_type == "MultiPolygon"
    xmin, _, xmax, _ = split.bounds
    assert (xmin, xmax) == (-180, 180)
    assert split.area == pytest.approx(400.0)  # 20 deg x 20 deg, not 340 x 20
    _, out, report = harden([crossing], keep_z=False, geographic=True)
    assert report.antimeridian_split == 1
    assert isinstance(out[0], MultiPolygon)
    assert len(out[0].geoms) == 2


def test_winding_is_counter_clockwise() -> None:
    clockwise = Polygon([(0, 0), (0, 1), (1, 1), (1, 0)])
    _, out, _ = harden([clockwise], keep_z=False, geographic=True)
    assert out[0] is not None
    assert out[0].geoms[0].exterior.is_ccw


def test_duplicate_vertices_are_removed() -> None:
    line = LineString([(0, 0), (0, 0), (1, 1), (1, 1), (2, 2)])
    _, out, _ = harden([line], keep_z=False, geographic=True)
    assert out[0] is not None
    assert len(shapely.get_coordinates(out[0])) == 3


def test_only_geometries_with_repeated_vertices_are_rebuilt() -> None:
    shapes = [
        "POLYGON ((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 1 2, 2 2, 2 2, 2 1, 1 1))",  # in a hole
        "POLYGON ((10 10, 11 10, 11 11, 10 10))",
        "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 5, 6 6, 5 5)))",  # second part
        "LINESTRING (0 0, 1 1, 2 2)",
        "LINESTRING Z (0 0 1, 0 0 2, 1 1 3)",  # the same point in X and Y
        "POINT (3 3)",
    ]
    geoms = shapely.from_wkt(shapes)
    assert has_repeated_points(geoms).tolist() == [True, False, True, False, True, False]
    _, out, _ = harden(geoms, keep_z=False, geographic=False)
    counts = shapely.get_num_coordinates(out).tolist()
    assert counts == [10, 4, 8, 3, 2, 1]
    assert not has_repeated_points(out).any()
    assert out[1].equals(shapely.multipolygons([geoms[1]]))  # untouched ones keep their shape


def test_column_names_are_sanitized_and_unique() -> None:
    mapping = sanitize_columns(["Name", "NAME ", "Área (km²)", "select", "1st", "", "fid"])
    assert mapping == {
        "Name": "name",
        "NAME ": "name_2",
        "Área (km²)": "area_km2",
        "select": "select_",
        "1st": "c_1st",
        "": "column_",
        "fid": "fid_",
    }


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.txt", "gotcha")
    with pytest.raises(InputError, match="outside the archive folder"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.csv", b"0" * 50_000_000)
    with pytest.raises(InputError, match="zip bomb"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "zeros.csv").exists()


def test_macosx_entries_are_ignored(tmp_path: Path) -> None:
    archive = tmp_path / "mac.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/roads.csv", "a,b\n1,2\n")
        zf.writestr("__MACOSX/data/._roads.csv", "junk")
    written = safe_extract(archive, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == ["data/roads.csv"]


def test_not_a_zip_is_explained(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_text("nope")
    with pytest.raises(InputError, match="not a readable zip archive"):
        safe_extract(bad, tmp_path / "out")


def test_antarctica_polar_edge_is_not_a_wrap() -> None:
    antarctica_like = Polygon([(-180, -90), (-180, -80), (0, -70), (180, -80), (180, -90)])
    assert split_antimeridian(antarctica_like) is antarctica_like
