"""CQL2 (a pygeofilter tree) to a PostGIS WHERE clause with bound parameters.

The PostGIS counterpart of :mod:`geoetl.features.cql`: the same operators, the same
error messages, the same answers. Property names are checked against the queryables
and quoted as identifiers; every value is a bound parameter, converted to the column's
type first so that a comparison means what it means in the GeoPackage store (SQLite
compares a number with a text column as text, a date as ISO 8601 text). Spatial
predicates on the ``geometry`` property become ``ST_Intersects``, ``ST_Within``, …
against the literal in EPSG:4326, moved into the table's CRS.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import shapely
from psycopg import sql
from pygeofilter import ast
from shapely.geometry.base import BaseGeometry

from geoetl.cql2 import geometry_literal
from geoetl.errors import InputError
from geoetl.features.postgis import TEXT_TYPES, WGS84, Layout, coerce
from geoetl.features.store import GEOMETRY_PROPERTY, PREDICATES

COMPARISON = {
    ast.Equal: "=",
    ast.NotEqual: "<>",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}


def like_pattern(pattern: str, escape: str | None) -> str:
    """A PostgreSQL LIKE pattern (escape character: backslash) matching CQL2's ``pattern``."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if escape and ch == escape:
            literal = next(chars, "")
            out.append("\\" + literal if literal in ("%", "_", "\\") else literal)
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)  # % and _ mean in LIKE what they mean in CQL2
    return "".join(out)


class PostgisFilter:
    """Builds one WHERE condition (a :class:`psycopg.sql.Composable`) and its parameters."""

    def __init__(self, layout: Layout, queryables: set[str]) -> None:
        self.layout = layout
        self.queryables = queryables
        self.params: list[Any] = []

    def build(self, node: ast.Node) -> tuple[sql.Composable, list[Any]]:
        """The condition (without ``WHERE``) and its parameters, in order."""
        self.params = []
        return self._node(node), self.params

    def _node(self, node: Any) -> sql.Composable:
        if isinstance(node, ast.And | ast.Or):
            op = sql.SQL(" AND " if isinstance(node, ast.And) else " OR ")
            return sql.SQL("({})").format(op.join([self._node(node.lhs), self._node(node.rhs)]))
        if isinstance(node, ast.Not):
            return sql.SQL("(NOT {})").format(self._node(node.sub_node))
        if type(node) in COMPARISON:
            typname = self._typname(node.lhs) or self._typname(node.rhs)
            return sql.SQL("({} {} {})").format(
                self._value(node.lhs, typname),
                sql.SQL(COMPARISON[type(node)]),
                self._value(node.rhs, typname),
            )
        if isinstance(node, ast.Between):
            typname = self._typname(node.lhs)
            return sql.SQL("({} {}BETWEEN {} AND {})").format(
                self._value(node.lhs, typname),
                sql.SQL("NOT " if node.not_ else ""),
                self._value(node.low, typname),
                self._value(node.high, typname),
            )
        if isinstance(node, ast.In):
            typname = self._typname(node.lhs)
            values = sql.SQL(", ").join(self._value(v, typname) for v in node.sub_nodes)
            return sql.SQL("({} {}IN ({}))").format(
                self._value(node.lhs, typname), sql.SQL("NOT " if node.not_ else ""), values
            )
        if isinstance(node, ast.IsNull):
            return sql.SQL("({} IS {}NULL)").format(
                self._value(node.lhs, None), sql.SQL("NOT " if node.not_ else "")
            )
        if isinstance(node, ast.Like):
            return self._like(node)
        if isinstance(node, ast.SpatialComparisonPredicate):
            self._geometry_property(node.lhs)
            return self._spatial(node.op.value, geometry_literal(node.rhs))
        if isinstance(node, ast.BBox):
            self._geometry_property(node.lhs)
            box = shapely.box(node.minx, node.miny, node.maxx, node.maxy)
            return self._spatial("INTERSECTS", box)
        raise InputError(f"CQL2 operation {type(node).__name__} is not supported")

    def _like(self, node: ast.Like) -> sql.Composable:
        typname = self._typname(node.lhs)
        lhs = self._value(node.lhs, None)
        if typname not in TEXT_TYPES:  # SQLite's GLOB reads any value as text
            lhs = sql.SQL("{}::text").format(lhs)
        self.params.append(like_pattern(node.pattern, node.escapechar))
        return sql.SQL("({} {}{} %s ESCAPE '\\')").format(
            lhs,
            sql.SQL("NOT " if node.not_ else ""),
            sql.SQL("ILIKE" if node.nocase else "LIKE"),
        )

    def _geometry_property(self, node: Any) -> None:
        if not isinstance(node, ast.Attribute) or node.name != GEOMETRY_PROPERTY:
            raise InputError(
                f"spatial predicates compare the {GEOMETRY_PROPERTY!r} property with a "
                "geometry literal or BBOX(minx, miny, maxx, maxy)"
            )

    def _spatial(self, op: str, literal: BaseGeometry) -> sql.Composable:
        if op not in PREDICATES:
            raise InputError(f"spatial predicate S_{op} is not supported")
        if literal.is_empty:
            raise InputError("the geometry in a spatial predicate is empty")
        self.params.append(shapely.to_wkb(literal))
        geometry = self.layout.geometry_in(
            sql.SQL("ST_GeomFromWKB(%s, {})").format(sql.Literal(WGS84))
        )
        # ST_Intersects, ST_Within, …: PostGIS adds the index (&&) test itself.
        function = sql.SQL("ST_" + op.capitalize())
        return sql.SQL("{}({}, {})").format(
            function, sql.Identifier(self.layout.geometry), geometry
        )

    def _typname(self, node: Any) -> str | None:
        if isinstance(node, ast.Attribute):
            return self.layout.columns.get(node.name)
        return None

    def _value(self, node: Any, typname: str | None) -> sql.Composable:
        if isinstance(node, ast.Attribute):
            if node.name not in self.queryables or node.name not in self.layout.columns:
                known = ", ".join(sorted(self.queryables))
                raise InputError(f"unknown property {node.name!r}; queryables are: {known}")
            return sql.Identifier(node.name)
        if isinstance(node, bool | int | float | str | datetime | date):
            self.params.append(coerce(node, typname) if typname else node)
            return sql.SQL("%s")
        if isinstance(node, ast.Node):
            return self._node(node)
        raise InputError(f"unsupported value in filter: {node!r}")
