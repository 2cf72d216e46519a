"""CQL2 (text or JSON) to a SQLite WHERE clause with bound parameters.

pygeofilter parses the filter; this module only walks its tree. Property names
are checked against the collection's queryables and every value is a bound
parameter, so no part of a user's filter is ever pasted into SQL.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from pygeofilter import ast
from pygeofilter.parsers.cql2_json import parse as parse_json
from pygeofilter.parsers.cql2_text import parse as parse_text

from geoetl.errors import InputError

COMPARISON = {
    ast.Equal: "=",
    ast.NotEqual: "<>",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}


def parse_filter(text: str, lang: str) -> ast.Node:
    """Parse a CQL2 filter; InputError saying what is wrong with it."""
    try:
        if lang == "cql2-json":
            return parse_json(json.loads(text))
        if lang == "cql2-text":
            return parse_text(text)
    except Exception as exc:
        raise InputError(f"filter is not valid {lang}: {exc}") from None
    raise InputError(f"filter-lang {lang!r} is not supported; use cql2-text or cql2-json")


class SqliteFilter:
    """Builds ``(sql, params)`` for one filter over a table's columns."""

    def __init__(self, columns: set[str]) -> None:
        self.columns = columns
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
            self.params.append(_glob(node))
            return f"({self._value(node.lhs)} {neg}GLOB ?)"
        if isinstance(node, ast.SpatialComparisonPredicate | ast.BBox):
            raise InputError(
                "spatial CQL2 predicates are not supported on this collection yet; "
                "use the bbox parameter"
            )
        raise InputError(f"CQL2 operation {type(node).__name__} is not supported")

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


def _glob(node: ast.Like) -> str:
    # CQL2 LIKE is case-sensitive, as GLOB is; translate its wildcards, escape GLOB's own.
    out = []
    escaped = False
    for ch in node.pattern:
        if escaped:
            out.append(f"[{ch}]" if ch in "*?[" else ch)
            escaped = False
        elif ch == node.escapechar:
            escaped = True
        elif ch == node.wildcard:
            out.append("*")
        elif ch == node.singlechar or ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)
