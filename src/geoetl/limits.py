"""Caps on what a caller controls: JSON nesting, CQL2 filter depth and size, key counts.

Parsers recurse: a JSON document or a CQL2 filter nested a thousand deep exhausts the
interpreter's stack before any other check runs. These checks scan the text first,
without recursion, and say what is too big and which setting raises the limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

from geoetl.errors import InputError

HARD_MAX_DEPTH = 100
"""Deepest nesting any parser here is ever handed, whatever the settings say."""

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = set(_OPEN.values())


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of ``text``, outside quoted strings (' or ")."""
    depth = deepest = 0
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
        elif ch in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
    return deepest


def loads(text: str | bytes, *, what: str = "the request body", max_depth: int = 64) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (InputError)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{what} is not UTF-8 text") from None
    if nesting_depth(text) > min(max_depth, HARD_MAX_DEPTH):
        raise InputError(f"{what} is nested deeper than {min(max_depth, HARD_MAX_DEPTH)} levels")
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def _json_shape(value: Any) -> tuple[int, int]:
    # (depth, terms) of a decoded JSON value, without recursion; terms counts every
    # object, list element and scalar, so a 100,000-element IN list is 100,000 terms.
    deepest = terms = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        terms += 1
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest, terms


def _text_terms(text: str) -> int:
    # Operands and operators of a CQL2 text filter: words, numbers, quoted strings and
    # punctuation groups, outside strings, counted without parsing.
    count = 0
    quote: str | None = None
    in_token = False
    for ch in text:
        if quote is not None:
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
            count += 1
            in_token = False
        elif ch.isspace() or ch in "(),":
            in_token = False
        elif not in_token:
            count += 1
            in_token = True
    return count


def check_filter(value: str | dict[str, Any], *, max_depth: int, max_terms: int) -> None:
    """InputError when a CQL2 filter (text, JSON text or JSON) is too deep or too big."""
    depth_limit = min(max_depth, HARD_MAX_DEPTH)
    if isinstance(value, str):
        depth = nesting_depth(value)
        # JSON text is counted once decoded; CQL2 text by its tokens (three per term).
        stripped = value.lstrip()
        if stripped.startswith(("{", "[")) and depth <= depth_limit:
            try:
                depth, terms = _json_shape(json.loads(value))
                terms //= 3
            except ValueError:
                terms = _text_terms(value) // 3
        else:
            terms = _text_terms(value) // 3
    else:
        depth, terms = _json_shape(value)
        terms //= 3
    if depth > depth_limit:
        raise InputError(
            f"the filter is nested {depth} levels deep; at most {depth_limit} are allowed "
            "(GEOETL_MAX_FILTER_DEPTH)"
        )
    if terms > max_terms:
        raise InputError(
            f"the filter has about {terms} terms; at most {max_terms} are allowed "
            "(GEOETL_MAX_FILTER_TERMS)"
        )


def check_count(what: str, count: int, limit: int, setting: str) -> None:
    """InputError when a caller asks for more ``what`` than ``limit``."""
    if count > limit:
        raise InputError(f"{count} {what} given; at most {limit} are allowed ({setting})")
