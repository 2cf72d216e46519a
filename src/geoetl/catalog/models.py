"""Catalog requests and constants shared by every catalog backend."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from geoetl.errors import InputError

AccessLevel = Literal["public", "ouo", "restricted"]
ACCESS_ORDER: tuple[AccessLevel, ...] = ("public", "ouo", "restricted")
SYSTEM_COLLECTIONS = {
    "system-rasters": "Every raster geoetl has published.",
    "system-vectors": "Every vector dataset geoetl has published.",
}


def normalize_access_level(value: str) -> AccessLevel:
    """Case-insensitive access level, stored lowercase; InputError for anything else."""
    lowered = value.strip().lower()
    if lowered not in ("public", "ouo", "restricted"):
        raise InputError(f"access_level {value!r} is not one of public, ouo, restricted")
    return lowered  # type: ignore[return-value]


def visible_levels(audience: str) -> list[AccessLevel]:
    """The access levels an audience may see: its own and every less sensitive one."""
    level = normalize_access_level(audience)
    return list(ACCESS_ORDER[: ACCESS_ORDER.index(level) + 1])


class SortKey(BaseModel):
    """One ``sortby`` key: ``id``, ``collection``, ``datetime`` or an item property."""

    field: str
    direction: Literal["asc", "desc"] = "asc"


class SearchRequest(BaseModel):
    """Item search: what a STAC API search body asks (pgSTAC's ``search()`` takes the same).

    ``filter`` is CQL2 (JSON object, or text with ``filter_lang="cql2-text"``);
    ``access_levels`` limits results to what the audience may see (None: everything).
    """

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    intersects: dict[str, Any] | None = None
    start: datetime | None = None
    end: datetime | None = None
    filter: dict[str, Any] | str | None = None
    filter_lang: Literal["cql2-text", "cql2-json"] | None = None
    sortby: list[SortKey] | None = None
    access_levels: list[AccessLevel] | None = None
    limit: int = Field(default=10, ge=1, le=10_000)
    offset: int = Field(default=0, ge=0)
    count: bool = True

    @field_validator("bbox")
    @classmethod
    def _ordered(
        cls, v: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if v is not None and v[1] > v[3]:
            raise ValueError("bbox must be minx, miny, maxx, maxy (miny above maxy)")
        return v
