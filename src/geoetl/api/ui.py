"""``/ui``: the web console — upload, follow jobs, browse the catalog, look at the data.

Server-rendered page shells (Jinja2 templates in ``templates/ui/``) with small plain
scripts in ``static/ui/`` that call the JSON API. The caller's token lives in the
browser's ``sessionStorage`` and goes out as ``Authorization: Bearer`` on the scripts'
``fetch`` calls only: no cookie carries credentials, so there is nothing to forge
across sites (no CSRF), and every read and write is decided by the API's own routes
and role checks. The pages themselves render nothing above the public level: what a
caller may see is fetched by the scripts with its token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from geoetl.api.stac import root_href
from geoetl.engine.models import JobStatus
from geoetl.ingest import RASTER_SUFFIXES

router = APIRouter(prefix="/ui", tags=["web console"], include_in_schema=False)
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates" / "ui")

# /ingest's query options: the upload form offers those of the workflow's params schema.
INGEST_OPTIONS = [
    "collection_id",
    "item_id",
    "dataset_id",
    "layer",
    "output_tier",
    "target_crs",
    "input_crs",
    "raster_type",
    "variable",
    "time_as",
    "jpeg_quality",
    "strict_mode",
    "keep_z",
    "csv_lat",
    "csv_lon",
    "csv_wkt",
    "access_level",
    "replace",
]


def _render(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
    page: dict[str, Any] = {
        "root": root_href(request),
        # Country outlines under the maps (Natural Earth 1:110m, public domain): a
        # background that needs no tile server and works offline.
        "world": str(request.url_for("static", path="ui/world.geojson")),
        **context,
    }
    return TEMPLATES.TemplateResponse(
        request, template, {"title": title, "page": page, "nav": template}
    )


@router.get("", response_class=HTMLResponse, name="ui_home")
def home(request: Request) -> HTMLResponse:
    """The console's start page."""
    return _render(request, "home.html", "Console")


@router.get("/signin", response_class=HTMLResponse, name="ui_signin")
def signin(request: Request) -> HTMLResponse:
    """Paste a token (kept in this browser tab's sessionStorage only)."""
    return _render(request, "signin.html", "Sign in")


@router.get("/upload", response_class=HTMLResponse, name="ui_upload")
def upload(request: Request) -> HTMLResponse:
    """Drop files, fill the workflow's options, submit."""
    return _render(
        request,
        "upload.html",
        "Upload",
        options=INGEST_OPTIONS,
        raster_suffixes=sorted(RASTER_SUFFIXES),
    )


@router.get("/jobs", response_class=HTMLResponse, name="ui_jobs")
def jobs(request: Request) -> HTMLResponse:
    """Jobs, live."""
    return _render(request, "jobs.html", "Jobs", statuses=[s.value for s in JobStatus])


@router.get("/jobs/{job_id}", response_class=HTMLResponse, name="ui_job")
def job(job_id: str, request: Request) -> HTMLResponse:
    """One job: stages, tasks, events, error, outputs."""
    return _render(request, "job.html", f"Job {job_id[:12]}", job_id=job_id)


@router.get("/catalog", response_class=HTMLResponse, name="ui_catalog")
def catalog(request: Request) -> HTMLResponse:
    """Collections and item search."""
    return _render(request, "catalog.html", "Catalog")


@router.get("/items/{collection_id}/{item_id}", response_class=HTMLResponse, name="ui_item")
def item(collection_id: str, item_id: str, request: Request) -> HTMLResponse:
    """One item: the data on a map, metadata, downloads and API URLs."""
    return _render(
        request,
        "item.html",
        f"{item_id} ({collection_id})",
        collection_id=collection_id,
        item_id=item_id,
    )
