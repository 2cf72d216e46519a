"""Feature store on PostGIS: one table per feature table, loaded by binary COPY.

Loads go to ``{schema}_staging``, a schema other tools (TiPG, QGIS) do not list, so
nobody sees a half-loaded table. ``finish_load`` indexes and analyzes the staged
tables, then publishes them in one transaction: the dataset's old tables are dropped
and the new ones moved into ``schema`` (``ALTER TABLE … SET SCHEMA``), so readers see
the old dataset or the new one. A table belongs to the dataset its comment names
(``geoetl dataset <id>``): no bookkeeping table sits beside the features.

Each table has ``fid bigint`` as its primary key (1..n in load order, the ids the
GeoPackage store gives), the attribute columns, and a geometry column typed with the
geometry type and SRID (``geometry(MultiPolygon, 4326)``) with a GiST index, which
GDAL, QGIS and TiPG read as they are. Rows travel as binary COPY: WKB goes straight
into the geometry column (PostGIS' binary input reads WKB), never row by row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import numpy as np
import pgpq
import psycopg
import pyarrow as pa
import shapely
import shapely.geometry
from psycopg import sql

from geoetl.errors import InputError, NotFound, TransientError
from geoetl.features.store import GEOMETRY_PROPERTY, FeatureQuery, TimeFilter
from geoetl.vector.geoarrow import require_geometry, wkb_field
from geoetl.vector.harden import common_type, promote_to_multi

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

WGS84 = 4326
TEXT_TYPES = frozenset({"text", "varchar", "bpchar"})
NUMBER_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric"})


@dataclass(frozen=True)
class Layout:
    """What a filter needs to know of a table: column types, geometry column, SRID."""

    columns: dict[str, str]  # attribute name -> PostgreSQL type name (pg_type.typname)
    geometry: str
    srid: int

    def geometry_in(self, literal: sql.Composable) -> sql.Composable:
        """``literal`` (an EPSG:4326 geometry expression) in the table's CRS."""
        if self.srid in (WGS84, 0):
            return literal
        return sql.SQL("ST_Transform({}, {})").format(literal, sql.Literal(self.srid))


def coerce(value: Any, typname: str) -> Any:
    """``value`` as a parameter comparable with a column of type ``typname``.

    A text column compares with a number as text (SQLite's affinity does the same);
    dates and times are instants in UTC, as the GeoPackage store reads them.
    """
    if typname in TEXT_TYPES:
        if isinstance(value, bool):
            return str(int(value))
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        return value if isinstance(value, str) else str(value)
    if typname in NUMBER_TYPES and isinstance(value, bool):
        return int(value)
    if typname == "bool" and isinstance(value, int) and not isinstance(value, bool):
        return bool(value)
    if typname == "timestamptz":
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if typname in ("timestamp", "date") and isinstance(value, datetime) and value.tzinfo:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


FID = "fid"
CHUNK_COLUMN = "_chunk"
# A table's comment: this first line names its dataset (readers find tables by it); a
# published table's second line is its row count, so unfiltered pages need no count(*).
COMMENT = "geoetl dataset {}"
COUNT_LINE = "{} features"
# In the staging schema: the ranges of feature ids that load chunks copied, one row per
# committed chunk COPY (see PostgisStore.copy_rows). The dot keeps it apart from every
# dataset's table name.
CHUNKS_TABLE = "geoetl.chunks"
MAX_IDENTIFIER = 63  # bytes; PostgreSQL silently truncates longer names
# Rows encoded for COPY at a time: a bound on the loader's memory.
SLICE_ROWS = 8_192
# OGR geometry type names (as the pipeline declares them) -> PostGIS typmod names.
GEOMETRY_TYPES = {
    name.lower(): name
    for name in (
        "Point",
        "LineString",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    )
} | {"unknown": "Geometry", "geometry": "Geometry"}
# shapely type ids of single geometries and the multi type each is promoted to.
_MULTI = {0: "MultiPoint", 1: "MultiLineString", 3: "MultiPolygon"}


@dataclass(frozen=True)
class Kind:
    """One PostgreSQL column type: how it is declared, copied, converted and described."""

    declare: str  # SQL type of the column
    arrow: pa.DataType | None  # Arrow type values are cast to before COPY; None: JSON text
    dtype: str  # the NumPy dtype name pyogrio reports for this GeoPackage field type


KINDS = {
    "int8": Kind("bigint", pa.int64(), "int64"),
    "int4": Kind("integer", pa.int32(), "int32"),
    "int2": Kind("smallint", pa.int16(), "int16"),
    "float8": Kind("double precision", pa.float64(), "float64"),
    "float4": Kind("real", pa.float32(), "float32"),
    "bool": Kind("boolean", pa.bool_(), "bool"),
    # Byte order, as SQLite (the GeoPackage store) compares and sorts text.
    "text": Kind('text COLLATE "C"', pa.string(), "object"),
    "json": Kind('text COLLATE "C"', None, "object"),
    "date": Kind("date", pa.date32(), "datetime64[D]"),
    "timestamp": Kind("timestamp", pa.timestamp("us"), "datetime64[ms]"),
    "timestamptz": Kind("timestamptz", pa.timestamp("us", tz="UTC"), "datetime64[ms]"),
    "time": Kind("time", pa.time64("us"), "object"),
    "bytea": Kind("bytea", pa.binary(), "object"),
}
DTYPES = {name: kind.dtype for name, kind in KINDS.items()} | {
    "varchar": "object",
    "bpchar": "object",
    "numeric": "float64",
    "jsonb": "object",
    "json": "object",
}


