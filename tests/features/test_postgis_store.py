"""The PostGIS feature store gives what the GeoPackage store gives, loaded by COPY.

Every comparison loads the same data into both stores and checks what a client of
the OGC API would see: the same ids, properties (same Python types and ISO text) and
geometries for the same query, the same ``fields``; and what other tools see: GDAL's
PostgreSQL driver reads the published table as it is.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any

import geopandas as gpd
import psycopg
import pyarrow as pa
import pyogrio
import pytest
import shapely
from pyproj import CRS
from shapely.geometry import Point

from geoetl.cql2 import parse
from geoetl.errors import InputError, NotFound
from geoetl.features import postgis
from geoetl.features.geopackage import GeoPackageStore
from geoetl.features.postgis import PostgisStore
from geoetl.features.store import FeatureQuery, TimeFilter
from tests.features.killing import kill_mid_copy
from tests.frames import to_arrow, to_frame

DATA = Path(__file__).parents[2] / "examples" / "data"
TABLE = "nc_polygons"
WGS84_WKT = CRS.from_epsg(4326).to_wkt()


def counties() -> pa.Table:
    """North Carolina's counties in EPSG:4326 as the pipeline stages them: WKB ``geometry``."""
    frame = pyogrio.read_dataframe(DATA / "nc.gpkg").to_crs(4326)
    attributes = pa.Table.from_pandas(frame.drop(columns="geometry"), preserve_index=False)
    wkb = shapely.to_wkb(frame.geometry.values, flavor="iso")
    return attributes.append_column("geometry", pa.array(wkb, pa.binary()))


def load(
    store: Any,
    table: pa.Table,
    *,
    name: str = TABLE,
    dataset: str = "nc",
    geometry_type: str = "MultiPolygon",
    index: list[str] | None = None,
) -> None:
    """One load of ``table`` as finalize does it: begin, write_table, finish."""
    store.begin_load(dataset)
    store.write_table(
        dataset,
        name,
        table.to_reader(max_chunksize=37),
        geometry_column="geometry",
        geometry_type=geometry_type,
        crs=WGS84_WKT,
    )
    store.finish_load(dataset, {name: index or []})


def everything(store: Any, dataset: str = "nc", table: str = TABLE, **kw: Any) -> Any:
    """``query`` with the table's fields as queryables and room for every feature."""
    query = FeatureQuery(fields=store.fields(dataset, table), limit=kw.pop("limit", 10_000), **kw)
    return store.query(dataset, table, query)


