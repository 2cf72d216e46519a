"""Landing-zone batches over HTTP: each file of a batch, its job and its status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from geoetl.api.deps import PlatformDep
from geoetl.api.security import PublisherDep, caller_levels
from geoetl.landing import batch_view

router = APIRouter(tags=["batches"])


@router.get("/batches/{batch_id}", name="get_batch")
def get_batch(
    batch_id: str, request: Request, platform: PlatformDep, caller: PublisherDep
) -> dict[str, Any]:
    """A batch: the manifest's problems and each file's job and status (publishers).

    Jobs above the caller's levels show as ``hidden``.
    """
    return batch_view(platform, platform.batches.get(batch_id), caller_levels(request))
