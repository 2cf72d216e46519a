"""Liveness, readiness and a health report."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

import geoetl
from geoetl.api.deps import PlatformDep
from geoetl.engine.janitor import META_KEY

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _checks(platform: PlatformDep) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with platform.store.read() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}: {exc}"
    objects = platform.objects
    try:
        reachable = bool(objects.fs.exists(objects.root))
        checks["storage"] = "ok" if reachable else f"error: {objects.url} does not exist"
    except Exception as exc:
        checks["storage"] = f"error: {type(exc).__name__}: {exc}"
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
def health(platform: PlatformDep) -> dict[str, Any]:
    """Versions, backends, queue depths and the janitor's last run."""
    checks = _checks(platform)
    engine = platform.store.engine
    return {
        "status": "ok" if all(v == "ok" for v in checks.values()) else "error",
        "version": geoetl.__version__,
        "checks": checks,
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
