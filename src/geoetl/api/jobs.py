"""The jobs API: submit, list, status, tasks, events, cancel, resubmit; workflows."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from geoetl.api.deps import PlatformDep
from geoetl.engine.models import EventView, JobStatus, JobView, Page, TaskStatus, TaskView
from geoetl.errors import InputError

router = APIRouter(tags=["jobs"])


class WorkflowInfo(BaseModel):
    """A workflow that can be submitted, and the JSON Schema of its params."""

    name: str
    version: int
    description: str
    stages: list[str]
    params_schema: dict[str, Any]


def with_links(request: Request, view: JobView) -> JobView:
    """``view`` with links to itself, its tasks and events, cancel and resubmit."""

    def link(name: str) -> str:
        return str(request.url_for(name, job_id=view.job_id))

    view.links = [
        {"rel": "self", "href": link("get_job"), "type": "application/json"},
        {"rel": "tasks", "href": link("list_tasks"), "type": "application/json"},
        {"rel": "events", "href": link("list_events"), "type": "application/json"},
        {"rel": "cancel", "href": link("cancel_job"), "method": "POST"},
        {"rel": "resubmit", "href": link("resubmit_job"), "method": "POST"},
    ]
    return view


@router.get("/workflows", response_model=list[WorkflowInfo])
def list_workflows(platform: PlatformDep) -> list[WorkflowInfo]:
    """Every workflow, with the JSON Schema of its params."""
    return [
        WorkflowInfo(
            name=wf.name,
            version=wf.version,
            description=wf.description,
            stages=wf.stage_names(),
            params_schema=wf.params.model_json_schema(),
        )
        for wf in platform.workflows
    ]


@router.post(
    "/jobs/{workflow}",
    status_code=202,
    response_model=JobView,
    openapi_extra={
        "requestBody": {
            "description": "The workflow's params (see GET /workflows for their schema).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def submit_job(
    workflow: str, request: Request, response: Response, platform: PlatformDep
) -> JobView:
    """Submit a job; an identical earlier submission is returned with ``idempotent: true``."""
    platform.workflows.get(workflow)  # 404 naming the known workflows before reading the body
    raw = await request.body()
    try:
        params = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise InputError(f"the request body is not valid JSON: {exc}") from None
    job_id, idempotent = await run_in_threadpool(platform.store.submit, workflow, params)
    view = await run_in_threadpool(platform.queries.job, job_id)
    view = with_links(request, view)
    view.idempotent = idempotent
    response.headers["Location"] = str(request.url_for("get_job", job_id=job_id))
    return view


@router.get("/jobs", response_model=Page[JobView])
def list_jobs(
    request: Request,
    platform: PlatformDep,
    status: JobStatus | None = None,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[JobView]:
    """Jobs, newest first."""
    page = platform.queries.jobs(status=status, workflow=workflow, limit=limit, offset=offset)
    page.items = [with_links(request, v) for v in page.items]
    return page


@router.get("/jobs/{job_id}", response_model=JobView)
def get_job(job_id: str, request: Request, platform: PlatformDep) -> JobView:
    """A job's status, per-stage progress, result or error, and timings."""
    return with_links(request, platform.queries.job(job_id))


@router.get("/jobs/{job_id}/tasks", response_model=Page[TaskView])
def list_tasks(
    job_id: str,
    platform: PlatformDep,
    stage: str | None = None,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[TaskView]:
    """A job's tasks, in stage and index order."""
    return platform.queries.tasks(job_id, stage=stage, status=status, limit=limit, offset=offset)


@router.get("/jobs/{job_id}/events", response_model=list[EventView])
def list_events(
    job_id: str,
    platform: PlatformDep,
    after: Annotated[int, Query(ge=0, description="Only events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 500,
) -> list[EventView]:
    """A job's append-only event log."""
    return platform.queries.events(job_id, after=after, limit=limit)


@router.post("/jobs/{job_id}/cancel", response_model=JobView)
def cancel_job(job_id: str, request: Request, platform: PlatformDep) -> JobView:
    """Cancel an active job; 409 if it already ended."""
    platform.store.cancel(job_id)
    return with_links(request, platform.queries.job(job_id))


@router.post("/jobs/{job_id}/resubmit", status_code=202, response_model=JobView)
def resubmit_job(job_id: str, request: Request, platform: PlatformDep) -> JobView:
    """Run the job again as its next run (an active run is cancelled first)."""
    new_id = platform.store.resubmit(job_id)
    return with_links(request, platform.queries.job(new_id))