def kind_of(arrow_type: pa.DataType) -> str:
    """The :data:`KINDS` key for an Arrow type, as GDAL would type it in a GeoPackage."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return kind_of(t.value_type)
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_int8(t) or pa.types.is_uint8(t) or pa.types.is_int16(t):
        return "int2"
    if pa.types.is_uint16(t) or pa.types.is_int32(t):
        return "int4"
    if pa.types.is_uint32(t) or pa.types.is_int64(t):
        return "int8"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float4"
    if pa.types.is_floating(t) or pa.types.is_uint64(t) or pa.types.is_decimal(t):
        return "float8"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "text"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    return "json"


def column_array(array: pa.Array | pa.ChunkedArray, kind: str) -> pa.Array:
    """An Arrow column as the Arrow type a column of ``kind`` is copied from.

    Values without a matching type (lists, structs: GDAL's JSON fields) become their
    JSON text, as GDAL writes them into a GeoPackage.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    target = KINDS[kind].arrow
    if target is None:
        texts = [None if v is None else _json_text(v) for v in array.to_pylist()]
        return pa.array(texts, pa.string())
    if kind == "timestamptz" and array.type.tz is None:
        array = array.cast(pa.timestamp("us")).cast(target)  # zone-less times are UTC
    elif not array.type.equals(target):
        array = array.cast(target, safe=False)
    return array


def _json_text(value: Any) -> str:
    # GDAL writes list fields into a GeoPackage as JSON with this spacing.
    if isinstance(value, list):
        inner = ", ".join(
            _json_text(v) if isinstance(v, list | dict) else json.dumps(v) for v in value
        )
        return f"[ {inner} ]" if inner else "[]"
    return json.dumps(value, default=str)


def srid_of(crs: str) -> int:
    """The EPSG code of ``crs`` (WKT or ``EPSG:n``); InputError when it has none."""
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    code = parsed.to_epsg()
    if code is None:
        raise InputError(
            f"the PostGIS feature store keeps geometries in CRSs with an EPSG code; "
            f"{parsed.name!r} has none: choose a target_crs such as EPSG:4326"
        )
    return int(code)


def wkb_dimensions(wkb: pa.Array) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Per WKB value (ISO or EWKB): whether it has Z, and whether it has M (False for nulls)."""
    n = len(wkb)
    has_z = np.zeros(n, dtype=bool)
    has_m = np.zeros(n, dtype=bool)
    if n == 0:
        return has_z, has_m
    valid = wkb.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_large_binary(wkb.type):
        wkb = wkb.cast(pa.binary())
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset : wkb.offset + n + 1]
    lengths = np.diff(offsets)
    valid &= lengths >= 5
    if not valid.any():
        return has_z, has_m
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8)
    head = data[offsets[:-1][valid, None] + np.arange(5)].astype(np.uint32)
    little = head[:, 0] == 1
    code = np.where(
        little,
        head[:, 1] | head[:, 2] << 8 | head[:, 3] << 16 | head[:, 4] << 24,
        head[:, 4] | head[:, 3] << 8 | head[:, 2] << 16 | head[:, 1] << 24,
    )
    iso = (code & 0xFFFF) // 1000
    has_z[valid] = ((code & 0x80000000) != 0) | (iso == 1) | (iso == 3)
    has_m[valid] = ((code & 0x40000000) != 0) | (iso == 2) | (iso == 3)
    return has_z, has_m


def fit_dimensions(wkb: pa.Array, with_z: bool) -> pa.Array:
    """WKB values with exactly the column's dimensions: XY, or XYZ (M dropped, Z 0 added)."""
    if not pa.types.is_binary(wkb.type):
        wkb = wkb.cast(pa.binary())
    has_z, has_m = wkb_dimensions(wkb)
    wrong = np.flatnonzero((has_z != with_z) | has_m)
    if not len(wrong):  # the usual case: the values go as they are
        return wkb
    values = wkb.to_numpy(zero_copy_only=False)
    geoms = shapely.from_wkb(values[wrong])
    geoms = shapely.force_3d(geoms) if with_z else shapely.force_2d(geoms)
    values[wrong] = shapely.to_wkb(geoms, output_dimension=3 if with_z else 2, flavor="iso")
    return pa.array(values, pa.binary())


class CopyStream:
    """Arrow record batches as PostgreSQL's binary COPY format, a batch at a time.

    pgpq encodes a whole batch column by column (about 0.2 µs a row); psycopg's
    ``write_row`` would first turn every value into a Python object. The batches'
    columns must be in the COPY's column order, typed as :func:`column_array` types
    them: PostgreSQL reads each value with its column's binary input function (WKB
    for a geometry column).
    """

    def __init__(self, copy: psycopg.Copy) -> None:
        self.copy = copy
        self._encoder: pgpq.ArrowToPostgresBinaryEncoder | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        """Send one batch (the COPY header before the first)."""
        if self._encoder is None:
            self._encoder = pgpq.ArrowToPostgresBinaryEncoder(batch.schema)
            self.copy.write(self._encoder.write_header())
        self.copy.write(self._encoder.write_batch(batch))

    def finish(self) -> None:
        """Send the COPY trailer (nothing when no batch was sent)."""
        if self._encoder is not None:
            self.copy.write(self._encoder.finish())


def _name(*parts: str) -> str:
    """A relation name from ``parts`` that fits PostgreSQL's limit and never collides."""
    digest = hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:8]
    return f"{'_'.join(parts)[:50]}_{digest}"


