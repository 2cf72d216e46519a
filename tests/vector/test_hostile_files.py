"""Hostile vector uploads: OGR VRTs, GDALG, service drivers, CRS links, wide tables, SQL in names.

Each attack file is real: a control read with plain pyogrio shows what GDAL would have
done with it; geoetl refuses it with an InputError that says what is wrong.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import pytest
import shapely
import sqlalchemy as sa

from geoetl import gdalsafe
from geoetl.engine.models import JobStatus
from geoetl.errors import InputError
from geoetl.features.geopackage import GeoPackageStore
from geoetl.ingest import detect_kind
from geoetl.platform import Platform
from geoetl.vector.columns import MAX_COLUMNS, index_columns
from geoetl.vector.read import csv_header_columns, find_dataset, list_layers, read_chunk
from geoetl.workers import make_runner
from tests.frames import to_arrow
from tests.vector.loopback import Loopback, loopback

DATA = Path(__file__).parents[2] / "examples" / "data"
OGR_VRT_REFUSED = (
    "is an OGR VRT file, which can read other files, databases and URLs; geoetl does not "
    "accept VRT input — upload the dataset it points to"
)


@pytest.fixture
def listener() -> Iterator[Loopback]:
    with loopback() as server:
        yield server


@pytest.fixture
def secret_db(tmp_path: Path) -> Path:
    """A SQLite database outside the upload's folder (as the platform's own would be)."""
    path = tmp_path / "platform" / "geoetl.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE api_tokens (name TEXT, secret TEXT, x REAL, y REAL)")
        conn.execute("INSERT INTO api_tokens VALUES ('admin', 's3cr3t-token', 1.0, 2.0)")
    return path


def ogr_vrt(db: Path) -> str:
    return f"""<OGRVRTDataSource>
  <OGRVRTLayer name="stolen">
    <SrcDataSource>{db}</SrcDataSource>
    <SrcSQL>SELECT name, secret, x, y FROM api_tokens</SrcSQL>
    <GeometryType>wkbPoint</GeometryType>
    <LayerSRS>EPSG:4326</LayerSRS>
    <GeometryField encoding="PointFromColumns" x="x" y="y"/>
  </OGRVRTLayer>
