"""Liveness, readiness and a health report."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

import geoetl
from geoetl.api.deps import PlatformDep
from geoetl.api.security import CallerDep
from geoetl.engine.db import Outage, is_transient
from geoetl.engine.janitor import META_KEY
from geoetl.errors import TransientError

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


# Probes poll every few seconds: an outage is logged once, not a traceback per probe.
_DB_OUTAGE = Outage("readiness", log, forget_after=60.0)


@router.get("/livez")
def livez() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _checks(platform: PlatformDep) -> dict[str, str]:
    # Failures are logged with their details; callers see only "error".
    checks: dict[str, str] = {}
    try:
        platform.store.ping()
        checks["database"] = "ok"
        _DB_OUTAGE.ended()
    except Exception as exc:
        if is_transient(exc):  # an outage: one warning when it starts, one when it ends
            _DB_OUTAGE.failed(exc)
        else:
            log.exception("readiness: the database is unreachable")
        checks["database"] = "error"
    objects = platform.objects
    try:
        reachable = objects.ping()  # the bucket or container answers; an empty prefix is fine
        if not reachable:
            log.error("readiness: storage %s does not exist", objects.url)
        checks["storage"] = "ok" if reachable else "error"
    except TransientError as exc:
        log.warning("readiness: the storage is unreachable: %s", exc)
        checks["storage"] = "error"
    except Exception:
        log.exception("readiness: the storage is unreachable")
        checks["storage"] = "error"
    return checks


@router.get("/readyz")
def readyz(platform: PlatformDep) -> JSONResponse:
    """The database and storage are reachable (503 otherwise)."""
    checks = _checks(platform)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        status_code=200 if ok else 503, content={"status": "ok" if ok else "error", **checks}
    )


@router.get("/health")
def health(platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    """Status and version for anyone; backends, queues and the janitor for admins."""
    checks = _checks(platform)
    engine = platform.store.engine
    summary = {
        "status": "ok" if all(v == "ok" for v in checks.values()) else "error",
        "version": geoetl.__version__,
        "checks": checks,
    }
    if not caller.is_admin:
        return summary
    return {
        **summary,
        "backends": {
            "database": engine.dialect.name,
            "database_url": engine.url.render_as_string(hide_password=True),
            "storage": platform.settings.storage_url,
            "executor": platform.settings.executor,
        },
        "workflows": platform.workflows.names(),
        "queues": platform.queries.counts(),
        "janitor": platform.store.get_meta(META_KEY),
    }
