"""A vector load streams: batches read, parts written and merged a row group at a time.

Memory itself is a benchmark figure (benchmarks/postgis.py, docs/bench-ingestperf.md);
these tests check that streaming loses, duplicates and reorders nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from pyproj import CRS

from geoetl.engine.models import JobStatus
from geoetl.errors import InputError
from geoetl.platform import Platform
from geoetl.vector import geoarrow
from geoetl.vector.geoparquet import GEOMETRY, MergedParts, PartWriter, part_table
from geoetl.vector.read import list_layers, read_batches, read_chunk
from geoetl.workers import make_runner
from geoetl.workflows import process_vector
from tests.frames import to_frame


def _squares(n: int, crs: str = "EPSG:32618") -> gpd.GeoDataFrame:
    x = np.arange(n, dtype=float) * 100 + 500_000
    geoms = shapely.box(x, 4_500_000, x + 50, 4_500_050)
    return gpd.GeoDataFrame(
        {"n": np.arange(n), "name": [f"f{i}" for i in range(n)]}, geometry=geoms, crs=crs
    )


@pytest.fixture
def gpkg(tmp_path: Path) -> Path:
    path = tmp_path / "squares.gpkg"
    pyogrio.write_dataframe(_squares(2_500), path, layer="squares")
    return path


def test_batches_of_a_gpkg_are_the_chunk_in_order(gpkg: Path) -> None:
    whole = read_chunk(gpkg, "squares", skip=300, limit=1_700)
    batches = list(read_batches(gpkg, "squares", skip=300, limit=1_700, batch_size=400))
    assert [len(b.geometries) for b in batches] == [400, 400, 400, 400, 100]
    assert pa.concat_tables([b.attributes for b in batches]).equals(whole.attributes)
    geoms = np.concatenate([b.geometries for b in batches])
    assert shapely.equals(geoms, whole.geometries).all()
    assert batches[0].attributes.column("n")[0].as_py() == 300
    assert all(b.crs == whole.crs for b in batches)


def test_batches_of_a_geoparquet_read_only_the_rows_asked(tmp_path: Path) -> None:
    path = tmp_path / "squares.parquet"
    _squares(2_500, "EPSG:4326").to_parquet(path, row_group_size=700)
    assert pq.ParquetFile(path).num_row_groups == 4
    batches = list(read_batches(path, "squares", skip=1_000, limit=1_250, batch_size=300))
    numbers = np.concatenate([b.attributes.column("n").to_numpy() for b in batches])
    assert numbers.tolist() == list(range(1_000, 2_250))
    assert max(len(b.geometries) for b in batches) <= 300
    whole = read_chunk(path, "squares", skip=1_000, limit=1_250)
    assert shapely.equals(np.concatenate([b.geometries for b in batches]), whole.geometries).all()
    assert read_chunk(path, "squares", skip=5_000).attributes.num_rows == 0  # past the end


MIXED_SHAPES = {
    "point": ["POINT (1 2)", "POINT (3 4)", None, "POINT (5 6)"],
    "linestring": ["LINESTRING (0 0, 1 1, 2 0)", None, "LINESTRING (5 5, 6 6)"],
    "polygon": [
        "POLYGON ((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 2, 1 1))",
        "POLYGON ((10 10, 11 10, 11 11, 10 10))",
        None,
    ],
    "multipoint": ["MULTIPOINT ((0 0), (1 1))", "MULTIPOINT ((7 7))"],
    "multilinestring": ["MULTILINESTRING ((0 0, 1 1), (2 2, 3 3, 4 2))", None],
    "multipolygon": [
        "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5), (5.2 5.1, 5.8 5.1, "
        "5.8 5.7, 5.2 5.1)))",
        None,
        "MULTIPOLYGON (((20 20, 21 20, 21 21, 20 20)))",
    ],
}


@pytest.mark.parametrize("kind", sorted(MIXED_SHAPES))
def test_geoparquet_in_native_geoarrow_encodings_reads_as_its_wkb_twin(
    tmp_path: Path, kind: str
) -> None:
    """GeoParquet 1.1's native encodings (GeoArrow coordinates) give the same rows as WKB.

    The files are written by GeoPandas; every row group and batch boundary is crossed.
    """
    wkt = MIXED_SHAPES[kind] * 3
    frame = gpd.GeoDataFrame(
        {"n": np.arange(len(wkt))}, geometry=gpd.GeoSeries.from_wkt(wkt), crs="EPSG:4326"
    )
    native, wkb = tmp_path / f"{kind}.parquet", tmp_path / f"{kind}-wkb.parquet"
    frame.to_parquet(native, geometry_encoding="geoarrow", row_group_size=4)
    frame.to_parquet(wkb, geometry_encoding="WKB")
    encoding = json.loads(pq.read_metadata(native).metadata[b"geo"])["columns"]["geometry"]
    assert encoding["encoding"] == kind  # the file really is natively encoded
    got = list(read_batches(native, kind, skip=1, batch_size=3))
    want = read_chunk(wkb, kind, skip=1)
    geoms = np.concatenate([b.geometries for b in got])
    assert len(geoms) == len(wkt) - 1
    missing = [w is None for w in wkt[1:]]
    assert shapely.is_missing(geoms).tolist() == missing
    assert shapely.equals_exact(geoms, want.geometries, tolerance=0)[~np.array(missing)].all()
    assert np.concatenate([b.attributes.column("n").to_numpy() for b in got]).tolist() == list(
        range(1, len(wkt))
    )


@pytest.mark.parametrize("interleaved", [True, False], ids=["interleaved", "separated"])
@pytest.mark.parametrize("kind", sorted(MIXED_SHAPES))
def test_a_sliced_geoarrow_column_decodes_only_its_rows(kind: str, interleaved: bool) -> None:
    wkt = MIXED_SHAPES[kind] * 2
    series = gpd.GeoSeries.from_wkt(wkt)
    frame = gpd.GeoDataFrame(geometry=series)
    table = pa.table(frame.to_arrow(geometry_encoding="geoarrow", interleaved=interleaved))
    column = table.column("geometry").combine_chunks().slice(1, len(wkt) - 2)
    assert column.offset == 1  # a slice of the column, not a copy
    geoms = geoarrow.decode(column, kind, "test")
    want = series.to_numpy()[1:-1]
    assert len(geoms) == len(want)
    assert (shapely.is_missing(geoms) == shapely.is_missing(want)).all()
    present = ~shapely.is_missing(want)
    assert shapely.equals_exact(geoms[present], want[present], tolerance=0).all()


POINT_TYPE = pa.struct([("x", pa.float64()), ("y", pa.float64())])


@pytest.mark.parametrize(
    ("column", "encoding", "reason"),
    [
        (pa.array([b"\x01\x03"]), "WKB", "Unexpected EOF parsing WKB"),
        (pa.array(["POINT (1 2)"]), "WKB", "not binary"),
        (
            pa.array(
                [[[{"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 0.0}]]], pa.list_(pa.list_(POINT_TYPE))
            ),
            "polygon",
            "at least 4 coordinates",
        ),
        (pa.array([1, 2]), "point", "not a struct or a fixed-size list"),
        (pa.array([[{"x": 1.0, "y": 2.0}]], pa.list_(POINT_TYPE)), "polygon", "expected a list"),
    ],
)
def test_a_geometry_column_that_cannot_be_decoded_is_an_input_error(
    column: pa.Array, encoding: str, reason: str
) -> None:
    with pytest.raises(InputError, match=reason) as caught:
        geoarrow.decode(column, encoding, "hostile.parquet")
    assert str(caught.value).startswith("hostile.parquet: ")


def test_geoparquet_with_an_unknown_geometry_encoding_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.parquet"
    _squares(3, "EPSG:4326").to_parquet(path)
    table = pq.read_table(path)
    geo = json.loads(table.schema.metadata[b"geo"])
    geo["columns"]["geometry"]["encoding"] = "geojson"
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), path)
    with pytest.raises(InputError, match="geometry encoding 'geojson' is not one GeoParquet"):
        list_layers(path)


def _part(frame: gpd.GeoDataFrame, geometry_type: str) -> pa.Table:
    attributes = pa.Table.from_pandas(frame.drop(columns="geometry"), preserve_index=False)
    return part_table(attributes, frame.geometry.to_numpy(), CRS("EPSG:4326"), geometry_type)


def test_parts_written_in_batches_merge_into_one_geoparquet(tmp_path: Path) -> None:
    frame = _squares(1_000, "EPSG:4326")
    frame.geometry = shapely.multipolygons(frame.geometry.to_numpy().reshape(-1, 1).tolist())
    parts = []
    for p in range(2):
        writer = PartWriter(tmp_path / f"part{p}.parquet")
        for b in range(5):
            rows = frame.iloc[p * 500 + b * 100 : p * 500 + (b + 1) * 100]
            kind = "MultiPolygon Z" if (p, b) == (1, 4) else "MultiPolygon"
            writer.write(_part(rows, kind))
        assert writer.close() == ("MultiPolygon Z" if p == 1 else "MultiPolygon")
        assert writer.rows == 500
        assert pq.ParquetFile(writer.path).num_row_groups == 5
        parts.append(writer.path)
    out = tmp_path / "merged.parquet"
    merged = MergedParts(parts, out)
    streamed = pa.Table.from_batches(list(merged.batches(["n", GEOMETRY])))
    rows, bbox = merged.finish()
    assert rows == streamed.num_rows == 1_000
    assert streamed.column("n").to_pylist() == list(range(1_000))
    assert bbox == pytest.approx(list(frame.total_bounds))
    geo: dict[str, Any] = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert geo["columns"][GEOMETRY]["geometry_types"] == ["MultiPolygon", "MultiPolygon Z"]
    back = gpd.read_parquet(out)
    assert back["n"].tolist() == list(range(1_000))
    assert shapely.equals(back.geometry.to_numpy(), frame.geometry.to_numpy()).all()


def test_a_merge_nobody_reads_is_still_written_whole(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path / "p.parquet")
    writer.write(_part(_squares(10, "EPSG:4326"), "Polygon"))
    writer.close()
    rows, _bbox = MergedParts([writer.path], tmp_path / "m.parquet").finish()
    assert rows == 10
    assert pq.read_metadata(tmp_path / "m.parquet").num_rows == 10


def test_batch_size_follows_the_source_bytes() -> None:
    mb = 1024 * 1024
    # The benchmark's 200,000 polygons: a batch is about BATCH_SOURCE_BYTES of the file.
    per_feature = 61_829_120 / 200_000
    batch = process_vector.batch_features(61_829_120, 200_000, 100_000)
    assert abs(batch * per_feature - process_vector.BATCH_SOURCE_BYTES) < per_feature
    assert process_vector.batch_features(10 * mb, 1_000_000, 100_000) == 65_536  # small points
    assert process_vector.batch_features(4_000 * mb, 1_000, 100_000) == 1_000  # huge features
    assert process_vector.batch_features(1 * mb, 10, 5) == 5  # never more than a chunk


def test_a_load_in_many_batches_publishes_what_one_batch_does(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "squares.gpkg"
    pyogrio.write_dataframe(_squares(45), source, layer="squares")
    key = platform.objects.put_content_addressed(source)[0]
    results = {}
    for label, source_bytes, smallest in (("one", 64 * 1024 * 1024, 1_000), ("many", 1, 1)):
        monkeypatch.setattr(process_vector, "BATCH_SOURCE_BYTES", source_bytes)
        monkeypatch.setattr(process_vector, "MIN_BATCH", smallest)
        params = {"source": key, "chunk_size": 20, "dataset_id": f"squares_{label}"}
        job_id, _ = platform.store.submit("process_vector", params)
        runner = make_runner(platform, "streaming-test")
        try:
            status = runner.run_job(job_id)
        finally:
            runner.close()
        view = platform.queries.job(job_id)
        assert status == JobStatus.succeeded, view.error
        [table] = view.result["tables"]
        fc = platform.feature_registry.get(table["collection_id"])
        frame = to_frame(platform.features.read(fc.dataset_id, fc.table_name))
        parquet = gpd.read_parquet(
            platform.objects.gdal_path(view.result["urls"]["geoparquet"][table["collection_id"]])
        )
        results[label] = (table["features"], frame, parquet, view.result["report"])
    one, many = results["one"], results["many"]
    assert one[0] == many[0] == 45
    assert sorted(one[1]["n"]) == sorted(many[1]["n"]) == list(range(45))
    assert many[2]["n"].tolist() == one[2]["n"].tolist() == list(range(45))
    assert shapely.equals(many[2].geometry.to_numpy(), one[2].geometry.to_numpy()).all()
    assert many[3] == one[3]
