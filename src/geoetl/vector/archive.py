"""Moved to :mod:`geoetl.archive`, shared by the raster and vector pipelines.

The names stay importable from here; there is one implementation.
"""

from __future__ import annotations

from geoetl.archive import (
    IGNORED_PREFIXES,
    MAX_MEMBER_BYTES,
    MAX_MEMBERS,
    MAX_RATIO,
    MAX_TOTAL_BYTES,
    NESTED_ARCHIVE_SUFFIXES,
    RATIO_FLOOR_BYTES,
    check_archive,
    member_names,
    safe_extract,
)

__all__ = [
    "IGNORED_PREFIXES",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "NESTED_ARCHIVE_SUFFIXES",
    "RATIO_FLOOR_BYTES",
    "check_archive",
    "member_names",
    "safe_extract",
]
