"""geoetl errors to HTTP responses, in one table."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from geoetl.engine.workflow import ParamsError
from geoetl.errors import Conflict, Forbidden, GeoEtlError, InputError, NotFound, TooLarge

STATUS_CODES: dict[type[GeoEtlError], int] = {
    ParamsError: 422,
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    TooLarge: 413,
    InputError: 400,
    GeoEtlError: 500,
}


def status_for(exc: GeoEtlError) -> int:
    """The HTTP status of ``exc``: the entry of its nearest class in STATUS_CODES."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GeoEtlError)
    body: dict[str, object] = {"code": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, ParamsError):
        body["errors"] = exc.errors
    return JSONResponse(status_code=status_for(exc), content=body)


def install(app: FastAPI) -> None:
    """Register the error handler on ``app``."""
    app.add_exception_handler(GeoEtlError, _handle)