def catalog(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on the test database, outside the store."""
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def both(store: PostgisStore, gpkg: GeoPackageStore) -> tuple[PostgisStore, GeoPackageStore]:
    """Both stores holding North Carolina's counties."""
    data = counties()
    load(store, data, index=["NAME"])
    load(gpkg, data, index=["NAME"])
    return store, gpkg


def test_published_table_matches_the_geopackage_store(
    both: tuple[PostgisStore, GeoPackageStore], pg_url: str
) -> None:
    pg, gp = both
    assert pg.tables("nc") == [TABLE]
    assert pg.count("nc", TABLE) == gp.count("nc", TABLE) == 100
    assert pg.fields("nc", TABLE) == gp.fields("nc", TABLE)
    features, total = everything(pg)
    assert (features, total) == everything(gp)
    assert [f["id"] for f in features] == list(range(1, 101))  # load order, as GeoPackage
    frame = to_frame(pg.read("nc", TABLE))
    reference = to_frame(gp.read("nc", TABLE))
    assert list(frame.columns) == list(reference.columns)
    assert frame.crs.to_epsg() == 4326
    assert frame["NAME"].tolist() == reference["NAME"].tolist()
    assert shapely.equals_exact(frame.geometry.values, reference.geometry.values, 0).all()
    # What TiPG and QGIS see: typed geometry with SRID, primary key, GiST and B-tree indexes.
    [(geometry_type, srid)] = catalog(
        pg_url,
        "SELECT type, srid FROM geometry_columns WHERE f_table_schema = 'geo' "
        "AND f_table_name = %s",
        TABLE,
    )
    assert (geometry_type, srid) == ("MULTIPOLYGON", 4326)
    indexes = dict(
        catalog(pg_url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", TABLE)
    )
    definitions = " ".join(indexes.values())
    assert "USING gist (geometry)" in definitions
    assert 'USING btree ("NAME")' in definitions
    assert "UNIQUE INDEX" in definitions
    assert "(fid)" in definitions
    # A primary key constraint, not only a unique index: TiPG and QGIS take it for the id.
    [(kind, key)] = catalog(
        pg_url,
        "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'geo.nc_polygons'::regclass",
    )
    assert (kind, key) == ("p", "PRIMARY KEY (fid)")
    [(comment,)] = catalog(pg_url, "SELECT obj_description('geo.nc_polygons'::regclass)")
    assert comment == "geoetl dataset nc\n100 features"
    # Nothing but the features in geo: the staging schema is empty after publishing.
    assert catalog(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'geo'") == [(TABLE,)]
    assert catalog(pg_url, STAGED_TABLES) == []
    assert catalog(pg_url, 'SELECT count(*) FROM geo_staging."geoetl.chunks"') == [(0,)]


# The staging schema's dataset tables (not the load's record of copied chunks).
STAGED_TABLES = (
    "SELECT tablename FROM pg_tables WHERE schemaname = 'geo_staging' "
    "AND tablename <> 'geoetl.chunks' ORDER BY 1"
)


FILTERS = [
    "NAME = 'Wake'",
    "NAME <> 'Wake' AND AREA > 0.2",
    "AREA BETWEEN 0.1 AND 0.12",
    "AREA NOT BETWEEN 0.05 AND 0.2",
    "NAME IN ('Wake', 'Durham', 'Orange')",
    "NAME NOT IN ('Wake', 'Durham')",
    "NAME LIKE 'W%'",
    "NAME LIKE '_a%'",
    "NAME LIKE 'w%'",  # case-sensitive: no county starts with a lowercase w
    "NOT (NAME LIKE 'C%') AND CRESS_ID < 20",
    "BIR74 >= 10000 OR SID79 IS NULL",
    "NAME IS NOT NULL AND CRESS_ID = 92",
    "NAME IS NULL",  # a condition without parameters: the total is counted, not stored
    "S_INTERSECTS(geometry, POLYGON((-80 35, -78 35, -78 36.5, -80 36.5, -80 35)))",
    "S_WITHIN(geometry, POLYGON((-80 35, -78 35, -78 36.5, -80 36.5, -80 35)))",
    "S_CONTAINS(geometry, POINT(-78.64 35.78))",
    "S_DISJOINT(geometry, POLYGON((-80 35, -78 35, -78 36.5, -80 36.5, -80 35)))",
    "S_TOUCHES(geometry, POLYGON((-80 35, -78 35, -78 36.5, -80 36.5, -80 35)))",
    "S_CROSSES(geometry, LINESTRING(-84 35.5, -76 35.5))",
    "S_OVERLAPS(geometry, POLYGON((-80 35, -78 35, -78 36.5, -80 36.5, -80 35)))",
    "S_INTERSECTS(geometry, BBOX(-80, 35, -78, 36.5)) AND NAME LIKE 'W%'",
    "BBOX(geometry, -80, 35, -78, 36.5)",
]


@pytest.mark.parametrize("text", FILTERS)
def test_cql2_filters_select_what_the_geopackage_store_selects(
    both: tuple[PostgisStore, GeoPackageStore], text: str
) -> None:
    pg, gp = both
    got, total = everything(pg, filter=parse(text))
    expected, expected_total = everything(gp, filter=parse(text))
    assert total == expected_total == len(got)
    assert [f["id"] for f in got] == [f["id"] for f in expected]
    assert got == expected


def test_s_equals_finds_the_same_geometry(both: tuple[PostgisStore, GeoPackageStore]) -> None:
    pg, gp = both
    wake = everything(gp, equals=(("NAME", "Wake"),))[0][0]["geometry"]
    node = parse({"op": "s_equals", "args": [{"property": "geometry"}, wake]}, "cql2-json")
    got, total = everything(pg, filter=node)
    assert total == 1
    assert got[0]["properties"]["NAME"] == "Wake"
    assert got == everything(gp, filter=node)[0]


def test_paging_sorting_bbox_equality_and_properties(
    both: tuple[PostgisStore, GeoPackageStore],
) -> None:
    pg, gp = both
    fields = pg.fields("nc", TABLE)
    queries = [
        FeatureQuery(fields=fields, bbox=(-80, 35, -78, 36.5), limit=7, offset=3),
        FeatureQuery(fields=fields, sortby=(("BIR74", True),), limit=5, offset=10),
        FeatureQuery(fields=fields, sortby=(("SID74", False), ("NAME", True)), limit=20),
        FeatureQuery(fields=fields, equals=(("NAME", "Wake"),)),
        FeatureQuery(fields=fields, equals=(("CRESS_ID", 92), ("AREA", 0.219))),
        FeatureQuery(fields=fields, properties=frozenset({"NAME", "FIPS", "nope"}), limit=3),
        FeatureQuery(fields=fields, feature_id=42),
        FeatureQuery(fields=fields, feature_id=4242),
        FeatureQuery(fields=fields, equals=(("NAME", "x' OR '1'='1"),)),
    ]
    for query in queries:
        assert pg.query("nc", TABLE, query) == gp.query("nc", TABLE, query), query
    page, total = pg.query("nc", TABLE, queries[0])
    assert total > 10
    assert len(page) == 7
    [wake], n = pg.query("nc", TABLE, queries[3])
    assert n == 1
    assert wake["properties"]["NAME"] == "Wake"
    some, _ = pg.query("nc", TABLE, queries[5])
    assert [set(f["properties"]) for f in some] == [{"NAME", "FIPS"}] * 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"filter": parse("nope = 1")}, "unknown property 'nope'; queryables are: "),
        ({"equals": (("nope", 1),)}, "unknown property 'nope'"),
        ({"sortby": (("nope", False),)}, "cannot sort by 'nope'"),
        ({"filter": parse("S_INTERSECTS(NAME, POINT(0 0))")}, "spatial predicates compare"),
        ({"filter": parse("AREA + 1 > 2")}, "is not supported"),
    ],
)
def test_unknown_properties_are_refused_with_the_queryables(
    both: tuple[PostgisStore, GeoPackageStore], query: dict[str, Any], message: str
) -> None:
    pg, _ = both
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as refused:
        everything(pg, **query)
    if "queryables" in message:
        assert "CRESS_ID" in str(refused.value)
        assert "NAME" in str(refused.value)