@dataclass(frozen=True)
class Table:
    """A table as the catalog describes it: attribute types, geometry column, SRID, Z."""

    columns: dict[str, str]  # attribute -> pg_type.typname (fid and _chunk excluded)
    geometry: str
    geometry_type: str  # PostGIS typmod name: MultiPolygon, Geometry, …
    srid: int
    has_z: bool
    chunked: bool
    rows: int | None = None  # the row count stored at publication

    def layout(self) -> Layout:
        """What a CQL2 filter needs of this table."""
        return Layout(self.columns, self.geometry, self.srid)


class PostgisStore:
    """Datasets as tables in a PostGIS schema, staged in ``{schema}_staging``."""

    def __init__(self, engine: Engine, schema: str = "geo") -> None:
        self.engine = engine
        self.schema = schema
        self.staging = f"{schema}_staging"
        self._schemas_ready = False

    # -- loading -----------------------------------------------------------------

    def begin_load(self, dataset_id: str, keep: Collection[str] = ()) -> None:
        """Start a load; the dataset's staged tables from an earlier load are dropped.

        ``keep`` names staged tables to leave as they are (rows the load's chunks
        copied, :meth:`copy_rows`).
        """
        with self._connect() as conn:
            self._lock(conn, dataset_id)
            for table in self._owned(conn, self.staging, dataset_id):
                if table not in keep:
                    conn.execute(sql.SQL("DROP TABLE {}").format(self._staged(table)))
            self._forget_chunks(conn)

    def write_table(
        self,
        dataset_id: str,
        table: str,
        batches: pa.RecordBatchReader,
        *,
        geometry_column: str,
        geometry_type: str,
        crs: str,
    ) -> None:
        """Stage a whole table from a stream of Arrow batches (WKB geometry), by binary COPY.

        Batches are copied as they come, so memory stays that of one batch. A table
        staged before under the same name is replaced. Features are numbered 1..n.
        """
        layout = _layout_of(batches.schema, table, geometry_column, geometry_type, crs)
        with self._connect() as conn:
            self._lock(conn, dataset_id)
            self._create(conn, dataset_id, table, layout)
            # FREEZE: the table is new in this transaction, so its rows are written
            # frozen and all-visible (no hint-bit rewrite, index-only counts).
            self._copy(conn, table, layout, batches, first_fid=1, freeze=True)

    def copy_rows(
        self,
        dataset_id: str,
        table: str,
        fids: range,
        batches: pa.RecordBatchReader,
        *,
        geometry_column: str,
        geometry_type: str,
        crs: str,
    ) -> int | None:
        """Stage one chunk's rows of ``table``, numbered from ``fids.start``; their count.

        Chunks of one table are copied side by side, each into its own range of
        feature ids, ``fids``: the rows an earlier attempt of the chunk copied in that
        range are deleted in the same transaction, under a lock per range, so a
        retried chunk neither duplicates nor loses rows. None (nothing copied) when the
        staged table has other columns or types than these batches.

        The staged table has no index while chunks copy (keeping a B-tree up to date
        row by row costs more than the COPY's other work on the table): each committed
        COPY records its range in :data:`CHUNKS_TABLE`, in the same transaction, and
        only a range recorded there is searched for rows to delete (a scan of the
        table, paid by retries alone). finish_load builds the primary key's index.
        """
        layout = _layout_of(batches.schema, table, geometry_column, geometry_type, crs)
        with self._connect() as conn:
            self._lock(conn, dataset_id)
            staged = self._staged_layout(conn, dataset_id, table)
            if staged is None:
                self._create(conn, dataset_id, table, layout)
            elif not _same_layout(staged, layout):
                return None
        chunks = sql.Identifier(self.staging, CHUNKS_TABLE)
        with self._connect() as conn:  # the table is committed: chunks copy at once
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))",
                [f"geoetl.features:{self.staging}:{table}", fids.start],
            )
            relation = self._staged(table).as_string(conn)
            copied_before = conn.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE relation = %s::regclass AND first_fid = %s RETURNING 1"
                ).format(chunks),
                [relation, fids.start],
            ).fetchone()
            if copied_before:  # only rows of this range: another chunk's are never touched
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(
                        self._staged(table), sql.Identifier(FID), sql.Identifier(FID)
                    ),
                    [fids.start, fids.stop],
                )
            rows = self._copy(conn, table, layout, batches, first_fid=fids.start, freeze=False)
            if rows > len(fids):  # the transaction is rolled back
                raise ValueError(f"{rows} rows do not fit feature ids {fids.start}-{fids.stop - 1}")
            conn.execute(
                sql.SQL("INSERT INTO {} (relation, first_fid) VALUES (%s::regclass, %s)").format(
                    chunks
                ),
                [relation, fids.start],
            )
            return rows

    def staged_rows(self, dataset_id: str, table: str) -> int | None:
        """Rows in the staged ``table`` of ``dataset_id``; None when it is not staged."""
        with self._connect() as conn:
            if table not in self._owned(conn, self.staging, dataset_id):
                return None
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(self._staged(table))
            ).fetchone()
        return int(row[0]) if row else 0

    def _copy(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        layout: Table,
        batches: pa.RecordBatchReader,
        *,
        first_fid: int,
        freeze: bool,
    ) -> int:
        """Binary COPY of ``batches`` into the staged ``table``, numbered from ``first_fid``."""
        columns = [FID, *layout.columns, layout.geometry]
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY{})").format(
            self._staged(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", FREEZE" if freeze else ""),
        )
        fid = first_fid
        with _copy_errors(table), conn.cursor() as cur, cur.copy(copy_sql) as copy:
            stream = CopyStream(copy)
            for batch in _slices(batches):
                n = batch.num_rows
                fids = pa.array(np.arange(fid, fid + n, dtype=np.int64))
                values = [column_array(batch.column(c), k) for c, k in layout.columns.items()]
                geoms = fit_dimensions(batch.column(layout.geometry), layout.has_z)
                stream.write(pa.record_batch([fids, *values, geoms], names=columns))
                fid += n
            stream.finish()
        return fid - first_fid

    def write_chunk(self, dataset_id: str, table: str, chunk_id: int, data: pa.Table) -> int:
        """Replace the rows of ``chunk_id`` in the staged ``table``; returns rows written.

        ``data`` is attributes and one ``geoarrow.wkb`` column with its CRS
        (:func:`geoetl.vector.geoarrow.wkb_field`), as :meth:`read` returns them. The
        delete and the COPY are one transaction: a writer killed mid-COPY leaves the
        chunk as it was, and its retry neither duplicates nor loses rows.
        """
        geometry_name, crs = require_geometry(data, table)
        attrs = data.drop_columns([geometry_name])
        geoms = promote_to_multi(
            shapely.from_wkb(data.column(geometry_name).to_numpy(zero_copy_only=False))
        )
        with_z = bool(shapely.has_z(geoms).any())
        chunk_layout = Table(
            {name: kind_of(attrs.schema.field(name).type) for name in attrs.column_names},
            geometry_name,
            common_type(geoms),
            srid_of(crs),
            with_z,
            chunked=True,
        )
        empty = data.num_rows == 0
        with self._connect() as conn:
            self._lock(conn, dataset_id)
            layout = self._staged_layout(conn, dataset_id, table)
            if layout is None:
                if empty:
                    return 0
                self._create(conn, dataset_id, table, chunk_layout)
                conn.execute(
                    sql.SQL("CREATE INDEX {} ON {} ({})").format(
                        sql.Identifier(_name(table, CHUNK_COLUMN)),
                        self._staged(table),
                        sql.Identifier(CHUNK_COLUMN),
                    )
                )
                layout = chunk_layout
            else:
                self._widen(conn, table, layout, chunk_layout)
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                    self._staged(table), sql.Identifier(CHUNK_COLUMN)
                ),
                [chunk_id],
            )
            if empty:
                return 0
            names = [c for c in attrs.column_names if c in layout.columns]
            columns = [*names, layout.geometry, CHUNK_COLUMN]
            wkb = pa.array(shapely.to_wkb(geoms, flavor="iso"), pa.binary())
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                self._staged(table), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            with _copy_errors(table), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                stream = CopyStream(copy)
                for start in range(0, data.num_rows, SLICE_ROWS):
                    part = attrs.slice(start, SLICE_ROWS)
                    values = [
                        column_array(part.column(c), _kind_key(layout.columns[c])) for c in names
                    ]
                    geometry = fit_dimensions(wkb.slice(start, SLICE_ROWS), layout.has_z)
                    chunk = pa.array(np.full(part.num_rows, chunk_id, dtype=np.int32))
                    stream.write(pa.record_batch([*values, geometry, chunk], names=columns))
                stream.finish()
        return int(data.num_rows)

    def finish_load(
        self,
        dataset_id: str,
        index_columns: dict[str, list[str]],
        descriptions: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Index the requested columns, ANALYZE, comment, and publish every staged table."""
        with self._connect() as conn:
            staged = {
                t: self._layout(conn, self.staging, t)
                for t in self._owned(conn, self.staging, dataset_id)
            }
        if not staged:
            raise InputError(f"dataset {dataset_id} has no features to publish")
        for table, columns in index_columns.items():
            layout = staged.get(table)
            valid = sorted(layout.columns) if layout else []
            for column in columns:
                if layout is None or (column not in layout.columns and column != layout.geometry):
                    raise InputError(
                        f"cannot index {column[:60]!r}: {table} has no such column; "
                        f"valid columns: {', '.join(valid)}"
                    )
        for table, layout in sorted(staged.items()):
            wanted = [c for c in index_columns.get(table, []) if c in layout.columns]
            self._index(dataset_id, table, layout, wanted, (descriptions or {}).get(table, {}))
        with self._connect() as conn:
            self._lock(conn, dataset_id)
            self._publish(conn, dataset_id, sorted(staged))
            self._forget_chunks(conn)

    def _index(
        self,
        dataset_id: str,
        table: str,
        layout: Table,
        columns: list[str],
        descriptions: dict[str, str],
    ) -> None:
        """ANALYZE, key, index and comment a staged table (again after a failed try).

        ANALYZE comes first: it conflicts with index builds, and while it runs alone in
        the database the caller writes the GeoParquet file (finalize_load), which would
        otherwise compete with the index builds for the cores. The primary key's index
        is then built (and the rows counted) on a second connection while this one
        builds the spatial index: both take a SHARE lock, which do not conflict, and
        PostgreSQL builds each on one core.
        """
        target = self._staged(table)
        with self._connect() as conn:  # committed first: the builds below wait for it
            if layout.chunked:  # the chunk ids served retries; readers have no use for them
                conn.execute(
                    sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(
                        target, sql.Identifier(CHUNK_COLUMN)
                    )
                )
            conn.execute(sql.SQL("ANALYZE {}").format(target))
        key = sql.Identifier(_name(table, "pkey"))
        with ThreadPoolExecutor(1, thread_name_prefix="geoetl-pkey") as pool:
            counted = pool.submit(self._key_index, target, key)
            with self._connect() as conn:
                conn.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gist ({})").format(
                        sql.Identifier(_name(table, "geom")),
                        target,
                        sql.Identifier(layout.geometry),
                    )
                )
                for column in columns:
                    conn.execute(
                        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                            sql.Identifier(_name(table, column)), target, sql.Identifier(column)
                        )
                    )
            rows, highest = counted.result()
        with self._connect() as conn:
            conn.execute(
                sql.SQL(
                    "DO $$ BEGIN ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}; "
                    "EXCEPTION WHEN invalid_table_definition THEN NULL; END $$"
                ).format(target, key, key)
            )
            # Features added later (by GDAL, QGIS) are numbered after the loaded ones.
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} RESTART WITH {}").format(
                    target, sql.Identifier(FID), sql.Literal(highest + 1)
                )
            )
            comment = "\n".join([COMMENT.format(dataset_id), COUNT_LINE.format(rows)])
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(target, sql.Literal(comment)))
            for column, text in descriptions.items():
                if column in layout.columns:
                    conn.execute(
                        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                            target, sql.Identifier(column), sql.Literal(text)
                        )
                    )

    def _key_index(self, target: sql.Composable, key: sql.Identifier) -> tuple[int, int]:
        """Build the unique index on the feature ids that becomes the primary key.

        Returns the rows and the highest feature id.
        """
        with self._connect() as conn:
            conn.execute(
                sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    key, target, sql.Identifier(FID)
                )
            )
            row = conn.execute(
                sql.SQL("SELECT count(*), coalesce(max({}), 0) FROM {}").format(
                    sql.Identifier(FID), target
                )
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _publish(self, conn: psycopg.Connection[Any], dataset_id: str, tables: list[str]) -> None:
        published = set(self._owned(conn, self.schema, dataset_id))
        taken = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s)",
            [self.schema, tables],
        ).fetchall()
        for (name,) in taken:
            if name not in published:
                raise InputError(
                    f"cannot publish {name}: {self.schema}.{name} exists and does not belong "
                    f"to dataset {dataset_id}; choose another dataset id"
                )
        for table in sorted(published):
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(self.schema, table)))
        for table in tables:
            conn.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    self._staged(table), sql.Identifier(self.schema)
                )
            )

    # -- published tables --------------------------------------------------------

    def drop(self, dataset_id: str) -> bool:
        """Delete a dataset: its published tables and what an unfinished load staged.

        False if there was neither. Load chunks stage rows without the dataset's lock;
        a COPY still running into a staged table holds the drop until it commits.
        """
        with self._connect() as conn:
            self._lock(conn, dataset_id)
            dropped = False
            for schema in (self.schema, self.staging):
                for table in self._owned(conn, schema, dataset_id):
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
                    dropped = True
            self._forget_chunks(conn)
        return dropped

    def tables(self, dataset_id: str) -> list[str]:
        """Tables of a published dataset (NotFound if there is none)."""
        with self._connect() as conn:
            tables = self._owned(conn, self.schema, dataset_id)
        if not tables:
            raise NotFound(f"no dataset {dataset_id!r}")
        return sorted(tables)

    def count(self, dataset_id: str, table: str) -> int:
        """Rows in a published table."""
        with self._connect() as conn:
            layout = self._published_layout(conn, dataset_id, table)
            if layout.rows is not None:
                return layout.rows
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.schema, table))
            ).fetchone()
        return int(row[0]) if row else 0

    def fields(self, dataset_id: str, table: str) -> dict[str, str]:
        """Attribute columns of a published table and their NumPy dtype names (as pyogrio's)."""
        with self._connect() as conn:
            layout = self._published_layout(conn, dataset_id, table)
        return {name: DTYPES.get(typname, "object") for name, typname in layout.columns.items()}

    def read(self, dataset_id: str, table: str) -> pa.Table:
        """A whole published table in fid order, as pyogrio reads the GeoPackage one.

        Attributes and a ``geoarrow.wkb`` ``geometry`` column carrying the table's CRS.
        """
        with self._connect() as conn:
            layout = self._published_layout(conn, dataset_id, table)
            names = list(layout.columns)
            query = sql.SQL("SELECT {}, ST_AsBinary({}) FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(map(sql.Identifier, names)) if names else sql.SQL("NULL"),
                sql.Identifier(layout.geometry),
                sql.Identifier(self.schema, table),
                sql.Identifier(FID),
            )
            with conn.cursor(binary=True) as cur:
                cur.execute(query)
                rows = cur.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [()] * (len(names or [""]) + 1)
        arrays = []
        for i, name in enumerate(names):
            kind = KINDS.get(_kind_key(layout.columns[name]))
            target = kind.arrow if kind and kind.arrow is not None else pa.string()
            if target == pa.timestamp("us", tz="UTC") or target == pa.timestamp("us"):
                target = pa.timestamp("ms", tz=target.tz)
            values = list(columns[i])
            if layout.columns[name] == "numeric":
                values = [None if v is None else float(v) for v in values]
                target = pa.float64()
            arrays.append(pa.array(values, type=target))
        wkb = pa.array([None if v is None else bytes(v) for v in columns[-1]], pa.binary())
        fields = [pa.field(name, a.type) for name, a in zip(names, arrays, strict=True)]
        crs = f"EPSG:{layout.srid}" if layout.srid else None
        schema = pa.schema([*fields, wkb_field(GEOMETRY_PROPERTY, crs)])
        return pa.Table.from_arrays([*arrays, wkb], schema=schema)

    def query(
        self, dataset_id: str, table: str, query: FeatureQuery
    ) -> tuple[list[dict[str, Any]], int]:
        """GeoJSON features (CRS84) matching ``query`` and how many match in all.

        bbox is ``ST_Intersects`` (GiST index, then the exact test); CQL2 becomes SQL
        with bound parameters (:class:`~geoetl.features.postgis_cql.PostgisFilter`).
        Values come back as the
        GeoPackage store gives them: dates and times as the ISO 8601 text GDAL writes.
        """
        with self._connect() as conn:
            layout = self._published_layout(conn, dataset_id, table)
            where, params = self._where(layout, query)
            filtered = where != sql.SQL("")
            source = sql.Identifier(self.schema, table)
            properties = [
                c for c in layout.columns if query.properties is None or c in query.properties
            ]
            geometry: sql.Composable = sql.Identifier(layout.geometry)
            if layout.srid not in (WGS84, 0):
                geometry = sql.SQL("ST_Transform({}, {})").format(geometry, sql.Literal(WGS84))
            select = sql.SQL(
                "SELECT {}, ST_AsBinary({}){} FROM {}{} ORDER BY {} LIMIT %s OFFSET %s"
            ).format(
                sql.Identifier(FID),
                geometry,
                sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(c)) for c in properties),
                source,
                where,
                self._order(layout, query),
            )
            with _query_errors():
                rows = conn.execute(select, [*params, query.limit, query.offset]).fetchall()
                total = None if filtered else layout.rows
                if total is None:
                    counted = conn.execute(
                        sql.SQL("SELECT count(*) FROM {}{}").format(source, where), params
                    ).fetchone()
                    total = int(counted[0]) if counted else 0
        types = [layout.columns[c] for c in properties]
        features = []
        for fid, wkb, *values in rows:
            geom = None if wkb is None else shapely.geometry.mapping(shapely.from_wkb(wkb))
            props = {
                name: _as_geopackage(value, typname)
                for name, value, typname in zip(properties, values, types, strict=True)
            }
            features.append({"type": "Feature", "id": fid, "geometry": geom, "properties": props})
        return features, total

    def _where(self, layout: Table, query: FeatureQuery) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        geometry = sql.Identifier(layout.geometry)
        if query.bbox is not None:
            envelope = layout.layout().geometry_in(
                sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, {})").format(sql.Literal(WGS84))
            )
            # ST_Intersects uses the GiST index (&&) and then tests the geometry itself:
            # OGC API Features selects features whose geometry intersects the box.
            clauses.append(sql.SQL("ST_Intersects({}, {})").format(geometry, envelope))
            params += [float(v) for v in query.bbox]
        for name, value in query.equals:
            self._check_property(layout, query, name)
            clauses.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            params.append(coerce(value, layout.columns[name]))
        if query.feature_id is not None:
            clauses.append(sql.SQL("{} = %s").format(sql.Identifier(FID)))
            params.append(query.feature_id)
        if query.filter is not None:
            # The CQL2 walker (and pygeofilter) load with the first filter, not at start.
            from geoetl.features.postgis_cql import PostgisFilter

            condition, more = PostgisFilter(layout.layout(), set(query.fields)).build(query.filter)
            clauses.append(condition)
            params += more
        if query.time is not None:
            condition, more = _time_condition(layout, query, query.time)
            clauses.append(condition)
            params += more
        if not clauses:
            return sql.SQL(""), params
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses), params

    def _check_property(self, layout: Table, query: FeatureQuery, name: str) -> None:
        if name not in query.fields or name not in layout.columns:
            known = ", ".join(sorted(query.fields))
            raise InputError(f"unknown property {name!r}; queryables are: {known}")

    def _order(self, layout: Table, query: FeatureQuery) -> sql.Composable:
        keys: list[sql.Composable] = []
        for name, descending in query.sortby:
            if name not in query.fields or name not in layout.columns:
                known = ", ".join(sorted(query.fields))
                raise InputError(f"cannot sort by {name!r}; sortable: {known}")
            # SQLite's order, which the GeoPackage store has: NULL is the smallest value.
            direction = "DESC NULLS LAST" if descending else "ASC NULLS FIRST"
            keys.append(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(direction)))
        keys.append(sql.Identifier(FID))
        return sql.SQL(", ").join(keys)

    # -- catalog -------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A psycopg connection from the engine's pool, in a transaction committed on exit."""
        raw = self.engine.raw_connection()
        try:
            conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
            try:
                if not self._schemas_ready:
                    self._create_schemas(conn)
                yield conn
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except psycopg.Error:
                    raw.invalidate()  # a connection broken mid-COPY goes, not back to the pool
                raise
        finally:
            raw.close()

    def _create_schemas(self, conn: psycopg.Connection[Any]) -> None:
        # One creator at a time: concurrent CREATE SCHEMA IF NOT EXISTS can still collide.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('geoetl.features.schemas'))")
        for schema in (self.schema, self.staging):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (relation oid NOT NULL, first_fid bigint NOT NULL, "
                "PRIMARY KEY (relation, first_fid))"
            ).format(sql.Identifier(self.staging, CHUNKS_TABLE))
        )
        conn.commit()
        self._schemas_ready = True

    def _lock(self, conn: psycopg.Connection[Any], dataset_id: str) -> None:
        """Serialize loads and publications of one dataset (until the transaction ends)."""
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))",
            [f"geoetl.features:{self.schema}:{dataset_id}"],
        )

    def _forget_chunks(self, conn: psycopg.Connection[Any]) -> None:
        """Drop the copied ranges of tables no longer staged (dropped or published)."""
        conn.execute(
            sql.SQL(
                "DELETE FROM {} c WHERE NOT EXISTS (SELECT FROM pg_class r "
                "WHERE r.oid = c.relation AND r.relnamespace = %s::regnamespace)"
            ).format(sql.Identifier(self.staging, CHUNKS_TABLE)),
            [sql.Identifier(self.staging).as_string(conn)],
        )

    def _staged(self, table: str) -> sql.Composable:
        return sql.Identifier(self.staging, table)

    def _owned(
        self, conn: psycopg.Connection[Any], schema: str, dataset_id: str
    ) -> dict[str, int | None]:
        """Tables of ``schema`` whose comment names ``dataset_id``, by name, and their counts."""
        rows = conn.execute(
            "SELECT c.relname, split_part(obj_description(c.oid, 'pg_class'), E'\\n', 2) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' "
            "AND split_part(obj_description(c.oid, 'pg_class'), E'\\n', 1) = %s "
            "ORDER BY c.relname",
            [schema, COMMENT.format(dataset_id)],
        ).fetchall()
        return {str(name): _stored_count(str(line)) for name, line in rows}

    def _layout(self, conn: psycopg.Connection[Any], schema: str, table: str) -> Table:
        rows = conn.execute(
            "SELECT a.attname, t.typname, "
            "CASE WHEN t.typname = 'geometry' THEN postgis_typmod_type(a.atttypmod) END, "
            "CASE WHEN t.typname = 'geometry' THEN postgis_typmod_srid(a.atttypmod) END "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [sql.Identifier(schema, table).as_string(conn)],
        ).fetchall()
        columns = {}
        geometry, typmod, srid = "", "Geometry", 0
        chunked = False
        for name, typname, geometry_type, geometry_srid in rows:
            if typname == "geometry" and not geometry:
                geometry, typmod, srid = name, geometry_type or "Geometry", geometry_srid or 0
            elif name == CHUNK_COLUMN:
                chunked = True
            elif name != FID:
                columns[str(name)] = str(typname)
        has_z = typmod.endswith("Z") and not typmod.endswith("ZM")
        return Table(columns, geometry, typmod.removesuffix("Z"), int(srid), has_z, chunked)

    def _published_layout(
        self, conn: psycopg.Connection[Any], dataset_id: str, table: str
    ) -> Table:
        owned = self._owned(conn, self.schema, dataset_id)
        if table not in owned:
            if not owned:
                raise NotFound(f"no dataset {dataset_id!r}")
            raise NotFound(f"no feature table {table!r}")
        return replace(self._layout(conn, self.schema, table), rows=owned[table])

    def _staged_layout(
        self, conn: psycopg.Connection[Any], dataset_id: str, table: str
    ) -> Table | None:
        if table not in self._owned(conn, self.staging, dataset_id):
            return None
        return self._layout(conn, self.staging, table)

    def _create(
        self, conn: psycopg.Connection[Any], dataset_id: str, table: str, layout: Table
    ) -> None:
        """Create the staged table (replacing one of the same name) with its comment."""
        if len(table.encode()) > MAX_IDENTIFIER:
            raise InputError(
                f"table name {table[:80]!r} is longer than PostgreSQL's {MAX_IDENTIFIER} bytes; "
                "choose a shorter dataset id or layer name"
            )
        clash = {FID, CHUNK_COLUMN, layout.geometry} & set(layout.columns)
        if clash:
            raise InputError(f"{table}: column name(s) {', '.join(sorted(clash))} are reserved")
        target = self._staged(table)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        columns = [
            sql.SQL("{} bigint GENERATED BY DEFAULT AS IDENTITY").format(sql.Identifier(FID)),
            *(
                sql.SQL("{} {}").format(
                    sql.Identifier(name), sql.SQL(KINDS[_kind_key(kind)].declare)
                )
                for name, kind in layout.columns.items()
            ),
            sql.SQL("{} {}").format(sql.Identifier(layout.geometry), _geometry_sql(layout)),
        ]
        if layout.chunked:
            columns.append(sql.SQL("{} integer NOT NULL").format(sql.Identifier(CHUNK_COLUMN)))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(columns)))
        conn.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                target, sql.Literal(COMMENT.format(dataset_id))
            )
        )

    def _widen(
        self, conn: psycopg.Connection[Any], table: str, layout: Table, chunk: Table
    ) -> None:
        """Let the staged geometry column take a chunk of another geometry type."""
        if layout.geometry_type in ("Geometry", chunk.geometry_type):
            return
        wider = Table(layout.columns, layout.geometry, "Geometry", layout.srid, layout.has_z, True)
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
                self._staged(table), sql.Identifier(layout.geometry), _geometry_sql(wider)
            )
        )