</OGRVRTDataSource>
"""


def upload(tmp_path: Path, name: str, content: str | bytes) -> Path:
    folder = tmp_path / "bronze" / "0123abcd"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name", ["tokens.vrt", "tokens.csv", "tokens.geojson", "tokens.gml"])
def test_ogr_vrt_reading_a_database_outside_the_folder_is_refused(
    tmp_path: Path, secret_db: Path, name: str
) -> None:
    path = upload(tmp_path, name, ogr_vrt(secret_db))
    control = pyogrio.read_dataframe(path)  # what GDAL alone does with it
    assert list(control["secret"]) == ["s3cr3t-token"]
    message = f"{name} {OGR_VRT_REFUSED}"
    for attempt in (
        lambda: find_dataset(path, tmp_path / "scratch"),
        lambda: list_layers(path),
        lambda: read_chunk(path, "stolen"),
        lambda: detect_kind(name, str(path)),
    ):
        with pytest.raises(InputError) as refused:
            attempt()
        assert str(refused.value) == message


def test_gdalg_disguised_as_geojson_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("user,password\nadmin,hunter2\n")
    pipeline = {
        "type": "gdal_streamed_alg",
        "command_line": f"gdal vector pipeline ! read {secret} ! write --of stream streamed",
    }
    path = upload(tmp_path, "roads.geojson", json.dumps(pipeline))
    assert pyogrio.read_info(path)["driver"] == "GDALG"  # control: GDAL runs it
    with pytest.raises(InputError, match="is a GDAL streamed algorithm"):
        list_layers(path)
    with pytest.raises(InputError, match="is a GDAL streamed algorithm"):
        detect_kind("roads.geojson", str(path))


def test_wfs_description_is_refused_without_a_connection(
    tmp_path: Path, listener: Loopback
) -> None:
    path = upload(
        tmp_path,
        "layer.xml",
        f"<OGRWFSDataSource><URL>{listener.url('')}</URL></OGRWFSDataSource>",
    )
    with pytest.raises(InputError, match="is an OGR WFS service description"):
        list_layers(path)
    assert listener.connections() == 0


def test_driver_off_the_allow_list_is_refused_before_data_is_read(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(1, 2)], crs="EPSG:4326")
    path = tmp_path / "bronze" / "f" / "points.sqlite"
    path.parent.mkdir(parents=True)
    pyogrio.write_dataframe(frame, path, driver="SQLite")
    assert pyogrio.read_info(path)["driver"] == "SQLite"
    with pytest.raises(InputError, match="read by GDAL's SQLite driver, which geoetl does not"):
        list_layers(path)
    with pytest.raises(InputError, match="SQLite driver"):
        read_chunk(path, "points")


def crs_link_geojson(tmp_path: Path, href: str, *, at_end: bool = False) -> Path:
    crs = {"type": "link", "properties": {"href": href, "type": "proj4"}}
    point = {"type": "Point", "coordinates": [6.1, 49.6]}
    features = [{"type": "Feature", "properties": {"a": i}, "geometry": point} for i in range(3)]
    document: dict[str, Any] = {"type": "FeatureCollection"}
    if not at_end:
        document["crs"] = crs
    document["features"] = features
    if at_end:
        document["crs"] = crs
    return upload(tmp_path, f"points{int(at_end)}.geojson", json.dumps(document))


@pytest.mark.parametrize("at_end", [False, True])
def test_crs_link_in_geojson_fetches_nothing(
    tmp_path: Path, listener: Loopback, monkeypatch: pytest.MonkeyPatch, at_end: bool
) -> None:
    pyogrio.read_info(crs_link_geojson(tmp_path, listener.url(""), at_end=at_end))
    seen = listener.connections()
    assert seen > 0  # control: GDAL calls the URL in the file
    # geoetl refuses the file, even where NO_PROXY would let curl bypass the dead proxy.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    path = crs_link_geojson(tmp_path, listener.url(""), at_end=at_end)
    for attempt in (lambda: list_layers(path), lambda: detect_kind(path.name, str(path))):
        with pytest.raises(InputError, match="gives its CRS as a link"):
            attempt()
    assert listener.connections() == seen


def test_gdal_configuration_alone_keeps_http_off(tmp_path: Path, listener: Loopback) -> None:
    # A layer of defence under the content checks: with geoetl's settings GDAL's HTTP
    # requests (CPLHTTPFetch) go to a proxy curl refuses, and the file still reads.
    path = crs_link_geojson(tmp_path, listener.url(""))
    with gdalsafe.safe_gdal(raster=False):
        assert pyogrio.read_info(path)["features"] == 3
    assert listener.connections() == 0
    assert pyogrio.get_gdal_config_option("GDAL_HTTP_PROXY") is None  # given back


def test_vsi_and_prefixed_paths_are_refused(tmp_path: Path, listener: Loopback) -> None:
    for path in (f"/vsicurl/{listener.url('.geojson')}", "PG:dbname=geoetl", "WFS:http://x/"):
        with pytest.raises(InputError, match="network path, URL or GDAL connection string"):
            list_layers(Path(path))
    assert listener.connections() == 0


def test_symlink_to_another_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "bronze" / "f"
    folder.mkdir(parents=True)
    (folder / "nc.gpkg").symlink_to(DATA / "nc.gpkg")
    with pytest.raises(InputError, match="outside its own folder"):
        find_dataset(folder / "nc.gpkg", tmp_path / "scratch")


def test_gdal_config_is_shared_and_restored_across_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    before = pyogrio.get_gdal_config_option("OGR_SQLITE_ALLOW_EXTERNAL_ACCESS")
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: len(list_layers(DATA / "nc.gpkg")), range(32)))
    assert counts == [1] * 32
    assert pyogrio.get_gdal_config_option("OGR_SQLITE_ALLOW_EXTERNAL_ACCESS") == before
    assert pyogrio.get_gdal_config_option("CPL_VSIL_CURL_ALLOWED_FILENAME") is None
    with gdalsafe.safe_gdal(raster=False):
        assert pyogrio.get_gdal_config_option("OGR_SQLITE_ALLOW_EXTERNAL_ACCESS") == "NO"
        assert pyogrio.get_gdal_config_option("GDAL_HTTP_PROXY") == gdalsafe.NO_NETWORK_PROXY


# --- wide tables --------------------------------------------------------------------------


def wide_csv(path: Path, columns: int) -> Path:
    header = ",".join(["lon", "lat", *(f"c{i}" for i in range(columns - 2))])
    path.write_text(header + "\n" + ",".join(["6.1", "49.6", *("1" * (columns - 2))]) + "\n")
    return path


def test_million_column_csv_is_refused_with_its_count(tmp_path: Path) -> None:
    path = wide_csv(tmp_path / "wide.csv", 1_000_000)
    with pytest.raises(InputError) as refused:
        list_layers(path)
    assert str(refused.value) == (
        "wide.csv has 1,000,000 columns; geoetl accepts at most 1,000 per layer — drop the "
        "columns you do not need (or split the table) and upload it again"
    )


def test_csv_gdal_would_truncate_silently_is_refused(tmp_path: Path) -> None:
    path = wide_csv(tmp_path / "wide.csv", 5_000)
    assert len(pyogrio.read_info(path)["fields"]) == 2_000  # control: GDAL drops 3,000
    with pytest.raises(InputError, match="has 5,000 columns; geoetl accepts at most 1,000"):
        list_layers(path)


def test_wide_geojson_layer_is_refused(tmp_path: Path) -> None:
    props = {f"p{i}": i for i in range(MAX_COLUMNS + 1)}
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": props,
                "geometry": {"type": "Point", "coordinates": [1, 2]},
            }
        ],
    }
    path = upload(tmp_path, "wide.geojson", json.dumps(document))
    with pytest.raises(InputError, match=r"layer 'wide' of wide.geojson has 1,001 columns"):
        list_layers(path)


def test_csv_header_count_respects_quotes_and_separators(tmp_path: Path) -> None:
    cases = {
        'a,"b,c",d\n1,2,3\n': 3,
        "a;b;c;d\n": 4,
        "a\tb\n": 2,
        'x,"multi\nline",y\n': 3,
        "single": 1,
    }
    for text, expected in cases.items():
        path = tmp_path / "h.csv"
        path.write_text(text)
        assert csv_header_columns(path) == expected, text
    assert MAX_COLUMNS == 1_000
    # Exactly the limit is fine (lon and lat become the geometry).
    [layer] = list_layers(wide_csv(tmp_path / "ok.csv", MAX_COLUMNS))
    assert len(layer.fields) == MAX_COLUMNS - 2


# --- index_columns ------------------------------------------------------------------------

INJECTION = 'x"; DROP TABLE nc_polygons; --'


def test_index_columns_are_checked_against_real_names() -> None:
    columns = {"a": {"NAME": "name", "Pop 2020": "pop_2020"}, "b": {"NAME": "name"}}
    assert index_columns(["NAME", "pop_2020"], columns) == {
        "a": ["name", "pop_2020"],
        "b": ["name"],
    }
    with pytest.raises(InputError) as refused:
        index_columns([INJECTION], columns)
    assert str(refused.value) == (
        f"index_columns {INJECTION!r} is not a column of this dataset; "
        "valid columns: name, pop_2020"
    )


def test_index_sql_quotes_identifiers_and_refuses_unknown_columns(tmp_path: Path) -> None:
    store = GeoPackageStore(tmp_path / "features")
    store.begin_load("d")
    frame = gpd.GeoDataFrame(
        {'we"ird': [1], "plain": [2]}, geometry=[shapely.Point(1, 2)], crs="EPSG:4326"
    )
    store.write_chunk("d", "t", 0, to_arrow(frame))
    with pytest.raises(InputError, match="t has no such column"):
        store.finish_load("d", {"t": [INJECTION]})
    store.finish_load("d", {"t": ['we"ird', "plain"]})
    with sqlite3.connect(store.path("d")) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {'ix_t_we"ird', "ix_t_plain"} <= indexes


# --- the workflow --------------------------------------------------------------------------


def put(platform: Platform, path: Path) -> str:
    return platform.objects.put_content_addressed(path)[0]


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    job_id, _ = platform.store.submit("process_vector", params)
    runner = make_runner(platform, "hostile-vector-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def failed_with(platform: Platform, params: dict[str, Any]) -> str:
    job_id, status = run(platform, params)
    error = platform.queries.job(job_id).error
    assert status == JobStatus.failed
    assert error is not None
    assert platform.feature_registry.all() == []
    assert platform.objects.list("silver") == []
    return error.message


def test_process_vector_refuses_an_ogr_vrt_on_the_platform_database(
    platform: Platform, tmp_path: Path, secret_db: Path
) -> None:
    path = upload(tmp_path, "parcels.csv", ogr_vrt(secret_db))
    message = failed_with(platform, {"source": put(platform, path), "access_level": "public"})
    assert message == f"parcels.csv {OGR_VRT_REFUSED}"


def test_process_vector_refuses_sql_in_index_columns(platform: Platform) -> None:
    message = failed_with(
        platform, {"source": put(platform, DATA / "nc.gpkg"), "index_columns": [INJECTION]}
    )
    assert message.startswith(f"index_columns {INJECTION!r} is not a column of this dataset")
    assert "valid columns: " in message


def test_process_vector_indexes_real_columns(platform: Platform) -> None:
    job_id, status = run(
        platform, {"source": put(platform, DATA / "nc.gpkg"), "index_columns": ["NAME", "fips"]}
    )
    assert status == JobStatus.succeeded, platform.queries.job(job_id).error
    if platform.store.engine.dialect.name == "sqlite":
        with sqlite3.connect(platform.features.path("nc")) as conn:  # type: ignore[attr-defined]
            rows = conn.execute("SELECT sql FROM sqlite_master WHERE type='index'").fetchall()
    else:
        with platform.store.engine.connect() as db:
            rows = db.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'nc_polygons'")
            ).fetchall()
    indexed = " ".join(str(r[0]) for r in rows if r[0]).lower()
    for column in ("name", "fips"):
        assert re.search(rf'\("?{column}"?\)', indexed), indexed


def test_process_vector_refuses_a_wide_csv(platform: Platform, tmp_path: Path) -> None:
    path = wide_csv(tmp_path / "wide.csv", 5_000)
    message = failed_with(platform, {"source": put(platform, path), "input_crs": "EPSG:4326"})
    assert message.startswith("wide.csv has 5,000 columns; geoetl accepts at most 1,000")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"input_crs": "+init=epsg:4326"}, "input_crs uses +init="),
        ({"target_crs": "+proj=longlat +nadgrids=/etc/passwd"}, "target_crs parameter +nadgrids"),
        ({"target_crs": "http://127.0.0.1:9/crs"}, "target_crs 'http://127.0.0.1:9/crs' is a URL"),
    ],
)
def test_process_vector_refuses_crs_strings_that_read_files(
    platform: Platform, params: dict[str, str], message: str
) -> None:
    got = failed_with(platform, {"source": put(platform, DATA / "nc.gpkg"), **params})
    assert re.match(re.escape(message), got), got
