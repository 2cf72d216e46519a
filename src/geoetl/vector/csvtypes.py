"""Column types of a CSV: detected over the whole file once, applied to every chunk.

GDAL's CSV driver reads every column as text. Its own ``AUTODETECT_TYPE`` looks at the
first megabyte (a later value that does not fit is emptied with a warning) or, with
``AUTODETECT_SIZE_LIMIT=0``, reads the whole file into memory on every open — once per
chunk here. Instead the inspect stage streams the layer's text columns once
(:func:`detect_types`) and each chunk converts its slice (:func:`apply_types`) with the
same rules, so every chunk has the same schema and no value is lost or altered:

- ``integer``: digits with an optional sign that fit in 64 bits, no leading zero
  (``01234`` is a code, kept as text);
- ``real``: decimal or exponent notation, finite, no leading zero before other digits
  (a whole number must fit in 64 bits — longer digit strings are identifiers);
- ``boolean``: ``true``/``false`` in any case;
- ``date``: ``YYYY-MM-DD``, a real calendar day;
- ``datetime``: ``YYYY-MM-DD[T ]HH:MM[:SS[.fff]]`` without an offset;
- ``datetime_utc``: the same with ``Z`` or ``±HH[:MM]`` on every value, stored in UTC;
- anything else, or a column without a value, stays ``string``.

Surrounding blanks are ignored and an empty value is missing (null) in a typed column.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from geoetl.errors import InputError

STRING = "string"
# Most specific first; a column keeps the types every value so far fits.
TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "real": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("ms"),
    "datetime_utc": pa.timestamp("ms", tz="UTC"),
}
_INTEGER = r"^[+-]?[0-9]+$"
_LEADING_ZERO = r"^[+-]?0[0-9]"
_REAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = r"[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,3})?)?"
_OFFSET = r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
_PATTERNS = {
    "date": _DATE + "$",
    "datetime": _DATE + _TIME + "$",
    "datetime_utc": _DATE + _TIME + _OFFSET,
}


def _is_text(field: pa.Field) -> bool:
    return bool(pa.types.is_string(field.type) or pa.types.is_large_string(field.type))


def _values(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Trimmed text with empty values as nulls."""
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)


def _all(mask: pa.Array | pa.ChunkedArray) -> bool:
    return bool(pc.all(mask).as_py())


def _any(mask: pa.Array | pa.ChunkedArray) -> bool:
    return bool(pc.any(mask).as_py())


def _cast(values: pa.Array | pa.ChunkedArray, kind: str) -> pa.Array | pa.ChunkedArray:
    if kind == "integer":
        values = pc.replace_substring_regex(values, r"^\+", "")
    elif kind == "boolean":
        values = pc.utf8_lower(values)
    return pc.cast(values, TYPES[kind])


def _fits(values: pa.Array | pa.ChunkedArray, kind: str) -> bool:
    """Every value of ``values`` (non-null, trimmed) is a ``kind``."""
    if kind in ("integer", "real"):
        if _any(pc.match_substring_regex(values, _LEADING_ZERO)):
            return False
        whole = pc.match_substring_regex(values, _INTEGER)
        if kind == "integer" and not _all(whole):
            return False
        if kind == "real":
            if not _all(pc.match_substring_regex(values, _REAL)):
                return False
            if _any(whole) and not _fits(pc.filter(values, whole), "integer"):
                return False  # a digit string longer than 64 bits is an identifier
    elif kind == "boolean":
        return _all(pc.is_in(pc.utf8_lower(values), pa.array(["true", "false"])))
    elif not _all(pc.match_substring_regex(values, _PATTERNS[kind])):
        return False
    try:
        cast = _cast(values, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return kind != "real" or _all(pc.is_finite(cast))


def detect_types(batches: Iterable[pa.RecordBatch]) -> dict[str, str]:
    """The type of every text column of ``batches``: a :data:`TYPES` key or :data:`STRING`.

    Columns of other Arrow types are left out.
    """
    candidates: dict[str, list[str]] = {}
    seen: set[str] = set()
    for batch in batches:
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if not _is_text(field):
                continue
            left = candidates.setdefault(field.name, list(TYPES))
            if not left:
                continue
            values = pc.drop_null(_values(column))
            if not len(values):
                continue
            seen.add(field.name)
            left[:] = [kind for kind in left if _fits(values, kind)]
    return {name: left[0] if left and name in seen else STRING for name, left in candidates.items()}


def apply_types(table: pa.Table, types: dict[str, str]) -> pa.Table:
    """``table`` with its text columns converted to the detected ``types``."""
    for name, kind in types.items():
        if kind == STRING or name not in table.column_names:
            continue
        i = table.column_names.index(name)
        if not _is_text(table.schema.field(i)):
            continue
        try:
            converted = _cast(_values(table.column(i)), kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            # Types come from the whole (immutable) file: this means it changed.
            raise InputError(f"column {name!r} no longer holds {kind} values ({exc})") from None
        table = table.set_column(i, pa.field(name, TYPES[kind]), converted)
    return table
