"""Lineage routes: where a dataset version came from, and what a source became.

Anyone may ask about what they may see: records above the caller's levels are left
out (404 when none is left), and versions awaiting approval show to admins only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from geoetl import lineage
from geoetl.api.deps import PlatformDep
from geoetl.api.security import caller_levels, get_caller

router = APIRouter(tags=["lineage"])


@router.get("/lineage", name="lineage")
def trace(
    request: Request,
    platform: PlatformDep,
    of: Annotated[
        str,
        Query(
            max_length=1100,
            description=(
                "A source (bronze/… key or its SHA-256): what was made from it; an output "
                "(silver/… key) or a dataset (collection/item[@vN]): what it was made from."
            ),
        ),
    ],
) -> dict[str, Any]:
    """Lineage records of a source, an output or a dataset."""
    return lineage.trace(platform, of, caller_levels(request), drafts=get_caller(request).is_admin)


@router.get("/lineage/{collection_id}/{item_id}", name="item_lineage")
def item_lineage(
    collection_id: str,
    item_id: str,
    request: Request,
    platform: PlatformDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> dict[str, Any]:
    """Lineage of a dataset's versions (or one: ``?version=N``); STAC's derived_from."""
    what = f"{collection_id}/{item_id}" + (f"@v{version}" if version else "")
    return lineage.trace(
        platform, what, caller_levels(request), drafts=get_caller(request).is_admin
    )
