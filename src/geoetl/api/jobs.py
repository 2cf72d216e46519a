"""The jobs API: submit, list, status, tasks, events, cancel, resubmit; workflows."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from geoetl import lifecycle
from geoetl.api.deps import PlatformDep
from geoetl.api.security import AdminDep, LevelsDep, PublisherDep, get_caller
from geoetl.auth.principal import Principal
from geoetl.engine.models import EventView, JobStatus, JobView, Page, TaskStatus, TaskView
from geoetl.engine.workflow import Workflow, validate_params
from geoetl.errors import Forbidden, InputError, NotFound, TooManyRequests
from geoetl.limits import loads
from geoetl.platform import Platform
from geoetl.publish import authorize
from geoetl.workflows.demo import DEMO_WORKFLOWS

router = APIRouter(tags=["jobs"])
MAX_OFFSET = 10_000_000


class WorkflowInfo(BaseModel):
    """A workflow that can be submitted, and the JSON Schema of its params."""

    name: str
    version: int
    description: str
    stages: list[str]
    params_schema: dict[str, Any]


def with_links(request: Request, view: JobView) -> JobView:
    """``view`` with links to itself, its tasks and events, cancel and resubmit.

    Who submitted a job is shown to that submitter and to admins only.
    """
    caller = get_caller(request)
    if not caller.is_admin and view.submitted_by != caller.name:
        view.submitted_by = None

    def link(name: str) -> str:
        return str(request.url_for(name, job_id=view.job_id))

    view.links = [
        {"rel": "self", "href": link("get_job"), "type": "application/json"},
        {"rel": "tasks", "href": link("list_tasks"), "type": "application/json"},
        {"rel": "events", "href": link("list_events"), "type": "application/json"},
        {"rel": "cancel", "href": link("cancel_job"), "method": "POST"},
        {"rel": "resubmit", "href": link("resubmit_job"), "method": "POST"},
    ]
    if view.status == JobStatus.awaiting_approval:
        view.links += [
            {"rel": "approve", "href": link("approve_job"), "method": "POST"},
            {"rel": "reject", "href": link("reject_job"), "method": "POST"},
        ]
    return view


def exposed(platform: Platform, name: str) -> bool:
    """Whether the HTTP API offers workflow ``name`` (demo ones only when enabled)."""
    return platform.settings.demo_workflows or name not in DEMO_WORKFLOWS


def exposed_workflow(platform: Platform, name: str) -> Workflow:
    """The workflow ``name``; NotFound naming the offered ones if it is not offered."""
    if exposed(platform, name) and name in platform.workflows.names():
        return platform.workflows.get(name)
    offered = [n for n in platform.workflows.names() if exposed(platform, n)]
    raise NotFound(f"no workflow {name!r}; known: {', '.join(offered)}")


def check_active_jobs(platform: Platform, caller: Principal) -> None:
    """TooManyRequests when a non-admin caller has GEOETL_MAX_ACTIVE_JOBS in flight."""
    if caller.is_admin:
        return
    limit = platform.settings.max_active_jobs
    if platform.queries.active_jobs(caller.name) >= limit:
        raise TooManyRequests(
            f"{caller.name} has {limit} queued or running jobs (GEOETL_MAX_ACTIVE_JOBS); "
            "wait for some to finish"
        )


# Counting a caller's active jobs and adding one is one step per API process, so
# simultaneous submissions cannot overshoot GEOETL_MAX_ACTIVE_JOBS together.
_SUBMIT_LOCK = threading.Lock()


def submit_as(
    platform: Platform, caller: Principal, workflow: str, params: dict[str, Any], level: str
) -> tuple[str, bool]:
    """Submit for ``caller`` within its active-job cap: ``(job_id, idempotent)``."""
    with _SUBMIT_LOCK:
        check_active_jobs(platform, caller)
        return platform.store.submit(workflow, params, submitted_by=caller.name, access_level=level)


def visible_job(platform: Platform, job_id: str, levels: list[str]) -> JobView:
    """A job the caller may see (NotFound otherwise, as for a job that does not exist)."""
    return platform.queries.job(job_id, levels)


def steerable_job(platform: Platform, job_id: str, caller: Principal, levels: list[str]) -> JobView:
    """A job the caller may cancel or resubmit: its own, or anyone's for an admin."""
    view = visible_job(platform, job_id, levels)
    if not caller.is_admin and view.submitted_by != caller.name:
        raise Forbidden(f"job {job_id} was submitted by someone else; only an admin may steer it")
    return view


