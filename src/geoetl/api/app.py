"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

import geoetl
from geoetl.api import (
    audit,
    auth,
    batches,
    errors,
    features,
    health,
    ingest,
    jobs,
    lineage,
    stac,
    tiles,
    ui,
)
from geoetl.api.middleware import EdgeMiddleware
from geoetl.api.security import resolve_caller
from geoetl.engine.workflow import Registry
from geoetl.platform import Platform
from geoetl.settings import Settings

STATIC = Path(__file__).parent / "static"
"""Web assets shipped with geoetl (Leaflet, Proj4js): pages work without internet."""


def create_app(settings: Settings | None = None, workflows: Registry | None = None) -> FastAPI:
    """The geoetl web app; the platform is built at startup and closed at shutdown."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.platform = Platform.from_settings(settings, workflows)
        if settings.oidc_issuer:
            from geoetl.auth.oidc import OidcVerifier

            app.state.oidc = OidcVerifier(settings)
        try:
            yield
        finally:
            app.state.platform.close()

    app = FastAPI(
        title="geoetl",
        version=geoetl.__version__,
        description="Geospatial files in, published services out: jobs, features, tiles, STAC.",
        lifespan=lifespan,
        # Credentials are checked on every route: bad ones are a 401 even where anyone
        # may read, never a silent fall-back to anonymous.
        dependencies=[Depends(resolve_caller)],
    )
    errors.install(app)
    app.add_middleware(
        EdgeMiddleware,
        trusted_proxies=settings.trusted_proxies,
        max_body_kb=settings.max_body_kb,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Requests are matched against the routes in order: the searches and feature pages
    # that clients send most come first (their paths are no other router's).
    app.include_router(stac.router)
    app.include_router(features.router)
    app.include_router(auth.router)
    app.include_router(audit.router)
    app.include_router(lineage.router)
    app.include_router(batches.router)
    app.include_router(jobs.router)
    app.include_router(ingest.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    tiles.install(app)
    from titiler.core.errors import DEFAULT_STATUS_CODES

    errors.seal(app, DEFAULT_STATUS_CODES)
    return app