def typed_table() -> pa.Table:
    """One column of each kind the pipeline stages, with NULLs, and points with Z."""
    n = 4
    when = [dt.datetime(2021, 5, d, 10, 30, 15, 250_000 * (d % 2)) for d in range(1, n + 1)]
    return pa.table(
        {
            "i64": pa.array([1, None, -(2**40), 7], pa.int64()),
            "i32": pa.array([1, 2, None, -4], pa.int32()),
            "i16": pa.array([1, 2, 3, None], pa.int16()),
            "f32": pa.array([1.5, None, 0.1, -2.0], pa.float32()),
            "f64": pa.array([1.25, 2.5, None, 1e300], pa.float64()),
            "flag": pa.array([True, False, None, True]),
            "label": pa.array(["a", "B", None, 'it\'s "quoted"']),
            "day": pa.array([dt.date(2021, 5, d) for d in range(1, n)] + [None], pa.date32()),
            "local": pa.array([*when[:3], None], pa.timestamp("ms")),
            "utc": pa.array([None, *when[1:]], pa.timestamp("ms", tz="UTC")),
            "tags": pa.array([["x", "y"], [], None, ["z"]], pa.list_(pa.string())),
            "geometry": pa.array(
                shapely.to_wkb(
                    shapely.from_wkt(
                        [
                            "MULTIPOINT Z ((0 0 1))",
                            "MULTIPOINT Z ((1 1 2))",
                            "MULTIPOINT ((2 2))",  # no Z in a Z table: Z 0 is added
                            "MULTIPOINT Z ((3 3 4), (4 4 5))",
                        ]
                    ),
                    flavor="iso",
                ),
                pa.binary(),
            ),
        }
    )


