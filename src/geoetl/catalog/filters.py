"""CQL2 filters and sort keys over catalogued STAC items, as SQLAlchemy expressions.

pygeofilter parses the filter (CQL2 text or JSON); this module walks its tree and
builds SQLAlchemy expressions, so every literal is a bound parameter and property
names only ever reach SQL as bound JSON paths. ``id``, ``collection`` and
``datetime`` map to indexed columns; any other name is an item property.

It is the catalogs' one CQL2 translator: :class:`ItemTable` says where a table keeps
an item's fields, so the same code filters SqlCatalog's ``stac_items`` (SQLite or
PostgreSQL) and pgSTAC's ``pgstac.items``.

Spatial predicates need a geometry engine in the database: on SQLite geoetl
registers ``geoetl_relate`` (shapely) on every connection; on PostgreSQL they use
PostGIS when the database has it (on pgSTAC's geometry column, which its GiST
indexes cover).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from pygeofilter import ast

from geoetl.catalog.tables import stac_items
from geoetl.cql2 import geometry_literal, parse, plain_geojson
from geoetl.errors import InputError
from geoetl.like import like_to_glob

PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.\-]*$")
COMPARISON = {
    ast.Equal: "=",
    ast.NotEqual: "!=",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}
# CQL2 spatial function → the name shapely / PostGIS give the same relation.
SPATIAL = {
    ast.GeometryIntersects: "intersects",
    ast.GeometryDisjoint: "disjoint",
    ast.GeometryContains: "contains",
    ast.GeometryWithin: "within",
    ast.GeometryTouches: "touches",
    ast.GeometryCrosses: "crosses",
    ast.GeometryOverlaps: "overlaps",
    ast.GeometryEquals: "equals",
}
# Relations an item can only satisfy when its bbox meets the query geometry's bbox.
NEEDS_OVERLAP = {"intersects", "contains", "within", "touches", "crosses", "overlaps", "equals"}
CORE_FIELDS = {"id", "collection", "datetime", "geometry"}


def parse_cql2(value: str | dict[str, Any], lang: str | None) -> ast.Node:
    """A parsed CQL2 filter (:func:`geoetl.cql2.parse`, shared by both APIs)."""
    return parse(value, lang)


def iso_z(value: datetime | date) -> str:
    """A timestamp as STAC writes it (UTC, ``Z``), for comparing with stored strings."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch(value: datetime | date) -> float:
    """Seconds since the epoch (the ``datetime`` column's unit)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


@dataclass(frozen=True)
class ItemTable:
    """Where a table of catalogued items keeps the fields filters and sorts read."""

    id: Any
    collection: Any
    datetime: Any
    # The JSON column holding the item's "properties" (and its "geometry" when the
    # table has no geometry column).
    document: Any
    # True: ``datetime`` holds seconds since the epoch; False: a timestamp with time zone.
    epoch: bool
    # A PostGIS geometry column (SRID 4326), tested directly (its GiST index applies).
    geometry: Any = None
    # minx, miny, maxx, maxy columns: a cheap overlap test before the exact one.
    bbox: tuple[Any, Any, Any, Any] | None = None


STAC_ITEMS = ItemTable(
    id=stac_items.c.item_id,
    collection=stac_items.c.collection_id,
    datetime=stac_items.c.datetime,
    document=stac_items.c.data,
    epoch=True,
    bbox=(stac_items.c.minx, stac_items.c.miny, stac_items.c.maxx, stac_items.c.maxy),
)


class Literals:
    """A filter's literal values, bound as named parameters ``cql0``, ``cql1`` and on.

    Named in the order the translator meets them, so every filter of one structure
    (the same operators, properties and value types) gives one SQL text: a catalog may
    compile it once and run it with each filter's :attr:`values`.
    """

    PREFIX = "cql"

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def bind(self, value: Any, type_: Any) -> sa.BindParameter[Any]:
        """The next parameter, holding ``value``."""
        name = f"{self.PREFIX}{len(self.values)}"
        self.values[name] = value
        return sa.bindparam(name, type_=type_)


def statement_shape(clauses: list[Any], literals: Literals) -> tuple[Any, ...] | None:
    """What the SQL text of ``clauses`` depends on once ``literals`` are bound by name.

    SQLAlchemy's cache key of each clause (its structure, without any bound value) and
    the values it binds anonymously (property names, fixed arguments such as an SRID):
    two lists of clauses with one shape compile to the same text and the same constant
    parameters. None when a clause cannot be cached or binds an unhashable value.
    """
    parts: list[Any] = []
    for clause in clauses:
        key = clause._generate_cache_key()
        if key is None:
            return None
        constants = tuple(p.effective_value for p in key.bindparams if p.key not in literals.values)
        parts.append((key.key, constants))
    shape = tuple(parts)
    try:
        hash(shape)
    except TypeError:
        return None
    return shape


class ItemSql:
    """Expressions over a table of items (default ``stac_items``) for one database dialect."""

    def __init__(
        self,
        dialect: str,
        postgis_schema: str | None = None,
        table: ItemTable = STAC_ITEMS,
        literals: Literals | None = None,
    ) -> None:
        self.sqlite = dialect == "sqlite"
        self.dialect = dialect
        self.postgis_schema = postgis_schema
        self.table = table
        # None: literals are bound anonymously, each in its own statement.
        self.literals = literals

    def binding(self, literals: Literals) -> ItemSql:
        """The same translator, binding its filters' literals by name into ``literals``."""
        return ItemSql(self.dialect, self.postgis_schema, self.table, literals)

    def _value(self, value: Any, type_: Any) -> Any:
        """A literal of a filter: named in :attr:`literals`, or the value itself."""
        return value if self.literals is None else self.literals.bind(value, type_)

    # -- fields -------------------------------------------------------------------------

    def property_name(self, name: str) -> str:
        """A property name without its ``properties.`` prefix; InputError if malformed."""
        if name.startswith("properties."):
            name = name[len("properties.") :]
        if not PROPERTY_NAME.match(name):
            raise InputError(
                f"{name!r} is not a property name (letters, digits, '_', ':', '.', '-')"
            )
        return name

    def json_property(self, name: str) -> Any:
        """The item property ``name`` as the database's JSON value."""
        name = self.property_name(name)
        if self.sqlite:
            return sa.func.json_extract(self.table.document, f'$.properties."{name}"')
        return sa.func.jsonb_extract_path(self.table.document, "properties", name)

    def json_property_text(self, name: str) -> Any:
        """The item property ``name`` as text (for LIKE)."""
        name = self.property_name(name)
        if self.sqlite:
            return sa.func.json_extract(self.table.document, f'$.properties."{name}"')
        return sa.func.jsonb_extract_path_text(self.table.document, "properties", name)

    def sort_key(self, field: str) -> Any:
        """The expression a ``sortby`` field orders by."""
        if field in ("id", "properties.id"):
            return self.table.id
        if field in ("collection", "properties.collection"):
            return self.table.collection
        if field in ("datetime", "properties.datetime"):
            return self.table.datetime
        return self.json_property(field)

    # -- filters ------------------------------------------------------------------------

    def where(self, node: ast.Node) -> sa.ColumnElement[bool]:
        """The filter as a boolean expression."""
        result: sa.ColumnElement[bool] = self._node(node)
        return result

    def _node(self, node: Any) -> Any:
        if isinstance(node, ast.And):
            return sa.and_(self._node(node.lhs), self._node(node.rhs))
        if isinstance(node, ast.Or):
            return sa.or_(self._node(node.lhs), self._node(node.rhs))
        if isinstance(node, ast.Not):
            return sa.not_(self._node(node.sub_node))
        if type(node) in COMPARISON:
            return self._compare(node.lhs, COMPARISON[type(node)], node.rhs)
        if isinstance(node, ast.Between):
            inside = sa.and_(
                self._compare(node.lhs, ">=", node.low), self._compare(node.lhs, "<=", node.high)
            )
            return sa.not_(inside) if node.not_ else inside
        if isinstance(node, ast.In):
            any_of = sa.or_(*(self._compare(node.lhs, "=", v) for v in node.sub_nodes))
            return sa.not_(any_of) if node.not_ else any_of
        if isinstance(node, ast.IsNull):
            column = self._column(node.lhs)
            return column.is_not(None) if node.not_ else column.is_(None)
        if isinstance(node, ast.Like):
            return self._like(node)
        if isinstance(node, ast.BBox):
            return self.spatial("intersects", _box(node.minx, node.miny, node.maxx, node.maxy))
        if type(node) in SPATIAL:
            return self._spatial_node(node)
        raise InputError(
            f"CQL2 operation {type(node).__name__} is not supported; supported are comparisons, "
            "BETWEEN, IN, IS NULL, LIKE, AND/OR/NOT and the spatial functions S_INTERSECTS, "
            "S_WITHIN, S_CONTAINS, S_DISJOINT, S_TOUCHES, S_CROSSES, S_OVERLAPS, S_EQUALS"
        )

    def _column(self, node: Any) -> Any:
        if not isinstance(node, ast.Attribute):
            raise InputError(f"expected a property name, got {node!r}")
        if node.name == "id":
            return self.table.id
        if node.name == "collection":
            return self.table.collection
        if node.name == "datetime":
            return self.table.datetime
        if node.name == "geometry":
            raise InputError("geometry can only be used in spatial functions such as S_INTERSECTS")
        return self.json_property(node.name)

    def _compare(self, lhs: Any, op: str, rhs: Any) -> Any:
        if isinstance(rhs, ast.Attribute) and not isinstance(lhs, ast.Attribute):
            flipped = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
            lhs, rhs, op = rhs, lhs, flipped.get(op, op)
        if not isinstance(lhs, ast.Attribute):
            raise InputError("a comparison needs a property name on one side")
        if isinstance(rhs, ast.Attribute):
            return self._column(lhs).op(op, is_comparison=True)(self._column(rhs))
        if isinstance(rhs, ast.Node):
            raise InputError(f"unsupported value in filter: {rhs!r}")
        if lhs.name in ("id", "collection"):
            if not isinstance(rhs, str):
                raise InputError(f"{lhs.name} is compared with strings, got {rhs!r}")
            return self._column(lhs).op(op, is_comparison=True)(self._value(rhs, sa.Text))
        if lhs.name == "datetime":
            if not isinstance(rhs, datetime | date):
                raise InputError("datetime is compared with TIMESTAMP('…') or DATE('…') values")
            instant = self._value(self.time_value(rhs), self.time_type)
            return self.table.datetime.op(op, is_comparison=True)(instant)
        value = iso_z(rhs) if isinstance(rhs, datetime | date) else rhs
        if not isinstance(value, bool | int | float | str):
            raise InputError(f"unsupported value in filter: {rhs!r}")
        column = self.json_property(lhs.name)
        type_ = _sql_type(value)
        if self.sqlite:
            # json_extract gives SQL numbers, text and 0/1 for booleans.
            number = int(value) if isinstance(value, bool) else value
            return column.op(op, is_comparison=True)(self._value(number, type_))
        # jsonb compares numbers with numbers and strings with strings.
        literal = sa.cast(self._value(value, type_), type_)
        return column.op(op, is_comparison=True)(sa.func.to_jsonb(literal))

    def _like(self, node: ast.Like) -> Any:
        pattern = node.pattern
        if not isinstance(node.lhs, ast.Attribute):
            raise InputError("LIKE needs a property name on its left")
        name = node.lhs.name
        if name in ("id", "collection"):
            column = self._column(node.lhs)
        else:
            column = self.json_property_text(name)
        if self.sqlite:
            # SQLite's LIKE ignores case; GLOB does not, like CQL2's LIKE.
            glob = like_to_glob(pattern, node.escapechar)
            expr = column.op("GLOB", is_comparison=True)(self._value(glob, sa.Text))
        else:
            expr = column.like(self._value(pattern, sa.Text), escape=node.escapechar or "\\")
        return sa.not_(expr) if node.not_ else expr

    def _spatial_node(self, node: Any) -> Any:
        relation = SPATIAL[type(node)]
        lhs, rhs = node.lhs, node.rhs
        if isinstance(rhs, ast.Attribute):
            lhs, rhs = rhs, lhs
            relation = {"contains": "within", "within": "contains"}.get(relation, relation)
        if not (isinstance(lhs, ast.Attribute) and lhs.name == "geometry"):
            raise InputError("spatial functions compare the item geometry with a literal")
        import shapely.geometry

        geometry: dict[str, Any] = shapely.geometry.mapping(geometry_literal(rhs))
        return self.spatial(relation, geometry)

    @property
    def time_type(self) -> Any:
        """The SQL type of the ``datetime`` column."""
        return sa.Float if self.table.epoch else sa.DateTime(timezone=True)

    def time_value(self, value: datetime | date) -> Any:
        """A timestamp as the ``datetime`` column holds it."""
        if self.table.epoch:
            return epoch(value)
        return datetime.fromtimestamp(epoch(value), tz=UTC)

    def box(self, minx: Any, miny: Any, maxx: Any, maxy: Any) -> Any:
        """Items whose geometry meets a lon/lat box (values or bound parameters).

        PostGIS on the table's geometry column (pgSTAC's, under its GiST indexes); the
        box is ``ST_MakeEnvelope``, so a search of any box is one statement text.
        """
        if self.postgis_schema is None or self.table.geometry is None:
            raise InputError("a bbox search needs PostGIS and a geometry column")
        st = getattr(sa.func, self.postgis_schema)
        envelope = st.st_makeenvelope(minx, miny, maxx, maxy, 4326)
        return st.st_intersects(self.table.geometry, envelope)

    def spatial(self, relation: str, geometry: dict[str, Any]) -> Any:
        """Items whose geometry has ``relation`` to ``geometry`` (GeoJSON, EPSG:4326)."""
        import shapely

        try:
            shape = shapely.geometry.shape(plain_geojson(geometry))
        except Exception as exc:
            raise InputError(f"not a valid GeoJSON geometry: {exc}") from None
        if shape.is_empty:
            raise InputError("the filter geometry is empty")
        if self.sqlite:
            item = sa.func.json_extract(self.table.document, "$.geometry")
            exact = sa.func.geoetl_relate(relation, item, self._value(shape.wkb, sa.LargeBinary))
            test = exact == 1
        else:
            if self.postgis_schema is None:
                raise InputError(
                    "spatial filters need PostGIS in the catalog database "
                    "(CREATE EXTENSION postgis)"
                )
            st = getattr(sa.func, self.postgis_schema)
            query_geom = st.st_geomfromwkb(self._value(shape.wkb, sa.LargeBinary), 4326)
            if self.table.geometry is not None:
                return getattr(st, f"st_{relation}")(self.table.geometry, query_geom)
            item_geom = st.st_geomfromgeojson(
                sa.func.jsonb_extract_path_text(self.table.document, "geometry")
            )
            item_geom = st.st_setsrid(item_geom, 4326)
            test = getattr(st, f"st_{relation}")(item_geom, query_geom)
        if self.table.bbox is None or relation not in NEEDS_OVERLAP:
            return test
        minx, miny, maxx, maxy = shape.bounds
        lox, loy, hix, hiy = self.table.bbox
        overlap = sa.and_(hix >= minx, lox <= maxx, hiy >= miny, loy <= maxy)
        return sa.and_(overlap, test)


def _sql_type(value: Any) -> Any:
    if isinstance(value, bool):
        return sa.Boolean
    if isinstance(value, int | float):
        return sa.Float
    return sa.Text


def _box(minx: float, miny: float, maxx: float, maxy: float) -> dict[str, Any]:
    """A GeoJSON polygon for a bbox or CQL2 envelope."""
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
    return {"type": "Polygon", "coordinates": [ring]}
