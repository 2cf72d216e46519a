"""Column names that every backend accepts: lowercase ``[a-z0-9_]``, not reserved, unique."""

from __future__ import annotations

import re
import unicodedata

RESERVED = {
    "all", "and", "as", "asc", "between", "by", "case", "check", "column", "constraint",
    "create", "default", "delete", "desc", "distinct", "drop", "else", "end", "except",
    "false", "fid", "from", "geom", "geometry", "group", "having", "in", "index", "insert",
    "into", "is", "join", "like", "limit", "not", "null", "offset", "on", "or", "order",
    "primary", "references", "select", "table", "then", "to", "true", "union", "unique",
    "update", "user", "using", "values", "when", "where", "with",
}  # fmt: skip
MAX_LEN = 63  # PostgreSQL's identifier limit


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