def test_types_and_values_match_the_geopackage_store(
    store: PostgisStore, gpkg: GeoPackageStore
) -> None:
    data = typed_table()
    for s in (store, gpkg):
        load(s, data, name="things", dataset="t", geometry_type="MultiPoint Z")
    assert store.fields("t", "things") == gpkg.fields("t", "things")
    assert store.fields("t", "things")["local"] == "datetime64[ms]"
    got, _ = everything(store, "t", "things")
    expected, _ = everything(gpkg, "t", "things")
    assert [f["properties"] for f in got] == [f["properties"] for f in expected]
    assert got[0]["properties"]["flag"] is True
    assert got[0]["properties"]["utc"] is None
    assert got[1]["properties"]["utc"].endswith("Z")
    assert got[0]["geometry"] == {"type": "MultiPoint", "coordinates": ((0.0, 0.0, 1.0),)}
    assert got[3]["geometry"] == expected[3]["geometry"]
    assert got[2]["geometry"]["coordinates"] == ((2.0, 2.0, 0.0),)
    # read() gives the frame pyogrio gives for the GeoPackage (GDAL reads JSON lists back).
    mine, reference = to_frame(store.read("t", "things")), to_frame(gpkg.read("t", "things"))
    assert (
        mine.drop(columns="tags").dtypes.to_dict()
        == reference.drop(columns="tags").dtypes.to_dict()
    )
    assert mine.drop(columns=["tags", "geometry"]).equals(
        reference.drop(columns=["tags", "geometry"])
    )


def test_time_filters_are_inclusive_instants(store: PostgisStore, gpkg: GeoPackageStore) -> None:
    data = typed_table()
    for s in (store, gpkg):
        load(s, data, name="things", dataset="t", geometry_type="MultiPoint Z")
    utc = dt.UTC
    instant = dt.datetime(2021, 5, 3, 10, 30, 15, 250_000, tzinfo=utc)
    cases = [
        TimeFilter("local", dt.datetime(2021, 5, 2, 10, 30, 15, tzinfo=utc), None),
        TimeFilter("local", None, dt.datetime(2021, 5, 2, 10, 30, 15, tzinfo=utc)),
        TimeFilter("utc", instant, instant),  # an instant: start == end
        TimeFilter("day", dt.datetime(2021, 5, 2, tzinfo=utc), dt.datetime(2021, 5, 3, tzinfo=utc)),
    ]
    ids = []
    for time in cases:
        got, total = everything(store, "t", "things", time=time)
        expected, expected_total = everything(gpkg, "t", "things", time=time)
        assert [f["id"] for f in got] == [f["id"] for f in expected]
        assert total == expected_total
        ids.append([f["id"] for f in got])
    assert ids == [[2, 3], [1, 2], [3], [2, 3]]
    typed = [
        "flag = TRUE",
        "i64 > 0",
        "label < 'a'",
        "day = DATE('2021-05-02')",
        "utc > TIMESTAMP('2021-05-03T00:00:00Z')",
        "label LIKE 'it%'",
        "i32 IS NULL",
    ]
    for text in typed:
        got, _ = everything(store, "t", "things", filter=parse(text))
        expected, _ = everything(gpkg, "t", "things", filter=parse(text))
        assert [f["id"] for f in got] == [f["id"] for f in expected], text
        assert got, text


def frame(start: int, n: int) -> gpd.GeoDataFrame:
    """Points ``start..start+n-1``, named and numbered after their index."""
    return gpd.GeoDataFrame(
        {
            "name": [f"p{i}" for i in range(start, start + n)],
            "value": list(range(start, start + n)),
        },
        geometry=[Point(i, i / 2) for i in range(start, start + n)],
        crs="EPSG:4326",
    )


def values(store: PostgisStore, dataset: str = "ds", table: str = "points") -> list[int]:
    """The ``value`` of every published feature, sorted."""
    return sorted(int(v) for v in to_frame(store.read(dataset, table))["value"])


