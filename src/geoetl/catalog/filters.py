"""CQL2 filters and sort keys over catalogued STAC items, as SQLAlchemy expressions.

pygeofilter parses the filter (CQL2 text or JSON); this module walks its tree and
builds SQLAlchemy expressions, so every literal is a bound parameter and property
names only ever reach SQL as bound JSON paths. ``id``, ``collection`` and
``datetime`` map to indexed columns; any other name is an item property.

Spatial predicates need a geometry engine in the database: on SQLite geoetl
registers ``geoetl_relate`` (shapely) on every connection; on PostgreSQL they use
PostGIS when the database has it.
"""

from __future__ import annotations

import re
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


class ItemSql:
    """Expressions over ``stac_items`` for one database dialect."""

    def __init__(self, dialect: str, postgis_schema: str | None = None) -> None:
        self.sqlite = dialect == "sqlite"
        self.postgis_schema = postgis_schema

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
            return sa.func.json_extract(stac_items.c.data, f'$.properties."{name}"')
        return sa.func.jsonb_extract_path(stac_items.c.data, "properties", name)

    def json_property_text(self, name: str) -> Any:
        """The item property ``name`` as text (for LIKE)."""
        name = self.property_name(name)
        if self.sqlite:
            return sa.func.json_extract(stac_items.c.data, f'$.properties."{name}"')
        return sa.func.jsonb_extract_path_text(stac_items.c.data, "properties", name)

    def sort_key(self, field: str) -> Any:
        """The expression a ``sortby`` field orders by."""
        if field in ("id", "properties.id"):
            return stac_items.c.item_id
        if field in ("collection", "properties.collection"):
            return stac_items.c.collection_id
        if field in ("datetime", "properties.datetime"):
            return stac_items.c.datetime
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
            return stac_items.c.item_id
        if node.name == "collection":
            return stac_items.c.collection_id
        if node.name == "datetime":
            return stac_items.c.datetime
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
            return self._column(lhs).op(op, is_comparison=True)(rhs)
        if lhs.name == "datetime":
            if not isinstance(rhs, datetime | date):
                raise InputError("datetime is compared with TIMESTAMP('…') or DATE('…') values")
            return stac_items.c.datetime.op(op, is_comparison=True)(epoch(rhs))
        value = iso_z(rhs) if isinstance(rhs, datetime | date) else rhs
        if not isinstance(value, bool | int | float | str):
            raise InputError(f"unsupported value in filter: {rhs!r}")
        column = self.json_property(lhs.name)
        if self.sqlite:
            # json_extract gives SQL numbers, text and 0/1 for booleans.
            return column.op(op, is_comparison=True)(
                int(value) if isinstance(value, bool) else value
            )
        # jsonb compares numbers with numbers and strings with strings.
        return column.op(op, is_comparison=True)(
            sa.func.to_jsonb(sa.cast(sa.literal(value), _sql_type(value)))
        )

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
            expr = column.op("GLOB", is_comparison=True)(like_to_glob(pattern, node.escapechar))
        else:
            expr = column.like(pattern, escape=node.escapechar or "\\")
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

    def spatial(self, relation: str, geometry: dict[str, Any]) -> Any:
        """Items whose geometry has ``relation`` to ``geometry`` (GeoJSON, EPSG:4326)."""
        import shapely

        try:
            shape = shapely.geometry.shape(plain_geojson(geometry))
        except Exception as exc:
            raise InputError(f"not a valid GeoJSON geometry: {exc}") from None
        if shape.is_empty:
            raise InputError("the filter geometry is empty")
        minx, miny, maxx, maxy = shape.bounds
        overlap = sa.and_(
            stac_items.c.maxx >= minx,
            stac_items.c.minx <= maxx,
            stac_items.c.maxy >= miny,
            stac_items.c.miny <= maxy,
        )
        if self.sqlite:
            exact = sa.func.geoetl_relate(
                relation, sa.func.json_extract(stac_items.c.data, "$.geometry"), shape.wkb
            )
            test = exact == 1
        else:
            if self.postgis_schema is None:
                raise InputError(
                    "spatial filters need PostGIS in the catalog database "
                    "(CREATE EXTENSION postgis)"
                )
            st = getattr(sa.func, self.postgis_schema)
            item_geom = st.st_geomfromgeojson(
                sa.func.jsonb_extract_path_text(stac_items.c.data, "geometry")
            )
            query_geom = st.st_geomfromwkb(sa.literal(shape.wkb, sa.LargeBinary), 4326)
            item_geom = st.st_setsrid(item_geom, 4326)
            test = getattr(st, f"st_{relation}")(item_geom, query_geom)
        return sa.and_(overlap, test) if relation in NEEDS_OVERLAP else test


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
