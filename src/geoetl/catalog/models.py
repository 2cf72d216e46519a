"""Catalog requests and constants shared by every catalog backend."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from geoetl.errors import InputError

AccessLevel = Literal["public", "ouo", "restricted"]
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


class SearchRequest(BaseModel):
    """Item search: the subset every backend answers (pgSTAC's search does the same)."""

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    access_levels: list[AccessLevel] | None = None
    limit: int = Field(default=10, ge=1, le=10_000)
    offset: int = Field(default=0, ge=0)

    @field_validator("bbox")
    @classmethod
    def _ordered(
        cls, v: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if v is not None and (v[0] > v[2] or v[1] > v[3]):
            raise ValueError("bbox must be minx, miny, maxx, maxy")
        return v
