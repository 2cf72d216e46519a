"""process_vector on both backends: sample datasets and synthetic hard cases."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import Point, Polygon

from geoetl.api.app import create_app
from geoetl.engine.models import JobStatus
from geoetl.engine.workflow import ParamsError
from geoetl.features.postgis import PostgisStore
from geoetl.features.store import FeatureQuery
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_janitor, make_runner
from tests.engine.helpers import expire_lease, make_runnable_now
from tests.frames import to_frame

DATA = Path(__file__).parents[2] / "examples" / "data"


def put(platform: Platform, path: Path) -> str:
    if path.suffix == ".shp":
        sidecars = [p for p in path.parent.glob(f"{path.stem}.*") if p != path]
        return platform.objects.put_file_set(path, sidecars)
    return platform.objects.put_content_addressed(path)[0]


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    job_id, _ = platform.store.submit("process_vector", params)
    runner = make_runner(platform, "vector-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def published(platform: Platform, collection_id: str) -> gpd.GeoDataFrame:
    fc = platform.feature_registry.get(collection_id)
    return to_frame(platform.features.read(fc.dataset_id, fc.table_name))


@pytest.mark.parametrize(
    ("name", "count", "column"),
    [
        ("nc.gpkg", 100, "NAME"),
        ("buildings.gpkg", 158, "cat"),
        ("lux.shp", 12, "NAME_2"),
        ("naturalearth_lowres.shp", 177, "name"),
    ],
)
def test_sample_counts_attributes_and_crs(
    platform: Platform, name: str, count: int, column: str
) -> None:
    job_id, status = run(platform, {"source": put(platform, DATA / name)})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    [table] = view.result["tables"]
    assert table["features"] == count
    out = published(platform, table["collection_id"])
    source = pyogrio.read_dataframe(DATA / name)
    assert len(out) == count
    assert out.crs.to_epsg() == 4326
    assert shapely.is_valid(out.geometry.values).all()
    stored = column.lower()
    mapping = view.result["columns"][next(iter(view.result["columns"]))]
    assert mapping[column] == stored  # original -> stored names are recorded
    assert sorted(out[stored].astype(str)) == sorted(source[column].astype(str))
    # Reprojection is right: centroids match GeoPandas' own transformation.
    expected = source.to_crs(4326).geometry.centroid
    got = out.geometry.centroid
    order = np.argsort(out[stored].astype(str).to_numpy())
    src_order = np.argsort(source[column].astype(str).to_numpy())
    if source[column].is_unique:
        assert np.allclose(got.x.to_numpy()[order], expected.x.to_numpy()[src_order], atol=1e-6)
    # GeoParquet copy with a bbox covering column, readable by GeoPandas.
    key = platform.queries.job(job_id).result["urls"]["geoparquet"][table["collection_id"]]
    parquet_path = platform.objects.gdal_path(key)
    assert len(gpd.read_parquet(parquet_path)) == count
    schema = pq.read_schema(parquet_path)
    geo = json.loads(schema.metadata[b"geo"])
    assert geo["version"].startswith("1.1")
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert "bbox" in schema.names
    item = platform.catalog.get_item("system-vectors", view.result["dataset_id"])
    assert item["properties"]["geoetl:job_id"] == job_id


def test_storms_need_input_crs_and_keep_z(platform: Platform) -> None:
    key = put(platform, DATA / "storms_xyz.shp")
    job_id, status = run(platform, {"source": key})
    assert status == JobStatus.failed
    assert "pass input_crs" in platform.queries.job(job_id).error.message
    _, status = run(platform, {"source": key, "input_crs": "EPSG:4326"})
    assert status == JobStatus.succeeded
    assert not shapely.has_z(published(platform, "storms_xyz").geometry.values).any()
    _, status = run(platform, {"source": key, "input_crs": "EPSG:4326", "keep_z": True})
    assert status == JobStatus.succeeded
    assert shapely.has_z(published(platform, "storms_xyz").geometry.values).all()


def test_mixed_invalid_and_antimeridian_features(platform: Platform, tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"label": ["bowtie", "point", "crossing", "empty"]},
        geometry=[
            Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)]),
            Point(1, 1),
            Polygon([(170, -10), (-170, -10), (-170, 10), (170, 10)]),
            Polygon(),
        ],
        crs="EPSG:4326",
    )
    path = tmp_path / "hard.gpkg"
    frame.to_file(path)
    job_id, status = run(platform, {"source": put(platform, path)})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    families = {t["family"]: t for t in view.result["tables"]}
    assert set(families) == {"points", "polygons"}
    assert families["points"]["features"] == 1
    assert families["polygons"]["features"] == 2
    report = view.result["report"]
    assert report["repaired"] == 1
    assert report["antimeridian_split"] == 1
    assert report["dropped"] == {"empty or missing geometry": 1}
    polygons = published(platform, families["polygons"]["collection_id"])
    crossing = polygons[polygons["label"] == "crossing"].geometry.iloc[0]
    assert crossing.bounds[0] == -180
    assert crossing.bounds[2] == 180
    assert crossing.area == pytest.approx(400)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"../../escape.csv": b"lat,lon\n1,2\n"}, "outside the archive folder"),
        ({"big.csv": b"0" * 30_000_000}, "zip bomb"),
        ({"readme.txt": b"hello"}, "holds no vector dataset"),
    ],
)
def test_hostile_or_useless_archives_fail_cleanly(
    platform: Platform, tmp_path: Path, members: dict[str, bytes], message: str
) -> None:
    archive = _zip(tmp_path / "upload.zip", members)
    job_id, status = run(platform, {"source": put(platform, archive)})
    assert status == JobStatus.failed
    assert message in platform.queries.job(job_id).error.message
    assert platform.feature_registry.all() == []
    assert platform.objects.list("silver") == []


def test_zipped_shapefile_loads(platform: Platform, tmp_path: Path) -> None:
    members = {f"lux/{p.name}": p.read_bytes() for p in DATA.glob("lux.*")}
    members["__MACOSX/lux/._lux.shp"] = b"junk"
    archive = _zip(tmp_path / "lux.zip", members)
    job_id, status = run(platform, {"source": put(platform, archive)})
    assert status == JobStatus.succeeded
    assert platform.queries.job(job_id).result["tables"][0]["features"] == 12


def test_empty_layer_is_refused(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"a": []}, geometry=[], crs="EPSG:4326").to_file(path, layer="nothing")
    job_id, status = run(platform, {"source": put(platform, path), "layer": "nothing"})
    assert status == JobStatus.failed
    assert "is empty" in platform.queries.job(job_id).error.message


def test_csv_with_bad_coordinates_reports_dropped_rows(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "places.csv"
    path.write_text("name,lat,lon\nok,50.1,6.1\nbad,abc,xyz\nmissing,,\nalso ok,49.9,5.9\n")
    # lat/lon columns are WGS 84 degrees: no input_crs needed, and the job says so.
    job_id, status = run(platform, {"source": put(platform, path)})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    assert view.result["tables"][0]["features"] == 2
    assert view.result["report"]["dropped"] == {"empty or missing geometry": 2}
    assert view.result["warnings"] == [
        "places.csv: columns 'lat' and 'lon' were read as WGS 84 latitude and longitude "
        "(EPSG:4326); pass input_crs if they are in another CRS"
    ]
    out = published(platform, "places")
    assert sorted(out["name"]) == ["also ok", "ok"]
    assert out.crs.to_epsg() == 4326


def test_killed_chunk_is_retried_without_duplicates(platform: Platform) -> None:
    key = put(platform, DATA / "nc.gpkg")
    job_id, _ = platform.store.submit("process_vector", {"source": key, "chunk_size": 30})
    good = make_runner(platform, "good")
    good.run_once(job_id=job_id)  # inspect
    good.run_once(job_id=job_id)  # plan
    doomed = make_runner(platform, "doomed")
    [task] = platform.store.claim("doomed", job_id=job_id)
    assert task.stage == "load"
    assert doomed._execute(task, []) is not None  # rows written, completion never recorded
    doomed.close()
    expire_lease(platform, task.task_id)
    assert task.task_id in make_janitor(platform).run_once().requeued
    make_runnable_now(platform)
    assert good.run_job(job_id) == JobStatus.succeeded
    good.close()
    result = platform.queries.job(job_id).result
    assert result["tables"][0]["features"] == 100
    assert len(published(platform, "nc")) == 100


def test_intent_selects_a_recipe(platform: Platform) -> None:
    key = put(platform, DATA / "naturalearth_lowres.shp")
    plain_id, _ = run(platform, {"source": key, "dataset_id": "plain"})
    simple_id, _ = run(
        platform,
        {
            "source": key,
            "dataset_id": "simple",
            "intent": "ingest_boundaries",
            "simplify_tolerance": 0.5,
        },
    )
    plain = platform.queries.job(plain_id).result
    simple = platform.queries.job(simple_id).result
    assert plain["recipe"]["steps"] == ["normalize_crs", "clean", "spatial_index"]
    assert "simplify" in simple["recipe"]["steps"]
    vertices = {
        name: int(shapely.get_num_coordinates(published(platform, name).geometry.values).sum())
        for name in ("plain", "simple")
    }
    assert vertices["simple"] < vertices["plain"] * 0.8
    assert shapely.is_valid(published(platform, "simple").geometry.values).all()
    unknown_id, status = run(platform, {"source": key, "dataset_id": "odd", "intent": "weird"})
    assert status == JobStatus.succeeded
    odd = platform.queries.job(unknown_id).result
    assert odd["recipe"]["intent"] == "ingest_vector"
    assert "unknown intent 'weird'" in odd["warnings"][0]


def _write_format(nc: gpd.GeoDataFrame, tmp_path: Path, fmt: str) -> Path:
    if fmt == "parquet":
        path = tmp_path / "nc.parquet"
        nc.to_parquet(path)
        return path
    if fmt == "kmz":
        kml = _write_format(nc, tmp_path, "kml")
        return _zip_kmz(kml, tmp_path / "nc.kmz")
    if fmt == "gdb.zip":
        pyogrio.write_dataframe(nc, tmp_path / "nc.gdb", driver="OpenFileGDB")
        archive = tmp_path / "nc_gdb.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for member in (tmp_path / "nc.gdb").iterdir():
                zf.write(member, f"nc.gdb/{member.name}")
        return archive
    drivers = {"geojson": "GeoJSON", "fgb": "FlatGeobuf", "gml": "GML", "kml": "KML"}
    path = tmp_path / f"nc.{fmt}"
    pyogrio.write_dataframe(nc, path, driver=drivers[fmt])
    return path


def _zip_kmz(kml: Path, kmz: Path) -> Path:
    with zipfile.ZipFile(kmz, "w") as zf:
        zf.write(kml, "doc.kml")
    return kmz


@pytest.mark.parametrize("fmt", ["geojson", "fgb", "gml", "kml", "kmz", "parquet", "gdb.zip"])
def test_every_format_loads(platform: Platform, tmp_path: Path, fmt: str) -> None:
    nc = pyogrio.read_dataframe(DATA / "nc.gpkg")
    source = _write_format(nc, tmp_path, fmt)
    job_id, status = run(platform, {"source": put(platform, source), "dataset_id": "nc"})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    out = published(platform, "nc")
    assert len(out) == 100
    assert out.crs.to_epsg() == 4326
    name_column = "name" if "name" in out.columns else "name_"
    assert sorted(out[name_column]) == sorted(nc["NAME"])


def test_chunks_with_empty_columns_make_one_table_and_geoparquet(
    platform: Platform, tmp_path: Path
) -> None:
    frame = gpd.GeoDataFrame(
        {
            "note": [None, None, "third", "fourth", None],
            "seen": [None, None, None, "2024-05-01T10:00:00", "2024-05-02T11:30:00"],
            "n": [1, 2, 3, 4, 5],
        },
        geometry=[Point(i, i) for i in range(5)],
        crs="EPSG:4326",
    )
    frame["seen"] = gpd.pd.to_datetime(frame["seen"])
    source = tmp_path / "sparse.geojson"
    frame.to_file(source, driver="GeoJSON")
    job_id, status = run(platform, {"source": put(platform, source), "chunk_size": 2})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    out = published(platform, "sparse")
    assert list(out["n"]) == [1, 2, 3, 4, 5]  # chunk order kept
    assert list(out["note"].fillna("-")) == ["-", "-", "third", "fourth", "-"]
    assert out["seen"].notna().sum() == 2
    fc = platform.feature_registry.get("sparse")
    assert fc.fields["n"].startswith("int")
    assert fc.fields["seen"].startswith("datetime")
    assert fc.bbox == [0.0, 0.0, 4.0, 4.0]
    key = view.result["urls"]["geoparquet"]["sparse"]
    parquet = gpd.read_parquet(platform.objects.gdal_path(key))
    assert list(parquet["n"]) == [1, 2, 3, 4, 5]
    geo = json.loads(pq.read_schema(platform.objects.gdal_path(key)).metadata[b"geo"])
    assert geo["columns"]["geometry"]["bbox"] == [0.0, 0.0, 4.0, 4.0]
    assert geo["columns"]["geometry"]["geometry_types"] == ["MultiPoint"]


# --- measures (M) and Z: every output agrees --------------------------------------------


def measured_shapefile(path: Path, wkts: list[str], shape_type: str, crs: str) -> Path:
    """A real XYM / XYZM shapefile written by GDAL (``SHPT`` picks the measured type)."""
    geoms = shapely.from_wkt(wkts)
    table = pa.table(
        {
            "route": pa.array([f"r{i}" for i in range(len(geoms))]),
            "geometry": pa.array(shapely.to_wkb(geoms, flavor="iso"), pa.binary()),
        }
    )
    pyogrio.write_arrow(
        table,
        path,
        geometry_name="geometry",
        geometry_type="Unknown",
        crs=crs,
        layer_options={"SHPT": shape_type},
    )
    # Control: GDAL's Arrow stream hands the measures on (ISO WKB with M).
    _, back = pyogrio.read_arrow(path)
    assert shapely.has_m(shapely.from_wkb(back["wkb_geometry"].to_numpy(False))).all()
    return path


def api_client(settings: Settings) -> TestClient:
    """The OGC API app on ``settings`` (anonymous: it reads public collections)."""
    return TestClient(create_app(settings))


def declared_geometry(platform: Platform, dataset_id: str, table: str) -> tuple[str, int, int]:
    """The geometry type a published table declares, and whether it has Z and M."""
    if platform.store.engine.dialect.name == "sqlite":
        with closing(sqlite3.connect(platform.features.path(dataset_id))) as conn:  # type: ignore[attr-defined]
            row = conn.execute(
                "SELECT geometry_type_name, z, m FROM gpkg_geometry_columns WHERE table_name = ?",
                (table,),
            ).fetchone()
        return str(row[0]), int(row[1]), int(row[2])
    with platform.store.engine.connect() as conn:
        kind, dims = conn.execute(
            sa.text(
                "SELECT type, coord_dimension FROM geometry_columns "
                "WHERE f_table_schema = :schema AND f_table_name = :table"
            ),
            {"schema": platform.settings.postgis_schema, "table": table},
        ).one()
    return str(kind).removesuffix("M"), int(dims >= 3 and not str(kind).endswith("M")), 0


def outputs(client: TestClient, job_id: str, collection: str) -> dict[str, Any]:
    """The geometries as the GeoPackage, the GeoParquet and the OGC API publish them."""
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    result = platform.queries.job(job_id).result
    fc = platform.feature_registry.get(collection)
    stored = to_frame(platform.features.read(fc.dataset_id, fc.table_name))
    parquet = pq.read_table(platform.objects.gdal_path(result["urls"]["geoparquet"][collection]))
    body = client.get(f"/collections/{collection}/items", params={"limit": 100})
    assert body.status_code == 200, body.text
    return {
        "report": result["report"],
        "warnings": result["warnings"],
        "gpkg_declared": declared_geometry(platform, fc.dataset_id, fc.table_name),
        "gpkg": stored.geometry.values,
        "parquet_types": json.loads(parquet.schema.metadata[b"geo"])["columns"]["geometry"][
            "geometry_types"
        ],
        "parquet": shapely.from_wkb(parquet["geometry"].to_numpy(False)),
        "api": [f["geometry"]["coordinates"] for f in body.json()["features"]],
    }


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_xym_shapefile_measures_are_dropped_and_reported_everywhere(
    settings: Settings, tmp_path: Path, crs: str
) -> None:
    # EPSG:3857: the same lines in metres, which the load reprojects.
    wkts = [
        line_wkt("M", [(6.0, 49.6, 0), (6.1, 49.7, 10)], crs),
        line_wkt("M", [(6.2, 49.6, 3), (6.3, 49.8, 7)], crs),
    ]
    shp = measured_shapefile(tmp_path / "routes.shp", wkts, "ARCM", crs)
    with api_client(settings) as client:
        platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
        job_id, status = run(platform, {"source": put(platform, shp), "access_level": "public"})
        assert status == JobStatus.succeeded, platform.queries.job(job_id).error
        out = outputs(client, job_id, "routes")
    assert out["report"]["m_dropped"] == 2
    assert out["report"]["z_dropped"] == 0
    assert any("M (measure) values" in w for w in out["warnings"])
    assert out["gpkg_declared"] == ("MULTILINESTRING", 0, 0)
    assert out["parquet_types"] == ["MultiLineString"]
    for geoms in (out["gpkg"], out["parquet"]):
        assert not shapely.has_m(geoms).any()
        assert not shapely.has_z(geoms).any()
    # GeoJSON positions are [x, y]: no measure passed off as a height.
    assert [[len(p) for p in line[0]] for line in out["api"]] == [[2, 2], [2, 2]]
    assert out["api"][0][0][0] == pytest.approx([6.0, 49.6])


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
@pytest.mark.parametrize("keep_z", [False, True])
def test_xyzm_shapefile_keeps_z_only_when_asked(
    settings: Settings, tmp_path: Path, crs: str, keep_z: bool
) -> None:
    wkt = line_wkt("ZM", [(6.0, 49.6, 100, 0), (6.1, 49.7, 200, 10)], crs)
    shp = measured_shapefile(tmp_path / "tracks.shp", [wkt], "ARCZM", crs)
    with api_client(settings) as client:
        platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
        params = {"source": put(platform, shp), "access_level": "public", "keep_z": keep_z}
        job_id, status = run(platform, params)
        assert status == JobStatus.succeeded, platform.queries.job(job_id).error
        out = outputs(client, job_id, "tracks")
    assert out["report"]["m_dropped"] == 1
    assert out["report"]["z_dropped"] == (0 if keep_z else 1)
    for geoms in (out["gpkg"], out["parquet"]):
        assert not shapely.has_m(geoms).any()
        assert shapely.has_z(geoms).all() == keep_z
    [line] = out["api"]
    if keep_z:
        assert out["gpkg_declared"] == ("MULTILINESTRING", 1, 0)
        assert out["parquet_types"] == ["MultiLineString Z"]
        # The heights survive (also through reprojection), not the measures.
        assert [p[2] for p in line[0]] == pytest.approx([100, 200])
        assert shapely.get_coordinates(out["parquet"], include_z=True)[:, 2] == pytest.approx(
            [100, 200]
        )
    else:
        assert out["gpkg_declared"] == ("MULTILINESTRING", 0, 0)
        assert out["parquet_types"] == ["MultiLineString"]
        assert [len(p) for p in line[0]] == [2, 2]
    assert line[0][1][:2] == pytest.approx([6.1, 49.7])


def line_wkt(dims: str, points: list[tuple[float, ...]], crs: str) -> str:
    """``LINESTRING {dims} (…)`` of lon/lat ``points`` (x, y, then Z and/or M) in ``crs``."""
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    moved = [(*to_crs.transform(p[0], p[1]), *p[2:]) for p in points]
    return f"LINESTRING {dims} ({', '.join(' '.join(repr(v) for v in p) for p in moved)})"


# --- CSV: lat/lon means WGS 84, columns keep their types ---------------------------------

CSV_ROWS = [
    # name, Latitude, Longitude, pop, area, open, founded, seen, zip, ref, note
    ("Alpha", "50.1", "6.1", "100", "1.5", "true", "2024-01-02", "2024-01-02T10:00:00", "01234"),
    ("Beta", "49.9", "5.9", "", "2.25", "FALSE", "2024-02-29", "2024-02-03 11:30:00", "98765"),
    ("Gamma", "49.8", "6.0", "3000000000", "3", "True", "", "", "00012"),
    ("Delta", "49.7", "6.2", "-7", "-0.5", "false", "1999-12-31", "1999-12-31T23:59:59", "4"),
]


def typed_csv(path: Path, geometry: str = "latlon") -> Path:
    """A CSV whose columns are numbers, booleans, dates and codes; ``ref`` turns to text in
    the last row (a later chunk than the one that looked numeric)."""
    rows = []
    for i, (name, lat, lon, *rest) in enumerate(CSV_ROWS):
        ref = "n/a" if i == len(CSV_ROWS) - 1 else str(i + 1)
        where = [lat, lon] if geometry == "latlon" else [f'"POINT ({lon} {lat})"']
        rows.append(",".join([name, *where, *rest, ref]))
    head = ["name", "Latitude", "Longitude"] if geometry == "latlon" else ["name", "shape"]
    header = [*head, "pop", "area", "open", "founded", "seen", "zip", "ref"]
    path.write_text("\n".join([",".join(header), *rows]) + "\n")
    return path


@pytest.mark.parametrize("geometry", ["latlon", "wkt"])
def test_csv_columns_are_published_with_their_types(
    settings: Settings, tmp_path: Path, geometry: str
) -> None:
    source = typed_csv(tmp_path / "towns.csv", geometry)
    params: dict[str, Any] = {"access_level": "public", "chunk_size": 2}
    if geometry == "latlon":  # named in another case than the header's
        params |= {"csv_lat": "latitude", "csv_lon": "LONGITUDE"}
    else:
        params |= {"csv_wkt": "shape", "input_crs": "EPSG:4326"}
    with api_client(settings) as client:
        platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
        job_id, status = run(platform, {"source": put(platform, source), **params})
        view = platform.queries.job(job_id)
        assert status == JobStatus.succeeded, view.error
        body = client.get("/collections/towns/items", params={"limit": 10}).json()
        queryables = client.get("/collections/towns/queryables").json()["properties"]
        opened = client.get("/collections/towns/items", params={"open": "true"}).json()
        closed = client.get("/collections/towns/items", params={"open": "false"}).json()
        fc = platform.feature_registry.get("towns")
        key = view.result["urls"]["geoparquet"]["towns"]
        parquet = pq.read_table(platform.objects.gdal_path(key))
        local = published(platform, "towns")
    props = {f["properties"]["name"]: f["properties"] for f in body["features"]}
    assert props["Alpha"] == {
        "name": "Alpha",
        "pop": 100,
        "area": 1.5,
        "open": True,
        "founded": "2024-01-02",
        "seen": "2024-01-02T10:00:00",
        "zip": "01234",  # a code with a leading zero stays text
        "ref": "1",  # text: the last row holds "n/a"
    }
    assert props["Beta"]["pop"] is None
    assert props["Beta"]["open"] is False
    # Property equality filters take booleans as true/false.
    assert {f["properties"]["name"] for f in opened["features"]} == {
        n for n, p in props.items() if p["open"] is True
    }
    assert "Beta" in {f["properties"]["name"] for f in closed["features"]}
    assert props["Gamma"]["pop"] == 3_000_000_000
    assert props["Gamma"]["area"] == 3.0
    assert props["Delta"]["ref"] == "n/a"
    assert {f["geometry"]["coordinates"][0][0] for f in body["features"]} == {6.1, 5.9, 6.0, 6.2}
    types = {name: queryables[name]["type"] for name in ("pop", "area", "open", "zip", "ref")}
    assert types == {
        "pop": "integer",
        "area": "number",
        "open": "boolean",
        "zip": "string",
        "ref": "string",
    }
    assert fc.fields["founded"].startswith("datetime64")
    assert fc.fields["seen"].startswith("datetime64")
    schema = {f.name: str(f.type) for f in parquet.schema}
    assert schema["pop"] == "int64"
    assert schema["area"] == "double"
    assert schema["open"] == "bool"
    assert schema["founded"] == "date32[day]"
    assert schema["seen"] == "timestamp[ms]"
    assert schema["zip"] == schema["ref"] == "string"
    assert "latitude" not in local.columns  # the coordinate columns became the geometry
    if geometry == "latlon":
        assert "WGS 84" in view.result["warnings"][0]
        assert "'Latitude' and 'Longitude'" in view.result["warnings"][0]
    else:
        assert view.result["warnings"] == []


def test_csv_lat_lon_in_metres_ask_for_input_crs(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "swiss.csv"
    path.write_text("name,lat,lon\nBern,1199700,2600600\nZurich,1247200,2683100\n")
    job_id, status = run(platform, {"source": put(platform, path)})
    assert status == JobStatus.failed
    assert platform.queries.job(job_id).error.message == (
        "swiss.csv: 2 row(s) have 'lon'/'lat' values outside longitude ±180 / latitude ±90 "
        "(the first: 2.6006e+06, 1.1997e+06), so they are not WGS 84 degrees; pass input_crs "
        "naming their coordinate reference system (input_crs EPSG:4326 loads them as they are)"
    )
    job_id, status = run(platform, {"source": put(platform, path), "input_crs": "EPSG:2056"})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    assert view.result["warnings"] == []
    bern = published(platform, "swiss").sort_values("name").geometry.iloc[0].geoms[0]
    assert (bern.x, bern.y) == (pytest.approx(7.44, abs=0.01), pytest.approx(46.95, abs=0.01))


# --- tables without geometry: say so first, and what to do ----------------------------


def test_csv_without_geometry_says_so_before_asking_for_a_crs(
    platform: Platform, tmp_path: Path
) -> None:
    path = tmp_path / "budget.csv"
    path.write_text("office,amount,year\nNorth,1200.5,2024\nSouth,900,2024\n")
    expected = (
        "budget.csv has no geometry: name its coordinate columns with csv_lat and csv_lon "
        "(or a column of WKT geometries with csv_wkt); its columns are: 'office', 'amount', "
        "'year'"
    )
    for extra in ({}, {"input_crs": "EPSG:4326"}):
        job_id, status = run(platform, {"source": put(platform, path), **extra})
        assert status == JobStatus.failed
        assert platform.queries.job(job_id).error.message == expected
    job_id, status = run(
        platform, {"source": put(platform, path), "csv_lat": "lat", "csv_lon": "office"}
    )
    assert status == JobStatus.failed
    assert platform.queries.job(job_id).error.message == (
        "csv_lat names column 'lat', which budget.csv does not have; its columns are: "
        "'office', 'amount', 'year'"
    )
    with pytest.raises(ParamsError, match="give both csv_lat and csv_lon"):
        platform.store.submit("process_vector", {"source": put(platform, path), "csv_lat": "y"})


def test_attribute_tables_of_a_geopackage(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "registry.gpkg"
    pyogrio.write_arrow(
        pa.table({"code": ["a", "b"], "label": ["A", "B"]}), path, layer="codes", driver="GPKG"
    )
    key = put(platform, path)
    job_id, status = run(platform, {"source": key})
    assert status == JobStatus.failed
    assert platform.queries.job(job_id).error.message == (
        "layer 'codes' of registry.gpkg has no geometry (a table of attributes only, columns: "
        "'code', 'label'); geoetl publishes features with a geometry"
    )
    sites = gpd.GeoDataFrame({"code": ["a"]}, geometry=[Point(6, 49)], crs="EPSG:4326")
    pyogrio.write_dataframe(sites, path, layer="sites", append=True)
    key = put(platform, path)
    job_id, status = run(platform, {"source": key, "layer": "codes"})
    assert status == JobStatus.failed
    assert platform.queries.job(job_id).error.message.endswith(
        "geoetl publishes features with a geometry — choose a layer that has one with "
        "layer: 'sites'"
    )
    job_id, status = run(platform, {"source": key})  # every layer: the table is left out
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    assert [t["features"] for t in view.result["tables"]] == [1]
    assert view.result["warnings"] == ["layer 'codes' of registry.gpkg has no geometry: not loaded"]


def column_descriptions(platform: Platform, dataset_id: str, table: str) -> dict[str, str]:
    """Column descriptions as other tools read them (PostgreSQL comments, gpkg_data_columns)."""
    if platform.store.engine.dialect.name == "sqlite":
        with closing(sqlite3.connect(platform.features.path(dataset_id))) as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                "SELECT column_name, description FROM gpkg_data_columns WHERE table_name = ?",
                (table,),
            ).fetchall()
    else:
        with platform.store.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a "
                    "WHERE a.attrelid = to_regclass(:table) AND a.attnum > 0 "
                    "AND col_description(a.attrelid, a.attnum) IS NOT NULL"
                ),
                {"table": f"{platform.settings.postgis_schema}.{table}"},
            ).fetchall()
    return {str(name): str(text) for name, text in rows}


def test_columns_are_described_with_their_source(platform: Platform) -> None:
    job_id, status = run(platform, {"source": put(platform, DATA / "nc.gpkg")})
    assert status == JobStatus.succeeded, platform.queries.job(job_id).error
    described = column_descriptions(platform, "nc", "nc_polygons")
    assert described["name"] == "NAME (column of nc.gpkg)"
    assert len(described) == len(platform.feature_registry.get("nc").fields)


@pytest.mark.parametrize("dropped", [False, True])
def test_feature_ids_follow_the_source_across_chunks(
    platform: Platform, tmp_path: Path, dropped: bool
) -> None:
    """Features are numbered 1..n in source order, whether chunks stage their rows or not.

    On PostGIS each chunk copies its rows under the ids of its place in the layer;
    when cleaning drops a feature those ids would leave a gap, so finalize writes the
    table whole instead. The GeoPackage store always writes it whole.
    """
    squares = [Polygon([(i, 0), (i + 0.5, 0), (i + 0.5, 0.5), (i, 0.5)]) for i in range(25)]
    if dropped:
        squares[12] = Polygon()  # nothing to publish: dropped by cleaning
    frame = gpd.GeoDataFrame({"n": range(25)}, geometry=squares, crs="EPSG:3857")
    source = tmp_path / "squares.gpkg"
    frame.to_file(source, driver="GPKG")
    job_id, status = run(platform, {"source": put(platform, source), "chunk_size": 10})
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    kept = [n for n in range(25) if not (dropped and n == 12)]
    fc = platform.feature_registry.get("squares")
    query = FeatureQuery(fields=fc.fields, limit=100)
    features, total = platform.features.query(fc.dataset_id, fc.table_name, query)
    assert total == len(kept)
    assert [(f["id"], f["properties"]["n"]) for f in features] == [
        (i + 1, n) for i, n in enumerate(kept)
    ]
    loads = platform.queries.tasks(job_id, stage="load").items
    copied = [next(iter(t.result["tables"].values()))["copied"] for t in loads]
    if isinstance(platform.features, PostgisStore):
        # Every chunk that kept all its rows staged them; the one with a gap did not.
        assert copied == ([10, None, 5] if dropped else [10, 10, 5])
    else:
        assert copied == [None, None, None]