def _layout_of(
    schema: pa.Schema, table: str, geometry_column: str, geometry_type: str, crs: str
) -> Table:
    """The staged table's layout for batches of ``schema`` (WKB in ``geometry_column``)."""
    srid = srid_of(crs)
    with_z = geometry_type.strip().upper().endswith(" Z")
    typmod = GEOMETRY_TYPES.get(geometry_type.upper().removesuffix(" Z").strip().lower())
    if typmod is None:
        raise InputError(f"unknown geometry type {geometry_type!r}")
    if geometry_column not in schema.names:
        raise InputError(f"{table} has no geometry column {geometry_column!r}")
    attributes = {f.name: kind_of(f.type) for f in schema if f.name != geometry_column}
    return Table(attributes, geometry_column, typmod, srid, with_z, chunked=False)


def _same_layout(staged: Table, layout: Table) -> bool:
    """Whether rows of ``layout`` can be copied into the staged table as it is."""
    declared = {c: KINDS[_kind_key(t)].declare for c, t in staged.columns.items()}
    wanted = {c: KINDS[k].declare for c, k in layout.columns.items()}
    return (declared, staged.geometry, staged.geometry_type, staged.srid, staged.has_z) == (
        wanted,
        layout.geometry,
        layout.geometry_type,
        layout.srid,
        layout.has_z,
    ) and not staged.chunked


