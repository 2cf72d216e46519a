"""geoetl errors to HTTP responses, in one table; a 500 never shows internals.

A client gets ``{"code", "detail"}``: the error's kind and a message meant for it. An
unexpected failure (a bug, a database error) is logged with its traceback under a
fresh error id, and the client gets only that id to quote. A database that is away
(restarting, unreachable, busy) is a 503 with ``Retry-After``, logged once per outage.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from geoetl.engine.db import Outage, is_transient
from geoetl.engine.workflow import ParamsError
from geoetl.errors import (
    Conflict,
    Forbidden,
    GeoEtlError,
    InputError,
    NotFound,
    TooLarge,
    TooManyRequests,
    TransientError,
    Unauthorized,
)

log = logging.getLogger("geoetl.api")

STATUS_CODES: dict[type[GeoEtlError], int] = {
    ParamsError: 422,
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    Unauthorized: 401,
    TooManyRequests: 429,
    TooLarge: 413,
    InputError: 400,
    TransientError: 503,
    GeoEtlError: 500,
}


# Requests failing this far apart belong to separate outages (each logged once).
_database_outage = Outage("API", log, forget_after=30.0)
_backend_logged = [float("-inf")]  # when a backend fault was last logged (monotonic)
RETRY_AFTER_SECONDS = 5


def backend_unavailable(exc: TransientError) -> JSONResponse:
    """A 503 for a fault that may pass (object store throttling or 5xx, a network drop).

    The message may name keys or endpoints, so it goes to the log (once per outage),
    and the client gets a fixed text.
    """
    now = time.monotonic()
    if now - _backend_logged[0] > 30.0:  # one line per outage, not one per request
        log.warning("a backend is unavailable, answering 503: %s", exc)
    _backend_logged[0] = now
    return JSONResponse(
        status_code=503,
        content={
            "code": "ServiceUnavailable",
            "detail": (
                "a storage backend is unavailable right now (busy or unreachable); "
                f"try again in {RETRY_AFTER_SECONDS} seconds"
            ),
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def database_unavailable(exc: BaseException) -> JSONResponse:
    """A 503 for a request that met a database outage; the outage is logged once."""
    _database_outage.failed(exc)
    return JSONResponse(
        status_code=503,
        content={
            "code": "DatabaseUnavailable",
            "detail": (
                "the database is unavailable right now (restarting or unreachable); "
                f"try again in {RETRY_AFTER_SECONDS} seconds"
            ),
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def status_for(exc: GeoEtlError) -> int:
    """The HTTP status of ``exc``: the entry of its nearest class in STATUS_CODES."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500


def internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """A 500 with an error id; the details go to the log only."""
    error_id = uuid.uuid4().hex[:12]
    log.error(
        "error %s on %s %s",
        error_id,
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"error_id": error_id},
    )
    return JSONResponse(
        status_code=500,
        content={
            "code": "InternalError",
            "detail": f"the server failed to answer this request; quote error id {error_id}",
            "error_id": error_id,
        },
    )


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GeoEtlError)
    if isinstance(exc, TransientError):
        return backend_unavailable(exc)
    status = status_for(exc)
    if status >= 500:
        return internal_error(request, exc)
    body: dict[str, object] = {"code": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, ParamsError):
        body["errors"] = exc.errors
    headers = {"WWW-Authenticate": 'Bearer realm="geoetl"'} if status == 401 else None
    return JSONResponse(status_code=status, content=body, headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    # Query, path and header parameters that do not validate are a bad request (OGC API
    # and STAC clients expect 400); the errors name each parameter.
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
    ]
    where = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in errors
    )
    return JSONResponse(
        status_code=400,
        content=jsonable_encoder(
            {"code": "InputError", "detail": f"invalid request: {where}", "errors": errors}
        ),
    )


async def _database(request: Request, exc: Exception) -> JSONResponse:
    # Its own handler (not only the catch-all's): Starlette re-raises what reaches the
    # catch-all after answering, and the server would log a traceback per request.
    if is_transient(exc):
        return database_unavailable(exc)
    return internal_error(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_transient(exc):
        return database_unavailable(exc)
    return internal_error(request, exc)


def seal(app: FastAPI, status_codes: Mapping[type[Exception], int]) -> None:
    """Make every class a library maps to a 5xx answer as our 500 (no exception text).

    titiler's error table answers ``{"detail": str(exc)}`` for rasterio errors and for
    any ``Exception``; those messages can hold file paths.
    """
    app.add_exception_handler(Exception, _unexpected)
    for cls, status in status_codes.items():
        if status >= 500:
            app.add_exception_handler(cls, _unexpected)


def install(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""
    app.add_exception_handler(GeoEtlError, _handle)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for database_error in (sa.exc.DBAPIError, psycopg.Error, sqlite3.Error):
        app.add_exception_handler(database_error, _database)
    app.add_exception_handler(Exception, _unexpected)
