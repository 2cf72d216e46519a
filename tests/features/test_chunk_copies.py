"""Load chunks staging their own rows in PostGIS (``copy_rows``), side by side.

Each chunk of a load copies its rows into the staged table under its own range of
feature ids; a retried chunk replaces what it copied, a chunk killed mid-COPY leaves
nothing, and ``begin_load`` can keep the staged table for ``finish_load``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import shapely
from pyproj import CRS

from geoetl.features.geopackage import GeoPackageStore
from geoetl.features.postgis import PostgisStore
from tests.features.killing import kill_mid_copy
from tests.features.test_postgis_store import STAGED_TABLES, catalog, everything, frame
from tests.frames import to_arrow

WGS84_WKT = CRS.from_epsg(4326).to_wkt()
SIZE = 1_000  # rows per chunk


# The feature-id ranges the load's chunks recorded as copied.
COPIED = 'SELECT first_fid FROM geo_staging."geoetl.chunks" ORDER BY 1'


def rows(start: int, n: int) -> pa.Table:
    """Rows ``start..start+n-1`` as load parts hold them: attributes and WKB points."""
    wkb = shapely.to_wkb(shapely.points([(i / 100, i / 200) for i in range(start, start + n)]))
    return pa.table(
        {
            "name": [f"p{i}" for i in range(start, start + n)],
            "value": pa.array(range(start, start + n), pa.int64()),
            "geometry": pa.array(wkb, pa.binary()),
        }
    )


def copy(store: Any, chunk: int, table: pa.Table | None = None, **kw: Any) -> int | None:
    """Chunk ``chunk`` of a load of ``SIZE``-row chunks, as a load task copies it."""
    data = rows(chunk * SIZE, SIZE) if table is None else table
    copied: int | None = store.copy_rows(
        "ds",
        kw.pop("name", "points"),
        range(chunk * SIZE + 1, (chunk + 1) * SIZE + 1),
        data.to_reader(max_chunksize=300),
        geometry_column="geometry",
        geometry_type=kw.pop("geometry_type", "Point"),
        crs=WGS84_WKT,
    )
    return copied


def ids_and_values(store: PostgisStore) -> list[tuple[int, int]]:
    features, _ = everything(store, "ds", "points", limit=100_000)
    return [(int(f["id"]), int(f["properties"]["value"])) for f in features]


def test_chunks_copied_side_by_side_and_retried_publish_every_row_once(
    store: PostgisStore, pg_url: str
) -> None:
    store.begin_load("ds")
    with ThreadPoolExecutor(4) as pool:
        copied = list(pool.map(lambda c: copy(store, c), [3, 0, 2, 1]))
    assert copied == [SIZE] * 4
    assert copy(store, 2) == SIZE  # a retried chunk
    assert store.staged_rows("ds", "points") == 4 * SIZE
    # Each chunk's range is recorded once, however often it was copied.
    assert catalog(pg_url, COPIED) == [(i * SIZE + 1,) for i in range(4)]
    store.begin_load("ds", keep={"points"})  # what a retried finalize does
    assert store.staged_rows("ds", "points") == 4 * SIZE
    store.finish_load("ds", {"points": []})
    assert catalog(pg_url, COPIED) == []  # forgotten once published
    assert ids_and_values(store) == [(i + 1, i) for i in range(4 * SIZE)]
    # The feature ids go on after the loaded ones, for tools that add features.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO geo.points (name, value) VALUES ('added', -1)")
    assert catalog(pg_url, "SELECT max(fid) FROM geo.points") == [(4 * SIZE + 1,)]
    assert catalog(
        pg_url,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'geo.points'::regclass "
        "AND contype = 'p'",
    ) == [(1,)]


def test_a_chunk_of_other_columns_copies_nothing(store: PostgisStore) -> None:
    store.begin_load("ds")
    assert copy(store, 0) == SIZE
    other = rows(SIZE, SIZE).set_column(1, "value", pa.array(["x"] * SIZE))
    assert copy(store, 1, other) is None
    assert copy(store, 1, geometry_type="MultiPoint") is None
    assert store.staged_rows("ds", "points") == SIZE  # chunk 0 left as it was
    assert store.staged_rows("ds", "nothing") is None
    store.begin_load("ds")  # a fresh load drops what is not kept
    assert store.staged_rows("ds", "points") is None


def test_too_many_rows_for_the_range_are_refused(store: PostgisStore) -> None:
    store.begin_load("ds")
    with pytest.raises(ValueError, match="do not fit"):
        copy(store, 0, rows(0, SIZE + 1))
    assert store.staged_rows("ds", "points") == 0


def test_the_geopackage_store_copies_no_chunks(gpkg: GeoPackageStore) -> None:
    gpkg.begin_load("ds")
    assert copy(gpkg, 0) is None
    assert gpkg.staged_rows("ds", "points") is None
    with pytest.raises(ValueError, match="whole tables"):
        gpkg.begin_load("ds", keep={"points"})


def test_a_chunk_killed_mid_copy_and_retried_leaves_every_row_once(
    store: PostgisStore, pg_url: str
) -> None:
    store.begin_load("ds")
    assert copy(store, 0) == SIZE
    assert copy(store, 1) == SIZE  # an attempt whose completion was never recorded
    # Killed when the header and one batch of the chunk are in the COPY stream.
    body = "from tests.features.test_chunk_copies import copy\ncopy(store, 1)\n"
    kill_mid_copy(pg_url, 3, body)
    assert store.staged_rows("ds", "points") == 2 * SIZE  # the killed COPY left nothing
    assert copy(store, 1) == SIZE  # the retry
    store.finish_load("ds", {"points": []})
    assert ids_and_values(store) == [(i + 1, i) for i in range(2 * SIZE)]


def test_drop_removes_what_an_unfinished_load_staged(store: PostgisStore, pg_url: str) -> None:
    # A job that failed after its chunks staged rows leaves a staged table; dropping
    # the dataset (the janitor's sweep of abandoned versions, a discarded draft) must
    # take it too, as well as the published tables.
    store.begin_load("ds")
    copy(store, 0)
    store.finish_load("ds", {"points": []})
    store.begin_load("ds")  # a new load that never finishes
    copy(store, 1, name="lines")
    staged = STAGED_TABLES
    assert catalog(pg_url, staged) == [("lines",)]
    assert store.drop("ds")
    assert catalog(pg_url, staged) == []
    assert catalog(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'geo'") == []
    # Only staged rows, never published: still something to drop, once.
    store.begin_load("ds")
    copy(store, 0)
    assert store.drop("ds")
    assert not store.drop("ds")
    assert catalog(pg_url, staged) == []
    assert catalog(pg_url, COPIED) == []  # nothing left of the dropped loads


def test_the_geopackage_store_drops_an_unfinished_load_too(gpkg: GeoPackageStore) -> None:
    gpkg.begin_load("ds")
    gpkg.write_chunk("ds", "points", 0, to_arrow(frame(0, 10)))
    assert list(gpkg.root.iterdir())  # the load's staging file
    assert gpkg.drop("ds")
    assert list(gpkg.root.iterdir()) == []
    assert not gpkg.drop("ds")
