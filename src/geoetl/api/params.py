"""Request parameters both APIs share, parsed one way: ``bbox`` and ``datetime``.

``datetime`` takes RFC 3339 instants and intervals, for OGC API - Features and the
STAC API alike.

Who is calling and what they see is :mod:`geoetl.api.security`; links follow the
request as :class:`geoetl.api.middleware.EdgeMiddleware` left it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from geoetl.errors import InputError

RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp (time zone required); InputError otherwise."""
    match = RFC3339.match(value.strip())
    if not match:
        raise InputError(
            f"{value!r} is not an RFC 3339 date-time such as 2020-01-31T12:00:00Z "
            "(a time and a time zone are required)"
        )
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    except ValueError as exc:
        raise InputError(f"{value!r} is not a valid date-time: {exc}") from None
    if zone.upper() == "Z":
        return when.replace(tzinfo=UTC)
    return datetime.fromisoformat(when.isoformat() + zone).astimezone(UTC)


def parse_datetime(value: str | None) -> tuple[datetime | None, datetime | None]:
    """``datetime`` as (start, end): an instant, ``a/b``, ``../b``, ``a/..``, ``/b``, ``a/``."""
    if value is None or not value.strip():
        return None, None
    parts = value.split("/")
    if len(parts) == 1:
        when = parse_rfc3339(parts[0])
        return when, when
    if len(parts) != 2:
        raise InputError(f"datetime {value!r} must be one date-time or an interval a/b")
    start = None if parts[0] in ("", "..") else parse_rfc3339(parts[0])
    end = None if parts[1] in ("", "..") else parse_rfc3339(parts[1])
    if start is None and end is None:
        raise InputError(f"datetime interval {value!r} needs at least one end")
    if start and end and start > end:
        raise InputError(f"datetime interval {value!r} ends before it starts")
    return start, end


def parse_bbox(values: list[float]) -> tuple[float, float, float, float]:
    """A 4- or 6-number bbox as (minx, miny, maxx, maxy)."""
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    if len(values) != 4:
        raise InputError("bbox must have 4 (or 6) numbers: minx,miny,maxx,maxy")
    minx, miny, maxx, maxy = values
    if not (-90 <= miny <= maxy <= 90) or not (-180 <= minx <= 180 and -180 <= maxx <= 180):
        raise InputError(
            "bbox must be minx,miny,maxx,maxy in degrees with miny ≤ maxy "
            "(minx > maxx crosses the antimeridian)"
        )
    return minx, miny, maxx, maxy


def parse_bbox_text(value: str) -> tuple[float, float, float, float]:
    """``bbox`` as query text: 4 or 6 comma-separated numbers."""
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise InputError(f"bbox {value!r} must be comma-separated numbers") from None
    return parse_bbox(numbers)