@router.get("/workflows", response_model=list[WorkflowInfo])
def list_workflows(platform: PlatformDep) -> list[WorkflowInfo]:
    """Every workflow offered here, with the JSON Schema of its params. Anyone."""
    return [
        WorkflowInfo(
            name=wf.name,
            version=wf.version,
            description=wf.description,
            stages=wf.stage_names(),
            params_schema=wf.params.model_json_schema(),
        )
        for wf in platform.workflows
        if exposed(platform, wf.name)
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
    workflow: str,
    request: Request,
    response: Response,
    platform: PlatformDep,
    caller: PublisherDep,
) -> JobView:
    """Submit a job; an identical earlier submission is returned with ``idempotent: true``.

    Publishers (at or below their clearance; sources they uploaded) and admins.
    """
    wf = exposed_workflow(platform, workflow)  # 404 naming the offered ones first
    raw = await request.body()
    params = loads(raw, what="the request body") if raw.strip() else {}
    if not isinstance(params, dict):
        validate_params(wf, params)  # a ParamsError (422) that says what was expected
        raise InputError("the request body must be a JSON object of the workflow's params")
    await run_in_threadpool(check_active_jobs, platform, caller)
    params, level = await run_in_threadpool(authorize, platform, caller, wf, params)
    job_id, idempotent = await run_in_threadpool(
        submit_as, platform, caller, workflow, params, level
    )
    view = await run_in_threadpool(platform.queries.job, job_id)
    view = with_links(request, view)
    view.idempotent = idempotent
    response.headers["Location"] = str(request.url_for("get_job", job_id=job_id))
    return view


@router.get("/jobs", response_model=Page[JobView])
def list_jobs(
    request: Request,
    platform: PlatformDep,
    levels: LevelsDep,
    status: JobStatus | None = None,
    workflow: Annotated[str | None, Query(max_length=100)] = None,
    submitted_by: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[JobView]:
    """Jobs the caller may see (those publishing at its levels), newest first. Anyone."""
    page = platform.queries.jobs(
        status=status,
        workflow=workflow,
        submitted_by=submitted_by,
        access_levels=levels,
        limit=limit,
        offset=offset,
    )
    page.items = [with_links(request, v) for v in page.items]
    return page


@router.get("/jobs/{job_id}", response_model=JobView)
def get_job(job_id: str, request: Request, platform: PlatformDep, levels: LevelsDep) -> JobView:
    """A job's status, progress, result or error, timings: for who may see what it publishes."""
    return with_links(request, visible_job(platform, job_id, levels))


@router.get("/jobs/{job_id}/tasks", response_model=Page[TaskView])
def list_tasks(
    job_id: str,
    platform: PlatformDep,
    levels: LevelsDep,
    stage: Annotated[str | None, Query(max_length=100)] = None,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[TaskView]:
    """A job's tasks, in stage and index order. Anyone who may see the job."""
    return platform.queries.tasks(
        job_id, stage=stage, status=status, access_levels=levels, limit=limit, offset=offset
    )


@router.get("/jobs/{job_id}/events", response_model=list[EventView])
def list_events(
    job_id: str,
    platform: PlatformDep,
    levels: LevelsDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="Only events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 500,
) -> list[EventView]:
    """A job's append-only event log. Anyone who may see the job."""
    return platform.queries.events(job_id, after=after, limit=limit, access_levels=levels)


@router.post("/jobs/{job_id}/cancel", response_model=JobView)
def cancel_job(
    job_id: str, request: Request, platform: PlatformDep, caller: PublisherDep, levels: LevelsDep
) -> JobView:
    """Cancel an active job; 409 if it already ended. Its submitter or an admin."""
    steerable_job(platform, job_id, caller, levels)
    lifecycle.cancel(platform, job_id, actor=caller.name)
    return with_links(request, platform.queries.job(job_id))


class Decision(BaseModel):
    """An admin's approval or rejection of a job awaiting approval."""

    note: str | None = Field(
        default=None, max_length=2000, description="Why; kept in the audit log."
    )


@router.post("/jobs/{job_id}/approve", response_model=JobView)
def approve_job(
    job_id: str,
    request: Request,
    platform: PlatformDep,
    caller: AdminDep,
    levels: LevelsDep,
    decision: Decision | None = None,
) -> JobView:
    """Publish what a job awaiting approval staged; 409 unless it awaits approval. Admins."""
    visible_job(platform, job_id, levels)
    lifecycle.approve(platform, caller, job_id, decision.note if decision else None)
    return with_links(request, platform.queries.job(job_id))


@router.post("/jobs/{job_id}/reject", response_model=JobView)
def reject_job(
    job_id: str,
    request: Request,
    platform: PlatformDep,
    caller: AdminDep,
    levels: LevelsDep,
    decision: Decision | None = None,
) -> JobView:
    """End a job awaiting approval and delete what it staged; 409 otherwise. Admins."""
    visible_job(platform, job_id, levels)
    lifecycle.reject(platform, caller, job_id, decision.note if decision else None)
    return with_links(request, platform.queries.job(job_id))


@router.post("/jobs/{job_id}/resubmit", status_code=202, response_model=JobView)
def resubmit_job(
    job_id: str, request: Request, platform: PlatformDep, caller: PublisherDep, levels: LevelsDep
) -> JobView:
    """Run the job again as its next run (an active run is cancelled first).

    Its submitter or an admin.
    """
    steerable_job(platform, job_id, caller, levels)
    check_active_jobs(platform, caller)
    new_id = platform.store.resubmit(job_id, submitted_by=caller.name)
    return with_links(request, platform.queries.job(new_id))