def _stored_count(line: str) -> int | None:
    number, _, rest = line.partition(" ")
    return int(number) if number.isdigit() and rest == "features" else None


def _slices(batches: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The batches cut to at most :data:`SLICE_ROWS` rows (slices share their buffers)."""
    for batch in batches:
        for start in range(0, batch.num_rows, SLICE_ROWS):
            yield batch.slice(start, SLICE_ROWS)
        del batch
        # Arrow's allocator keeps what the reader freed; a long load would hold its peak.
        pa.default_memory_pool().release_unused()


def _geometry_sql(layout: Table) -> sql.Composable:
    typmod = layout.geometry_type + ("Z" if layout.has_z else "")
    return sql.SQL("geometry({}, {})").format(sql.SQL(typmod), sql.Literal(layout.srid))


def _kind_key(typname: str) -> str:
    """The :data:`KINDS` key for a column's pg_type name (JSON text is text)."""
    return typname if typname in KINDS else "text"


def _time_condition(
    layout: Table, query: FeatureQuery, time_filter: TimeFilter
) -> tuple[sql.Composable, list[Any]]:
    field = time_filter.field
    if field not in layout.columns:
        known = ", ".join(sorted(query.fields))
        raise InputError(f"unknown property {field!r}; queryables are: {known}")
    typname = layout.columns[field]
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for bound, op in ((time_filter.start, ">="), (time_filter.end, "<=")):
        if bound is not None:
            clauses.append(sql.SQL("{} {} %s").format(sql.Identifier(field), sql.SQL(op)))
            params.append(coerce(bound if bound.tzinfo else bound.replace(tzinfo=UTC), typname))
    if not clauses:
        return sql.SQL("TRUE"), params
    return sql.SQL("({})").format(sql.SQL(" AND ").join(clauses)), params


def _as_geopackage(value: Any, typname: str) -> Any:
    """A column value as the GeoPackage store returns it (GDAL's ISO 8601 text for times)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return _iso_time(value.astimezone(UTC).replace(tzinfo=None), "Z")
        return _iso_time(value, "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        text = value.replace(microsecond=0).isoformat()
        return text + (f".{value.microsecond // 1000:03d}" if value.microsecond else "")
    if typname == "numeric":
        return float(value)
    if typname == "float4":  # the double SQLite holds for a 32-bit float, not its shortest text
        return float(np.float32(value))
    return value


def _iso_time(value: datetime, zone: str) -> str:
    text = value.replace(microsecond=0).isoformat()
    if value.microsecond // 1000:
        text += f".{value.microsecond // 1000:03d}"
    return text + zone


@contextmanager
def _copy_errors(table: str) -> Iterator[None]:
    """Data the database refuses is the user's; a lost connection may be retried."""
    try:
        yield
    except psycopg.errors.DataError as exc:
        raise InputError(f"cannot load {table}: {exc.diag.message_primary or exc}") from None
    except psycopg.OperationalError as exc:
        raise TransientError(f"lost the database while loading {table}: {exc}") from exc


@contextmanager
def _query_errors() -> Iterator[None]:
    """A value that does not fit its column's type is the client's mistake."""
    try:
        yield
    except psycopg.errors.DataError as exc:
        raise InputError(f"invalid value in the query: {exc.diag.message_primary or exc}") from None
    except psycopg.errors.UndefinedFunction as exc:
        raise InputError(
            f"cannot compare these values: {exc.diag.message_primary or exc}"
        ) from None
