"""Both feature stores (GeoPackage, PostGIS): idempotent chunks, atomic publish, queries."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import pyogrio
import pytest
import shapely
from shapely.geometry import LineString, Point

from geoetl.errors import NotFound
from geoetl.features.geopackage import GeoPackageStore, gpkg_geometry_to_wkb
from geoetl.features.store import FeatureQuery, FeatureStore
from tests.frames import to_arrow, to_frame

FIELDS = {"name": "object", "value": "int64"}


def frame(start: int, n: int) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "name": [f"p{i}" for i in range(start, start + n)],
            "value": list(range(start, start + n)),
        },
        geometry=[Point(i, i) for i in range(start, start + n)],
        crs="EPSG:4326",
    )


def test_retried_chunk_does_not_duplicate_rows(feature_store: FeatureStore) -> None:
    store = feature_store
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 10)))
    store.write_chunk("ds", "points", 1, to_arrow(frame(10, 10)))
    store.write_chunk("ds", "points", 1, to_arrow(frame(10, 10)))  # the retry of chunk 1
    with pytest.raises(NotFound):  # nothing published before finish_load
        store.tables("ds")
    store.finish_load("ds", {"points": ["name"]})
    assert store.count("ds", "points") == 20
    back = to_frame(store.read("ds", "points"))
    assert sorted(back["value"]) == list(range(20))
    assert back.crs.to_epsg() == 4326


def test_geopackage_file_is_plain_gdal(tmp_path: Path) -> None:
    store = GeoPackageStore(tmp_path)
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 10)))
    store.finish_load("ds", {"points": ["name"]})
    back = pyogrio.read_dataframe(store.path("ds"), layer="points")
    assert sorted(back["value"]) == list(range(10))
    assert back.crs.to_epsg() == 4326


def test_read_gives_date_times_with_their_zones(tmp_path: Path) -> None:
    """GeoPackage keeps date-times as text: zoned ones read as UTC, others as they are."""
    store = GeoPackageStore(tmp_path)
    data = to_arrow(frame(0, 3))
    stamps = pa.array([datetime(2021, 5, d, 10, 30, 15) for d in (1, 2, 3)], pa.timestamp("ms"))
    data = data.add_column(0, "local", stamps).add_column(1, "utc", stamps)
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, data)
    store.finish_load("ds", {})
    with closing(sqlite3.connect(store.path("ds"))) as db:
        # A file written by another tool: zoned text, one value without its zone. The
        # table's R-tree triggers call GeoPackage's SQL functions: plain SQLite has none.
        def box(blob: bytes, i: int) -> float:
            return float(shapely.bounds(shapely.from_wkb(gpkg_geometry_to_wkb(blob)))[i])

        db.create_function("ST_IsEmpty", 1, lambda b: int(b is None))
        for i, name in enumerate(("ST_MinX", "ST_MinY", "ST_MaxX", "ST_MaxY")):
            db.create_function(name, 1, lambda b, i=i: box(b, i))
        db.execute("UPDATE points SET utc = replace(utc, 'T10', 'T12') || '+02:00'")
        db.execute("UPDATE points SET utc = '2021-05-03T10:30:15' WHERE value = 2")
        db.commit()
    back = store.read("ds", "points")
    assert back.schema.field("local").type == pa.timestamp("ms")
    assert back.schema.field("utc").type == pa.timestamp("ms", tz="UTC")
    assert back.column("local").to_pylist() == stamps.to_pylist()
    utc = [v.replace(tzinfo=None) for v in back.column("utc").to_pylist()]
    assert utc == stamps.to_pylist()  # 12:30+02:00 is 10:30 UTC; the unzoned one is UTC


def test_bbox_and_equality_queries(feature_store: FeatureStore) -> None:
    store = feature_store
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 50)))
    store.finish_load("ds", {})
    box = (9.5, 9.5, 20.5, 20.5)
    features, total = store.query("ds", "points", FeatureQuery(FIELDS, bbox=box, limit=5))
    assert total == 11
    assert [f["properties"]["value"] for f in features] == [10, 11, 12, 13, 14]
    assert features[0]["geometry"]["type"] in ("Point", "MultiPoint")
    page2, _ = store.query("ds", "points", FeatureQuery(FIELDS, bbox=box, limit=5, offset=5))
    assert [f["properties"]["value"] for f in page2] == [15, 16, 17, 18, 19]
    one, n = store.query("ds", "points", FeatureQuery(FIELDS, equals=(("name", "p7"),)))
    assert n == 1
    assert one[0]["properties"] == {"name": "p7", "value": 7}
    assert one[0]["id"] == 8  # feature ids count from 1 in load order
    by_id, _ = store.query("ds", "points", FeatureQuery(FIELDS, feature_id=8))
    assert by_id == one
    hostile = FeatureQuery(FIELDS, equals=(("name", "x' OR '1'='1"),))
    assert store.query("ds", "points", hostile) == ([], 0)
    newest, _ = store.query(
        "ds", "points", FeatureQuery(FIELDS, sortby=(("value", True),), properties=frozenset())
    )
    assert [f["id"] for f in newest] == list(range(50, 40, -1))
    assert all(f["properties"] == {} for f in newest)


def test_new_load_replaces_the_published_dataset_atomically(feature_store: FeatureStore) -> None:
    store = feature_store
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 5)))
    store.finish_load("ds", {})
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(100, 3)))
    assert store.count("ds", "points") == 5  # readers still see the old version
    store.finish_load("ds", {})
    assert store.count("ds", "points") == 3
    assert store.drop("ds")
    with pytest.raises(NotFound):
        store.tables("ds")


def test_items_carry_booleans_and_no_measures(tmp_path: Path) -> None:
    # A table as a load before M was dropped published it: GDAL keeps the measures.
    store: GeoPackageStore = GeoPackageStore(tmp_path)
    store.begin_load("ds")
    lines = shapely.from_wkt(["LINESTRING M (0 0 5, 1 1 6)", "LINESTRING ZM (0 0 10 5, 1 1 20 6)"])
    table = pa.table(
        {
            "open": pa.array([True, None]),
            "geometry": pa.array(shapely.to_wkb(lines, flavor="iso"), pa.binary()),
        }
    )
    store.write_table(
        "ds",
        "lines",
        table.to_reader(),
        geometry_column="geometry",
        geometry_type="Unknown",
        crs="EPSG:4326",
    )
    store.finish_load("ds", {})
    with closing(sqlite3.connect(store.path("ds"))) as conn:
        assert conn.execute('SELECT "open" FROM lines').fetchall() == [(1,), (None,)]
    features, _ = store.query("ds", "lines", FeatureQuery({"open": "bool"}))
    assert [f["properties"]["open"] for f in features] == [True, None]
    assert [f["geometry"]["coordinates"] for f in features] == [
        ((0.0, 0.0), (1.0, 1.0)),  # x, y: the measure is no height
        ((0.0, 0.0, 10.0), (1.0, 1.0, 20.0)),  # x, y, z
    ]


def test_a_table_in_another_crs_is_queried_and_served_in_crs84(
    feature_store: FeatureStore,
) -> None:
    from geoetl.cql2 import parse

    store = feature_store
    mercator = gpd.GeoDataFrame(
        {"name": ["a", "b"]},
        geometry=[Point(1_113_194.9, 0), Point(2_226_389.8, 1_118_889.97)],
        crs="EPSG:3857",
    )  # (10°E, 0°) and (20°E, ~10°N)
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(mercator))
    store.finish_load("ds", {})
    fields = {"name": "object"}
    everything, _ = store.query("ds", "points", FeatureQuery(fields))
    [a, b] = [f["geometry"]["coordinates"][0] for f in everything]  # MultiPoints
    assert a == pytest.approx((10.0, 0.0), abs=1e-6)
    assert b == pytest.approx((20.0, 10.0), abs=1e-4)
    near_b = FeatureQuery(fields, bbox=(19.5, 9.5, 20.5, 10.5))
    assert [f["properties"]["name"] for f in store.query("ds", "points", near_b)[0]] == ["b"]
    around_a = parse("S_INTERSECTS(geometry, POLYGON((9 -1, 11 -1, 11 1, 9 1, 9 -1)))", "cql2-text")
    found, total = store.query("ds", "points", FeatureQuery(fields, filter=around_a))
    assert ([f["properties"]["name"] for f in found], total) == (["a"], 1)


def test_bbox_selects_features_whose_geometry_meets_the_box(feature_store: FeatureStore) -> None:
    # A diagonal line's envelope covers the box's corner; the line itself passes far away.
    store = feature_store
    lines = gpd.GeoDataFrame(
        {"name": ["diagonal", "through"]},
        geometry=[LineString([(0, 0), (10, 10)]), LineString([(8, 0), (8, 3)])],
        crs="EPSG:4326",
    )
    store.begin_load("ds")
    store.write_chunk("ds", "lines", 0, to_arrow(lines))
    store.finish_load("ds", {})
    box = (7.0, 1.0, 9.0, 2.0)  # inside the diagonal's envelope, below the line
    found, total = store.query("ds", "lines", FeatureQuery({"name": "object"}, bbox=box))
    assert ([f["properties"]["name"] for f in found], total) == (["through"], 1)