def test_retried_chunks_neither_duplicate_nor_lose_rows(
    store: PostgisStore, gpkg: GeoPackageStore
) -> None:
    for s in (store, gpkg):
        s.begin_load("ds")
        assert s.write_chunk("ds", "points", 0, to_arrow(frame(0, 10))) == 10
        assert s.write_chunk("ds", "points", 1, to_arrow(frame(10, 10))) == 10
        assert (
            s.write_chunk("ds", "points", 1, to_arrow(frame(10, 10))) == 10
        )  # the retry of chunk 1
    with pytest.raises(NotFound):
        store.tables("ds")  # nothing published before finish_load
    for s in (store, gpkg):
        s.finish_load("ds", {"points": ["name"]})
    assert store.count("ds", "points") == 20
    assert values(store) == list(range(20))
    assert (
        store.fields("ds", "points")
        == gpkg.fields("ds", "points")
        == {
            "name": "object",
            "value": "int64",
        }
    )
    got, total = everything(store, "ds", "points", sortby=(("value", False),))
    expected, _ = everything(gpkg, "ds", "points", sortby=(("value", False),))
    assert total == 20
    assert [(f["properties"], f["geometry"]) for f in got] == [
        (f["properties"], f["geometry"]) for f in expected
    ]
    assert "_chunk" not in got[0]["properties"]


def test_a_copy_that_fails_midway_leaves_the_chunk_as_it_was(
    store: PostgisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 100)))
    store.write_chunk("ds", "points", 1, to_arrow(frame(100, 100)))
    original = psycopg.Copy.write
    written = 0

    def failing(self: psycopg.Copy, data: Any) -> None:
        nonlocal written
        written += 1
        if written == 6:  # the header and 4 of the 10 batches were sent
            raise ConnectionError("network gone")
        original(self, data)

    monkeypatch.setattr(postgis, "SLICE_ROWS", 10)
    monkeypatch.setattr(psycopg.Copy, "write", failing)
    with pytest.raises(ConnectionError):
        store.write_chunk("ds", "points", 1, to_arrow(frame(100, 100)))
    assert written == 6
    monkeypatch.setattr(psycopg.Copy, "write", original)
    store.write_chunk("ds", "points", 1, to_arrow(frame(100, 100)))
    store.finish_load("ds", {})
    assert store.count("ds", "points") == 200
    assert values(store) == list(range(200))


def test_a_writer_killed_mid_copy_is_retried_without_duplicates(
    store: PostgisStore, pg_url: str
) -> None:
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 5000)))
    store.write_chunk("ds", "points", 1, to_arrow(frame(5000, 5000)))  # a complete attempt
    # Killed when the header and half the chunk's 10 batches are in the COPY stream.
    body = """
        from tests.features.test_postgis_store import frame
        from tests.frames import to_arrow
        postgis.SLICE_ROWS = 500
        store.write_chunk("ds", "points", 1, to_arrow(frame(5000, 5000)))
    """
    kill_mid_copy(pg_url, 7, body)
    store.write_chunk("ds", "points", 1, to_arrow(frame(5000, 5000)))  # the retry
    store.finish_load("ds", {})
    assert store.count("ds", "points") == 10_000
    assert values(store) == list(range(10_000))
    ids = [f["id"] for f in everything(store, "ds", "points", limit=10_000)[0]]
    assert len(set(ids)) == 10_000


