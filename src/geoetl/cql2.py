"""CQL2 for both APIs: parsing (text or JSON) and what its geometry literals mean.

pygeofilter parses; the two translators (:mod:`geoetl.catalog.filters` for STAC
search, :mod:`geoetl.features.cql` for OGC API - Features) walk its tree. What they
share lives here, so a filter means the same in both: the parser with its size
limits, and geometry literals — WKT/GeoJSON geometries, CQL2-JSON ``{"bbox": [...]}``
and CQL2-text ``BBOX(minx, miny, maxx, maxy)`` — as shapely geometries.
"""

from __future__ import annotations

from typing import Any

import shapely
import shapely.geometry
from pygeofilter import ast, values
from shapely.geometry.base import BaseGeometry

from geoetl.errors import InputError
from geoetl.limits import HARD_MAX_DEPTH, check_filter, loads

LANGS = ("cql2-text", "cql2-json")


def parse(value: str | dict[str, Any], lang: str | None = None) -> ast.Node:
    """A parsed CQL2 filter; InputError that says what is wrong with it.

    ``lang`` defaults to cql2-json for an object and cql2-text for a string.
    """
    lang = lang or ("cql2-json" if isinstance(value, dict) else "cql2-text")
    if lang not in LANGS:
        raise InputError(f"filter-lang {lang!r} is not supported; use cql2-text or cql2-json")
    # A backstop for callers that did not check with their own settings: the parsers
    # recurse, and a deeply nested filter would exhaust the stack.
    check_filter(value, max_depth=HARD_MAX_DEPTH, max_terms=100_000)
    # The parsers build their grammars on import: only requests with a filter pay.
    from pygeofilter.parsers.cql2_json import parse as parse_json
    from pygeofilter.parsers.cql2_text import parse as parse_text

    try:
        if lang == "cql2-json":
            doc = loads(value, what="the filter") if isinstance(value, str) else value
            node: ast.Node = parse_json(doc)
            return node
        if not isinstance(value, str):
            raise InputError("a cql2-text filter must be a string")
        node = parse_text(value)
        return node
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"filter is not valid {lang}: {exc}") from None


def geometry_literal(node: Any) -> BaseGeometry:
    """A shapely geometry from a spatial predicate's literal; InputError otherwise."""
    try:
        if isinstance(node, values.Geometry):
            geom: BaseGeometry = shapely.geometry.shape(plain_geojson(node.geometry))
            return geom
        if isinstance(node, values.Envelope):
            # pygeofilter's CQL2-JSON parser builds Envelope(*bbox): its x1, x2, y1, y2
            # hold minx, miny, maxx, maxy, in the order the bbox gives them.
            return shapely.box(float(node.x1), float(node.x2), float(node.y1), float(node.y2))
        if isinstance(node, ast.Function) and node.name.lower() == "bbox":
            args = [float(a) for a in node.arguments]
            if len(args) == 6:  # minx, miny, minz, maxx, maxy, maxz
                args = [args[0], args[1], args[3], args[4]]
            if len(args) == 4:
                return shapely.box(args[0], args[1], args[2], args[3])
    except (TypeError, ValueError, shapely.errors.ShapelyError) as exc:
        raise InputError(f"invalid geometry in a spatial predicate: {exc}") from None
    raise InputError(
        f"a spatial predicate needs a geometry literal (WKT or GeoJSON) or a BBOX, not {node!r}"
    )


def plain_geojson(value: Any) -> Any:
    """GeoJSON with lists for tuples (pygeofilter hands coordinates as nested tuples)."""
    if isinstance(value, dict):
        return {k: plain_geojson(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_geojson(v) for v in value]
    return value
