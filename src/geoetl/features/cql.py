"""CQL2 (text or JSON) to a SQLite WHERE clause with bound parameters (the GeoPackage backend).

pygeofilter parses the filter; this module only walks its tree. Property names
are checked against the collection's queryables and every value is a bound
parameter, so no part of a user's filter is ever pasted into SQL. Spatial
predicates (S_INTERSECTS, S_WITHIN, S_CONTAINS, S_DISJOINT, …) on the
``geometry`` property go through the table's R-tree with the literal's envelope
and are then checked exactly with shapely (a SQL function GeoPackageStore
registers); the store fills in the table's geometry, fid and R-tree names.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import shapely
import shapely.geometry
from pygeofilter import ast
from shapely.geometry.base import BaseGeometry

from geoetl.cql2 import geometry_literal, parse
from geoetl.errors import InputError
from geoetl.features.geopackage import FID_TOKEN, GEOMETRY_TOKEN, RTREE_TOKEN, SPATIAL_FUNCTION
from geoetl.features.store import GEOMETRY_PROPERTY, PREDICATES
from geoetl.like import like_to_glob

COMPARISON = {
    ast.Equal: "=",
    ast.NotEqual: "<>",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}


def parse_filter(text: str, lang: str) -> ast.Node:
    """Parse a CQL2 filter (:func:`geoetl.cql2.parse`, shared by both APIs)."""
    return parse(text, lang)


class SqliteFilter:
    """Builds ``(sql, params)`` for one filter over a table's columns."""

    def __init__(
        self,
        columns: set[str],
        to_stored: Callable[[BaseGeometry], BaseGeometry] | None = None,
    ) -> None:
        self.columns = columns
        # Literals are CRS84; a table stored in another CRS compares them in its own.
        self.to_stored = to_stored
        self.params: list[Any] = []

    def build(self, node: ast.Node) -> tuple[str, list[Any]]:
        """The WHERE clause (without ``WHERE``) and its parameters."""
        self.params = []
        return self._node(node), self.params

    def _node(self, node: Any) -> str:
        if isinstance(node, ast.And | ast.Or):
            op = "AND" if isinstance(node, ast.And) else "OR"
            return f"({self._node(node.lhs)} {op} {self._node(node.rhs)})"
        if isinstance(node, ast.Not):
            return f"(NOT {self._node(node.sub_node)})"
        if type(node) in COMPARISON:
            return f"({self._value(node.lhs)} {COMPARISON[type(node)]} {self._value(node.rhs)})"
        if isinstance(node, ast.Between):
            neg = "NOT " if node.not_ else ""
            low, high = self._value(node.low), self._value(node.high)
            return f"({self._value(node.lhs)} {neg}BETWEEN {low} AND {high})"
        if isinstance(node, ast.In):
            neg = "NOT " if node.not_ else ""
            values = ", ".join(self._value(v) for v in node.sub_nodes)
            return f"({self._value(node.lhs)} {neg}IN ({values}))"
        if isinstance(node, ast.IsNull):
            return f"({self._value(node.lhs)} IS {'NOT ' if node.not_ else ''}NULL)"
        if isinstance(node, ast.Like):
            neg = "NOT " if node.not_ else ""
            self.params.append(like_to_glob(node.pattern, node.escapechar))
            return f"({self._value(node.lhs)} {neg}GLOB ?)"
        if isinstance(node, ast.SpatialComparisonPredicate):
            self._geometry_property(node.lhs)
            return self._spatial(node.op.value, geometry_literal(node.rhs))
        if isinstance(node, ast.BBox):
            self._geometry_property(node.lhs)
            return self._spatial(
                "INTERSECTS", shapely.box(node.minx, node.miny, node.maxx, node.maxy)
            )
        raise InputError(f"CQL2 operation {type(node).__name__} is not supported")

    def _geometry_property(self, node: Any) -> None:
        if not isinstance(node, ast.Attribute) or node.name != GEOMETRY_PROPERTY:
            raise InputError(
                f"spatial predicates compare the {GEOMETRY_PROPERTY!r} property with a "
                "geometry literal or BBOX(minx, miny, maxx, maxy)"
            )

    def _spatial(self, op: str, literal: BaseGeometry) -> str:
        """R-tree prefilter on the literal's envelope, then the exact shapely predicate."""
        if op not in PREDICATES:
            raise InputError(f"spatial predicate S_{op} is not supported")
        if literal.is_empty:
            raise InputError("the geometry in a spatial predicate is empty")
        if self.to_stored is not None:
            literal = self.to_stored(literal)
        minx, miny, maxx, maxy = (float(v) for v in literal.bounds)
        envelope = (
            f"{FID_TOKEN} IN (SELECT id FROM {RTREE_TOKEN} "
            "WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?)"
        )
        box = [minx, maxx, miny, maxy]
        exact = f"{SPATIAL_FUNCTION}(?, {GEOMETRY_TOKEN}, ?)"
        wkb = shapely.to_wkb(literal)
        if op == "DISJOINT":  # outside the envelope, or not intersecting
            self.params += [*box, "INTERSECTS", wkb]
            return f"(NOT {envelope} OR NOT {exact})"
        self.params += [*box, op, wkb]
        return f"({envelope} AND {exact})"

    def _value(self, node: Any) -> str:
        if isinstance(node, ast.Attribute):
            if node.name not in self.columns:
                known = ", ".join(sorted(self.columns))
                raise InputError(f"unknown property {node.name!r}; queryables are: {known}")
            return f'"{node.name}"'
        if isinstance(node, bool | int | float | str):
            self.params.append(node)
            return "?"
        if isinstance(node, datetime | date):
            self.params.append(node.isoformat())
            return "?"
        if isinstance(node, ast.Node):
            return self._node(node)
        raise InputError(f"unsupported value in filter: {node!r}")
