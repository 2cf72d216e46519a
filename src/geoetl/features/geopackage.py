"""Feature store on GeoPackage: one file per dataset, R-tree indexed, published atomically.

Chunks are written into ``{dataset}.loading.gpkg``; each chunk write first deletes
the rows of that chunk id, so a retried chunk never duplicates rows. When every
chunk is in, indexes are built and the file replaces the published one in one
rename: a reader sees the old dataset or the new one, never a half-written one.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoetl.errors import InputError, NotFound, TransientError
from geoetl.features.store import GEOMETRY_PROPERTY, PREDICATES, FeatureQuery, TimeFilter

if TYPE_CHECKING:
    import pyarrow as pa
    import shapely
    from shapely.geometry.base import BaseGeometry

CHUNK_COLUMN = "_chunk"
# Spatial filters (features/cql.py) name the table's geometry, fid and R-tree with these
# placeholders, filled in here, and compare geometries through this SQL function, which
# every connection registers.
GEOMETRY_TOKEN, FID_TOKEN, RTREE_TOKEN = "{geom}", "{fid}", "{rtree}"
# Memory for building a table's R-tree when its file is closed (GDAL's option). 16 MiB:
# a 5,000,000-feature ingest peaks at 288 MiB instead of 449, in 134 s instead of 121.
RTREE_RAM_OPTION = "OGR_GPKG_MAX_RAM_USAGE_RTREE"
RTREE_RAM_BYTES = 16 * 1024 * 1024
SPATIAL_FUNCTION = "geoetl_spatial"
ZONE_SUFFIX = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"  # a date-time text with its UTC offset
_GPKG_FLAGS_ENVELOPE = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


def gpkg_geometry_to_wkb(blob: bytes) -> bytes:
    """The WKB inside a GeoPackage geometry blob (header and envelope skipped)."""
    if blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob")
    envelope = _GPKG_FLAGS_ENVELOPE[(blob[3] >> 1) & 0x07]
    return blob[8 + envelope :]


@functools.lru_cache(maxsize=64)
def _literal(wkb: bytes) -> shapely.Geometry:
    import shapely

    geom = shapely.from_wkb(wkb)
    shapely.prepare(geom)
    return geom


def spatial_predicate(op: str, blob: bytes | None, wkb: bytes) -> int | None:
    """``op`` (INTERSECTS, WITHIN, …) of a stored geometry blob and a WKB literal.

    NULL for a missing geometry, so neither a predicate nor its negation matches it.
    """
    import shapely

    if blob is None:
        return None
    if op not in PREDICATES:
        raise ValueError(f"unknown spatial predicate {op!r}")
    feature = shapely.from_wkb(gpkg_geometry_to_wkb(blob))
    return int(bool(getattr(shapely, op.lower())(feature, _literal(wkb))))


class GeoPackageStore:
    """Datasets as GeoPackage files under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, dataset_id: str) -> Path:
        """The published file of a dataset."""
        return self.root / f"{dataset_id}.gpkg"

    def _staging(self, dataset_id: str) -> Path:
        return self.root / f"{dataset_id}.loading.gpkg"

    def begin_load(self, dataset_id: str, keep: Collection[str] = ()) -> None:
        """Start a load; an earlier unfinished load of the dataset is discarded.

        ``keep`` is for stores whose chunks copy rows (:meth:`copy_rows`); this one
        has none to keep.
        """
        if keep:
            raise ValueError("the GeoPackage store stages whole tables only: nothing to keep")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self._staging(dataset_id)
        for leftover in (staging, Path(f"{staging}-journal"), Path(f"{staging}-wal")):
            leftover.unlink(missing_ok=True)

    def write_chunk(self, dataset_id: str, table: str, chunk_id: int, data: pa.Table) -> int:
        """Replace the rows of ``chunk_id`` in ``table`` with ``data``; returns rows written.

        ``data`` is attributes and one ``geoarrow.wkb`` column with its CRS, as
        :meth:`read` returns them; single geometries are stored as their Multi* type.
        """
        import pyarrow as pa
        import pyogrio
        import shapely

        from geoetl.vector.geoarrow import require_geometry
        from geoetl.vector.harden import common_type, promote_to_multi

        geometry_name, crs = require_geometry(data, table)
        staging = self._staging(dataset_id)
        exists = staging.exists() and table in {name for name, _ in pyogrio.list_layers(staging)}
        if exists:
            with self._sqlite(staging) as conn:
                conn.execute(f'DELETE FROM "{table}" WHERE "{CHUNK_COLUMN}" = ?', (chunk_id,))
                conn.commit()
        if data.num_rows == 0:
            return 0
        geoms = promote_to_multi(
            shapely.from_wkb(data.column(geometry_name).to_numpy(zero_copy_only=False))
        )
        with_z = bool(shapely.has_z(geoms).any())
        wkb = shapely.to_wkb(geoms, output_dimension=3 if with_z else 2)
        out = data.drop_columns([geometry_name]).append_column(
            geometry_name, pa.array(wkb, pa.binary())
        )
        out = out.append_column(CHUNK_COLUMN, pa.array([chunk_id] * out.num_rows, pa.int32()))
        try:
            pyogrio.write_arrow(
                out,
                staging,
                layer=table,
                driver="GPKG",
                geometry_name=geometry_name,
                geometry_type=common_type(geoms) + (" Z" if with_z else ""),
                crs=crs,
                append=exists,
            )
        except pyogrio.errors.DataSourceError as exc:
            raise TransientError(f"could not write chunk {chunk_id} of {table}: {exc}") from exc
        with self._sqlite(staging) as conn:
            # Retried chunks delete by chunk id: keep that delete an index lookup.
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "ix_{table}_chunk" ON "{table}" ("{CHUNK_COLUMN}")'
            )
            conn.commit()
        return int(data.num_rows)

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
        """Write a whole table into the staging file from a stream of Arrow batches.

        The table must not exist yet (``begin_load`` starts an empty file): it is created
        by this call, so GDAL builds its R-tree once, in bulk, when the file is closed.
        GDAL builds it in memory up to :data:`RTREE_RAM_BYTES` (its own default is a share
        of the machine's RAM: 180 MiB more at 5,000,000 features), then in a temporary
        database.
        """
        import pyogrio

        staging = self._staging(dataset_id)
        previous = pyogrio.get_gdal_config_option(RTREE_RAM_OPTION)
        pyogrio.set_gdal_config_options({RTREE_RAM_OPTION: str(RTREE_RAM_BYTES)})
        try:
            pyogrio.write_arrow(
                batches,
                staging,
                layer=table,
                driver="GPKG",
                geometry_name=geometry_column,
                geometry_type=geometry_type,
                crs=crs,
                append=staging.exists(),
            )
        except pyogrio.errors.DataSourceError as exc:
            raise TransientError(f"could not write {table} of {dataset_id}: {exc}") from exc
        finally:
            pyogrio.set_gdal_config_options({RTREE_RAM_OPTION: previous})

    def finish_load(
        self,
        dataset_id: str,
        index_columns: dict[str, list[str]],
        descriptions: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Index the requested columns, describe them, ANALYZE, publish the file atomically."""
        staging = self._staging(dataset_id)
        if not staging.exists():
            raise InputError(f"dataset {dataset_id} has no features to publish")
        with self._sqlite(staging) as conn:
            if descriptions:
                _describe_columns(conn, descriptions)
            for table, columns in index_columns.items():
                existing = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({_ident(table)})")}
                for column in columns:
                    if column not in existing:
                        raise InputError(
                            f"cannot index {column[:60]!r}: {table} has no such column; "
                            f"valid columns: {', '.join(sorted(existing))}"
                        )
                    conn.execute(
                        f"CREATE INDEX IF NOT EXISTS {_ident(f'ix_{table}_{column}')} "
                        f"ON {_ident(table)} ({_ident(column)})"
                    )
            conn.execute("ANALYZE")
            conn.commit()
        os.replace(staging, self.path(dataset_id))

    def drop(self, dataset_id: str) -> bool:
        """Delete a dataset and what an unfinished load staged; False if there was neither."""
        staging = self._staging(dataset_id)
        dropped = False
        for path in (self.path(dataset_id), staging):
            if path.exists():
                path.unlink()
                dropped = True
        for leftover in (Path(f"{staging}-journal"), Path(f"{staging}-wal")):
            leftover.unlink(missing_ok=True)
        return dropped

    def tables(self, dataset_id: str) -> list[str]:
        """Tables of a published dataset."""
        import pyogrio

        path = self.path(dataset_id)
        if not path.exists():
            raise NotFound(f"no dataset {dataset_id!r}")
        return [str(name) for name, _ in pyogrio.list_layers(path)]

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
        """None: a GeoPackage has one writer at a time, so chunks copy nothing.

        The load's finalize writes each table whole (:meth:`write_table`).
        """
        return None

    def staged_rows(self, dataset_id: str, table: str) -> int | None:
        """Rows in the staged ``table`` of ``dataset_id``; None when it is not staged."""
        import pyogrio

        staging = self._staging(dataset_id)
        if not staging.exists() or table not in {n for n, _ in pyogrio.list_layers(staging)}:
            return None
        with self._sqlite(staging) as conn:
            return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def count(self, dataset_id: str, table: str) -> int:
        """Rows in a table of a published dataset."""
        with self._sqlite(self.path(dataset_id)) as conn:
            return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def fields(self, dataset_id: str, table: str) -> dict[str, str]:
        """Attribute columns of a published table and their NumPy dtype names."""
        import pyogrio

        info = pyogrio.read_info(self.path(dataset_id), layer=table)
        return {
            str(name): str(dtype)
            for name, dtype in zip(info["fields"], info["dtypes"], strict=True)
            if name != CHUNK_COLUMN
        }

    def read(self, dataset_id: str, table: str) -> pa.Table:
        """A whole published table: attributes and a ``geoarrow.wkb`` ``geometry`` column."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyogrio

        from geoetl.vector.geoarrow import wkb_field

        # Date-times as GeoPackage text: GDAL's Arrow stream labels every one UTC, even
        # those stored without a zone; a column whose values carry a zone is UTC here.
        meta, data = pyogrio.read_arrow(self.path(dataset_id), layer=table, datetime_as_string=True)
        dtypes = dict(zip(meta["fields"], meta["dtypes"], strict=True))
        for i, name in enumerate(data.column_names):
            if str(dtypes.get(name)).startswith("datetime") and pa.types.is_string(
                data.schema.field(name).type
            ):
                text = data.column(name)
                zoned = pc.match_substring_regex(text, ZONE_SUFFIX)
                if pc.any(zoned).as_py():
                    # A value without an offset among zoned ones is UTC, as GeoPackage says.
                    text = pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", ""))
                    stamps = text.cast(pa.timestamp("ms", tz="UTC"))
                else:
                    stamps = text.cast(pa.timestamp("ms"))
                data = data.set_column(i, name, stamps)
        geometry = data.schema.names.index(meta["geometry_name"] or "wkb_geometry")
        field = wkb_field(GEOMETRY_PROPERTY, meta["crs"])
        data = data.set_column(geometry, field, data.column(geometry))
        return data.drop_columns([c for c in (CHUNK_COLUMN,) if c in data.column_names])

    def query(
        self, dataset_id: str, table: str, query: FeatureQuery
    ) -> tuple[list[dict[str, Any]], int]:
        """GeoJSON features matching ``query`` and how many match in all.

        The bbox goes through the table's R-tree; CQL2 becomes a WHERE clause with
        bound parameters (:class:`~geoetl.features.cql.SqliteFilter`); booleans are
        stored 0/1 and dates as ISO 8601 text, compared as instants.
        """
        path = self.path(dataset_id)
        if not path.exists():
            raise NotFound(f"no dataset {dataset_id!r}")
        crs = _StoredCrs.of(path, table)
        where = [(name, int(v) if isinstance(v, bool) else v) for name, v in query.equals]
        conditions: list[tuple[str, list[Any]]] = []
        if query.filter is not None:
            # The CQL2 walker (and pygeofilter) load with the first filter, not at start.
            from geoetl.features.cql import SqliteFilter

            to_stored = crs.to_stored if crs is not None else None
            conditions.append(SqliteFilter(set(query.fields), to_stored).build(query.filter))
        if query.time is not None:
            conditions.append(_time_condition(query.time))
        condition = None
        if conditions:
            condition = (
                " AND ".join(c[0] for c in conditions),
                [p for c in conditions for p in c[1]],
            )
        bbox = query.bbox
        if bbox is not None and crs is not None:
            bbox = crs.bbox_to_stored(bbox)
        features, total = self._features(
            dataset_id,
            table,
            bbox=bbox,
            where=where,
            condition=condition,
            order=list(query.sortby),
            feature_id=query.feature_id,
            limit=query.limit,
            offset=query.offset,
        )
        if crs is not None:
            for feat in features:
                if feat["geometry"] is not None:
                    feat["geometry"] = crs.to_crs84(feat["geometry"])
        if query.properties is not None:
            for feat in features:
                feat["properties"] = {
                    k: v for k, v in feat["properties"].items() if k in query.properties
                }
        return features, total

    def _features(
        self,
        dataset_id: str,
        table: str,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        where: list[tuple[str, Any]] | None = None,
        condition: tuple[str, list[Any]] | None = None,
        order: list[tuple[str, bool]] | None = None,
        feature_id: int | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        import shapely.geometry

        path = self.path(dataset_id)
        if not path.exists():
            raise NotFound(f"no dataset {dataset_id!r}")
        with self._sqlite(path) as conn:
            geom_col, fid_col = _columns(conn, table)
            booleans = _boolean_columns(conn, table)
            clauses: list[str] = []
            args: list[Any] = []
            if bbox is not None:
                # The R-tree finds candidates by envelope; the exact test keeps only the
                # features whose geometry intersects the box (OGC API Features' rule).
                clauses.append(
                    f'"{fid_col}" IN (SELECT id FROM "rtree_{table}_{geom_col}" '
                    "WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?) "
                    f"AND {SPATIAL_FUNCTION}('INTERSECTS', \"{geom_col}\", ?)"
                )
                args += [bbox[0], bbox[2], bbox[1], bbox[3], _box_wkb(bbox)]
            for column, value in where or []:
                clauses.append(f"{_ident(column)} = ?")
                args.append(value)
            if feature_id is not None:
                clauses.append(f'"{fid_col}" = ?')
                args.append(feature_id)
            if condition is not None:
                sql = condition[0].replace(GEOMETRY_TOKEN, f'"{geom_col}"')
                sql = sql.replace(FID_TOKEN, f'"{fid_col}"')
                clauses.append(sql.replace(RTREE_TOKEN, f'"rtree_{table}_{geom_col}"'))
                args += condition[1]
            sql_where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
            total = _known_count(conn, table) if not clauses else None
            if total is None:
                total = conn.execute(f'SELECT count(*) FROM "{table}"{sql_where}', args).fetchone()[
                    0
                ]
            # Column names in ``order`` were checked against the table by the caller.
            keys = [f'"{c}" {"DESC" if desc else "ASC"}' for c, desc in order or []]
            order_by = ", ".join([*keys, f'"{fid_col}"'])
            cursor = conn.execute(
                f'SELECT * FROM "{table}"{sql_where} ORDER BY {order_by} LIMIT ? OFFSET ?',
                [*args, limit, offset],
            )
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        features = []
        for row in rows:
            record = dict(zip(names, row, strict=True))
            blob = record.pop(geom_col)
            fid = record.pop(fid_col)
            record.pop(CHUNK_COLUMN, None)
            for column in booleans:  # SQLite stores them as 0/1
                if record.get(column) is not None:
                    record[column] = bool(record[column])
            geometry = None
            if blob:
                geometry = shapely.geometry.mapping(_without_m(gpkg_geometry_to_wkb(blob)))
            features.append(
                {"type": "Feature", "id": fid, "geometry": geometry, "properties": record}
            )
        return features, int(total)

    @contextmanager
    def _sqlite(self, path: Path) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(path, timeout=60)) as conn:
            conn.create_function(SPATIAL_FUNCTION, 3, spatial_predicate, deterministic=True)
            yield conn


def _box_wkb(bbox: tuple[float, float, float, float]) -> bytes:
    import shapely

    return bytes(shapely.to_wkb(shapely.box(*bbox)))


class _StoredCrs:
    """A table stored in a CRS other than WGS 84: literals in, features out in CRS84."""

    def __init__(self, wkt: str) -> None:
        from pyproj import CRS, Transformer

        stored = CRS.from_wkt(wkt)
        self._in = Transformer.from_crs("OGC:CRS84", stored, always_xy=True)
        self._out = Transformer.from_crs(stored, "OGC:CRS84", always_xy=True)

    @classmethod
    def of(cls, path: Path, table: str) -> _StoredCrs | None:
        """The table's CRS when it is not EPSG:4326 (or undefined), else None."""
        with closing(sqlite3.connect(path, timeout=60)) as conn:
            row = conn.execute(
                "SELECT s.organization, s.organization_coordsys_id, s.definition "
                "FROM gpkg_geometry_columns g JOIN gpkg_spatial_ref_sys s USING (srs_id) "
                "WHERE g.table_name = ?",
                (table,),
            ).fetchone()
        if row is None or row[2] in (None, "undefined"):
            return None
        if str(row[0]).upper() == "EPSG" and int(row[1]) == 4326:
            return None
        return cls(str(row[2]))

    def to_stored(self, geom: BaseGeometry) -> BaseGeometry:
        """A CRS84 geometry in the stored CRS."""
        import numpy as np
        import shapely

        def move(xy: Any) -> Any:
            return np.column_stack(self._in.transform(xy[:, 0], xy[:, 1]))

        return shapely.transform(geom, move)

    def bbox_to_stored(
        self, bbox: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        """A CRS84 bbox as the stored CRS' bbox covering it (edges densified)."""
        minx, miny, maxx, maxy = self._in.transform_bounds(*bbox, densify_pts=21)
        return (float(minx), float(miny), float(maxx), float(maxy))

    def to_crs84(self, geometry: dict[str, Any]) -> dict[str, Any]:
        """A GeoJSON geometry in the stored CRS, in CRS84 (Z kept)."""
        import shapely
        import shapely.geometry

        geom = shapely.geometry.shape(geometry)

        def move(coords: Any) -> Any:
            import numpy as np

            moved = self._out.transform(*coords.T)
            return np.column_stack(moved)

        per_geometry: Any = None
        out: dict[str, Any] = shapely.geometry.mapping(
            shapely.transform(geom, move, include_z=per_geometry)
        )
        return out


def _describe_columns(conn: sqlite3.Connection, descriptions: dict[str, dict[str, str]]) -> None:
    """Column descriptions in ``gpkg_data_columns`` (the GeoPackage schema extension)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS gpkg_data_columns (table_name TEXT NOT NULL, "
        "column_name TEXT NOT NULL, name TEXT, title TEXT, description TEXT, mime_type TEXT, "
        "constraint_name TEXT, CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name))"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT, "
        "extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL, "
        "CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))"
    )
    for table, columns in descriptions.items():
        existing = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({_ident(table)})")}
        for column, text in columns.items():
            if column not in existing:
                continue
            conn.execute(
                "INSERT OR REPLACE INTO gpkg_data_columns (table_name, column_name, description) "
                "VALUES (?, ?, ?)",
                (table, column, text),
            )
    conn.execute(
        "INSERT INTO gpkg_extensions (table_name, column_name, extension_name, definition, "
        "scope) SELECT 'gpkg_data_columns', NULL, 'gpkg_schema', "
        "'http://www.geopackage.org/spec121/#extension_schema', 'read-write' WHERE NOT EXISTS "
        "(SELECT 1 FROM gpkg_extensions WHERE table_name = 'gpkg_data_columns' "
        "AND extension_name = 'gpkg_schema')"
    )


def _time_condition(time: TimeFilter) -> tuple[str, list[Any]]:
    # Stored values are ISO 8601 text in several spellings ('…Z', '….000Z', no zone, a
    # date): SQLite's julianday() reads them all as instants, so equal instants match
    # whatever their spelling. GeoPackage keeps UTC; a zone-less value is UTC.
    column = f"julianday({_ident(time.field)})"
    clauses, params = [], []
    if time.start is not None:
        clauses.append(f"{column} >= julianday(?)")
        params.append(_utc_text(time.start))
    if time.end is not None:
        clauses.append(f"{column} <= julianday(?)")
        params.append(_utc_text(time.end))
    return " AND ".join(clauses) or "1 = 1", params


def _utc_text(when: datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def _known_count(conn: sqlite3.Connection, table: str) -> int | None:
    # GDAL keeps each table's row count in gpkg_ogr_contents (by triggers): no table scan.
    try:
        row = conn.execute(
            "SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = ?", (table,)
        ).fetchone()
    except sqlite3.OperationalError:  # a GeoPackage written without that table
        return None
    return None if row is None or row[0] is None else int(row[0])


def _without_m(wkb: bytes) -> BaseGeometry:
    """The geometry of ``wkb`` without M values (GeoJSON reads a third number as Z).

    The pipeline drops M before it writes; this keeps files published earlier honest.
    """
    import shapely

    geom = shapely.from_wkb(wkb)
    if shapely.has_m(geom):
        geom = shapely.from_wkb(shapely.to_wkb(geom, output_dimension=3 if geom.has_z else 2))
    return geom


def _boolean_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    # GDAL declares a GeoPackage boolean column BOOLEAN and stores 0/1.
    return [
        str(r[1])
        for r in conn.execute(f"PRAGMA table_info({_ident(table)})")
        if str(r[2]).upper() == "BOOLEAN"
    ]


def _columns(conn: sqlite3.Connection, table: str) -> tuple[str, str]:
    geom = conn.execute(
        "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)
    ).fetchone()
    if geom is None:
        raise NotFound(f"no feature table {table!r}")
    pk = next(
        (r[1] for r in conn.execute(f'PRAGMA table_info("{table}")') if r[5]),
        "fid",
    )
    return str(geom[0]), str(pk)


def _ident(name: str) -> str:
    """``name`` as an SQLite identifier: double-quoted, inner quotes doubled."""
    if "\x00" in name:
        raise InputError("an SQL identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'