def test_a_new_load_replaces_the_published_dataset_atomically(
    store: PostgisStore, pg_url: str
) -> None:
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 5)))
    store.write_chunk("ds", "extra", 0, to_arrow(frame(0, 2)))
    store.finish_load("ds", {})
    assert store.tables("ds") == ["extra", "points"]
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(100, 3)))
    assert store.count("ds", "points") == 5  # readers still see the old version
    assert values(store) == list(range(5))
    store.begin_load("ds")  # an unfinished load is discarded
    with pytest.raises(InputError, match="no features to publish"):
        store.finish_load("ds", {})
    store.write_chunk("ds", "points", 0, to_arrow(frame(100, 3)))
    store.finish_load("ds", {})
    assert store.tables("ds") == ["points"]  # the old load's "extra" went with it
    assert values(store) == [100, 101, 102]
    assert store.drop("ds")
    assert not store.drop("ds")
    with pytest.raises(NotFound):
        store.tables("ds")
    assert catalog(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'geo'") == []


def test_unknown_index_columns_name_the_valid_ones(store: PostgisStore) -> None:
    store.begin_load("ds")
    store.write_chunk("ds", "points", 0, to_arrow(frame(0, 5)))
    with pytest.raises(InputError, match=r"cannot index 'nope'.*valid columns: name, value"):
        store.finish_load("ds", {"points": ["nope"]})
    with pytest.raises(NotFound):
        store.tables("ds")  # nothing was published
    store.finish_load("ds", {"points": ["value"]})
    assert store.count("ds", "points") == 5


def test_another_datasets_table_is_never_replaced(store: PostgisStore) -> None:
    store.begin_load("a")
    store.write_chunk("a", "shared_points", 0, to_arrow(frame(0, 5)))
    store.finish_load("a", {})
    store.begin_load("b")
    store.write_chunk("b", "shared_points", 0, to_arrow(frame(0, 2)))
    with pytest.raises(InputError, match="does not belong to dataset b"):
        store.finish_load("b", {})
    assert store.count("a", "shared_points") == 5


def test_hostile_column_names_are_quoted(store: PostgisStore, gpkg: GeoPackageStore) -> None:
    data = pa.table(
        {
            'a"; DROP TABLE x; --': pa.array([1, 2]),
            "Mixed Case": pa.array(["x", "y"]),
            "geometry": pa.array(shapely.to_wkb(shapely.points([0, 1], [0, 1])), pa.binary()),
        }
    )
    for s in (store, gpkg):
        load(s, data, name="weird", dataset="w", geometry_type="Point")
    node = parse({"op": "=", "args": [{"property": "Mixed Case"}, "y"]}, "cql2-json")
    got, total = everything(
        store, "w", "weird", filter=node, sortby=(('a"; DROP TABLE x; --', True),)
    )
    assert total == 1
    assert got == everything(gpkg, "w", "weird", filter=node)[0]


def test_gdal_reads_the_published_table(
    both: tuple[PostgisStore, GeoPackageStore], pg_url: str, tmp_path: Path
) -> None:
    """GDAL's PostgreSQL driver (QGIS, ogr2ogr) reads the table unmodified."""
    pg, _ = both
    database = pg_url.rsplit("/", 1)[1]
    source = f"PG:host=127.0.0.1 user=postgres dbname={database}"
    if "PostgreSQL" in pyogrio.list_drivers():
        read = pyogrio.read_dataframe(source, layer=f"geo.{TABLE}")
    elif shutil.which("ogr2ogr"):  # pyogrio's wheels come without the driver
        out = tmp_path / "copy.gpkg"
        subprocess.run(
            ["ogr2ogr", "-f", "GPKG", str(out), source, f"geo.{TABLE}", "-nln", "copy"],
            check=True,
            capture_output=True,
        )
        read = pyogrio.read_dataframe(out, layer="copy")
    else:
        pytest.skip("no GDAL with the PostgreSQL driver (apt-get install gdal-bin)")
    mine = to_frame(pg.read("nc", TABLE))
    assert len(read) == len(mine) == 100
    assert read.crs.to_epsg() == 4326
    assert read["NAME"].tolist() == mine["NAME"].tolist()
    assert read["BIR74"].tolist() == mine["BIR74"].tolist()
    assert shapely.equals_exact(read.geometry.values, mine.geometry.values, 0).all()


def test_a_crs_without_epsg_code_is_refused(store: PostgisStore) -> None:
    custom = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    store.begin_load("c")
    with pytest.raises(InputError, match="EPSG code"):
        store.write_table(
            "c",
            "c_points",
            counties().to_reader(),
            geometry_column="geometry",
            geometry_type="MultiPolygon",
            crs=CRS(custom).to_wkt(),
        )


def test_features_in_another_crs_come_out_in_crs84(store: PostgisStore) -> None:
    mercator = gpd.GeoDataFrame({"name": ["a"]}, geometry=[Point(1_113_194.9, 0)], crs="EPSG:3857")
    store.begin_load("m")
    store.write_chunk("m", "m_points", 0, to_arrow(mercator))
    store.finish_load("m", {})
    [feature], _ = everything(store, "m", "m_points", bbox=(9.9, -0.1, 10.1, 0.1))
    x, y = feature["geometry"]["coordinates"][0]
    assert (round(x, 6), round(y, 6)) == (10.0, 0.0)
    inside = parse("S_INTERSECTS(geometry, POLYGON((9 -1, 11 -1, 11 1, 9 1, 9 -1)))")
    assert everything(store, "m", "m_points", filter=inside)[1] == 1
