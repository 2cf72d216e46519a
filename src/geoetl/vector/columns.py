"""Column names that every backend accepts: lowercase ``[a-z0-9_]``, not reserved, unique."""

from __future__ import annotations

import re
import unicodedata

from geoetl.errors import InputError

RESERVED = {
    "all", "and", "as", "asc", "between", "by", "case", "check", "column", "constraint",
    "create", "default", "delete", "desc", "distinct", "drop", "else", "end", "except",
    "false", "fid", "from", "geom", "geometry", "group", "having", "in", "index", "insert",
    "into", "is", "join", "like", "limit", "not", "null", "offset", "on", "or", "order",
    "primary", "references", "select", "table", "then", "to", "true", "union", "unique",
    "update", "user", "using", "values", "when", "where", "with",
}  # fmt: skip
MAX_LEN = 63  # PostgreSQL's identifier limit
# The most attribute columns a layer may have. GDAL's CSV driver silently keeps the
# first 2,000 of a wider file; SQLite (GeoPackage) stops at 2,000 columns.
MAX_COLUMNS = 1_000


def check_column_count(count: int, what: str) -> None:
    """InputError when ``what`` (a file or layer) has more than :data:`MAX_COLUMNS` columns."""
    if count > MAX_COLUMNS:
        raise InputError(
            f"{what} has {count:,} columns; geoetl accepts at most {MAX_COLUMNS:,} per "
            "layer — drop the columns you do not need (or split the table) and upload it again"
        )


def index_columns(requested: list[str], columns: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """Per layer, the stored names of the columns to index.

    ``requested`` holds original or stored (sanitized) names; ``columns`` maps each
    layer's original names to stored ones. A name that is no column of any layer is an
    InputError listing the valid ones, so only real column names ever reach SQL; a
    layer without the column is not indexed on it.
    """
    known = {name for mapping in columns.values() for item in mapping.items() for name in item}
    unknown = [c for c in requested if c not in known]
    if unknown:
        stored = sorted({s for mapping in columns.values() for s in mapping.values()})
        shown = ", ".join(stored[:100]) + (
            f", … ({len(stored)} in all)" if len(stored) > 100 else ""
        )
        raise InputError(
            f"index_columns {', '.join(repr(c[:60]) for c in unknown)} "
            f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of this dataset; "
            f"valid columns: {shown or 'none'}"
        )
    out: dict[str, list[str]] = {}
    for layer, mapping in columns.items():
        stored_names = set(mapping.values())
        chosen = [mapping.get(c, c) for c in requested if c in mapping or c in stored_names]
        out[layer] = list(dict.fromkeys(chosen))
    return out


def sanitize_columns(names: list[str]) -> dict[str, str]:
    """Map each original name to a safe, unique stored name (order kept)."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for original in names:
        ascii_name = (
            unicodedata.normalize("NFKD", original).encode("ascii", "ignore").decode("ascii")
        )
        name = re.sub(r"[^a-z0-9_]+", "_", ascii_name.lower()).strip("_") or "column"
        if name[0].isdigit():
            name = f"c_{name}"
        if name in RESERVED:
            name = f"{name}_"
        name = name[:MAX_LEN]
        candidate, n = name, 2
        while candidate in taken:
            suffix = f"_{n}"
            candidate = name[: MAX_LEN - len(suffix)] + suffix
            n += 1
        taken.add(candidate)
        mapping[original] = candidate
    return mapping
