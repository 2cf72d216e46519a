"""FastAPI dependencies: the platform lives on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from geoetl.platform import Platform


async def get_platform(request: Request) -> Platform:
    """The platform built at startup (no I/O: resolved on the event loop, no thread)."""
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]
