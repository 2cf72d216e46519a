"""The feature store seam: one interface, one module per backend.

``geopackage.py`` (one GeoPackage file per dataset, the embedded default) and
``postgis.py`` (tables in a PostGIS schema) implement :class:`FeatureStore`.
The OGC API builds a :class:`FeatureQuery` — a neutral description of what the
client asked — and the backend turns it into its own SQL; no SQL text is built
above this seam. :func:`open_feature_store` picks the backend from the database
URL; nothing else asks which one it is.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa
    from pygeofilter import ast
    from sqlalchemy.engine import Engine

    from geoetl.settings import Settings

# CQL2 spatial operators; each is the shapely (and PostGIS ST_) function of that name.
PREDICATES = frozenset(
    {"INTERSECTS", "DISJOINT", "CONTAINS", "WITHIN", "TOUCHES", "CROSSES", "OVERLAPS", "EQUALS"}
)
GEOMETRY_PROPERTY = "geometry"


@dataclass(frozen=True)
class TimeFilter:
    """``datetime=`` of OGC API Features on one temporal property (either end open)."""

    field: str
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class FeatureQuery:
    """What a client asked of one feature table, independent of any database.

    ``fields`` are the table's attribute columns and their dtype names (the
    queryables): every property name in ``equals``, ``filter`` and ``sortby`` was
    or will be checked against them. ``equals`` values are Python values of the
    column's type (bool, int, float, str). ``filter`` is a parsed CQL2 tree
    (:func:`geoetl.cql2.parse`); spatial predicates name the ``geometry`` property.
    ``sortby`` is (property, descending); ties are broken by feature id.
    ``feature_id`` selects one feature.
    """

    fields: dict[str, str]
    bbox: tuple[float, float, float, float] | None = None
    equals: tuple[tuple[str, Any], ...] = ()
    filter: ast.Node | None = None
    time: TimeFilter | None = None
    sortby: tuple[tuple[str, bool], ...] = ()
    properties: frozenset[str] | None = None
    feature_id: int | None = None
    limit: int = 10
    offset: int = 0


class FeatureStore(Protocol):
    """Where published feature tables live, and how they are loaded and queried.

    A load is ``begin_load`` (discards an unfinished earlier load), then
    ``write_table`` per table (or ``write_chunk`` per chunk: a chunk written again
    replaces its rows, never duplicates them), then ``finish_load``, which indexes,
    analyzes and publishes every table of the dataset at once: readers see the
    old dataset or the new one, never a half-written one. A store that takes
    chunks side by side also stages rows chunk by chunk in ranges of feature ids
    (``copy_rows``), which ``begin_load`` can keep.
    """

    def begin_load(self, dataset_id: str, keep: Collection[str] = ()) -> None:
        """Start a load of ``dataset_id``; an earlier unfinished load is discarded.

        ``keep`` names staged tables (of rows :meth:`copy_rows` staged) to keep.
        """

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

        A retried chunk replaces what it staged before in ``fids``. None when this
        store does not stage chunks (or not into this table as it is): the load
        then writes the table whole.
        """

    def staged_rows(self, dataset_id: str, table: str) -> int | None:
        """Rows in the staged ``table`` of ``dataset_id``; None when it is not staged."""

    def write_chunk(self, dataset_id: str, table: str, chunk_id: int, data: pa.Table) -> int:
        """Replace the rows of ``chunk_id`` in the staged ``table``; returns rows written.

        ``data`` is attributes and one ``geoarrow.wkb`` column carrying its CRS
        (:func:`geoetl.vector.geoarrow.wkb_field`), as :meth:`read` returns them.
        """

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
        """Stage a whole table from a stream of Arrow batches (WKB geometry column)."""

    def finish_load(
        self,
        dataset_id: str,
        index_columns: dict[str, list[str]],
        descriptions: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Index the requested columns, analyze, and publish the dataset atomically.

        ``descriptions`` (table -> column -> text, e.g. the source column a stored
        column came from) are written where other tools read them: PostgreSQL column
        comments, GeoPackage's ``gpkg_data_columns``.
        """

    def drop(self, dataset_id: str) -> bool:
        """Delete a dataset, published or left staged by a load; False if there was none."""

    def tables(self, dataset_id: str) -> list[str]:
        """Tables of a published dataset (NotFound if there is none)."""

    def count(self, dataset_id: str, table: str) -> int:
        """Rows in a published table."""

    def fields(self, dataset_id: str, table: str) -> dict[str, str]:
        """Attribute columns of a published table and their NumPy dtype names."""

    def read(self, dataset_id: str, table: str) -> pa.Table:
        """A whole published table (for checks and copies), in feature id order.

        Attributes and one ``geoarrow.wkb`` geometry column carrying the CRS, which
        GeoPandas (``GeoDataFrame.from_arrow``) and other Arrow readers take as it is.
        """

    def query(
        self, dataset_id: str, table: str, query: FeatureQuery
    ) -> tuple[list[dict[str, Any]], int]:
        """GeoJSON features (EPSG:4326 / CRS84) matching ``query`` and how many match in all."""


def open_feature_store(settings: Settings, engine: Engine) -> FeatureStore:
    """The feature store for this deployment: PostGIS on PostgreSQL, else GeoPackage files."""
    if engine.dialect.name == "postgresql":
        from geoetl.features.postgis import PostgisStore

        return PostgisStore(engine, schema=settings.postgis_schema)
    from geoetl.features.geopackage import GeoPackageStore

    return GeoPackageStore(Path(settings.home) / "features")
