"""``geoetl jobs``: list, show, events, cancel, resubmit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from geoetl.cli.render import console, jobs_table, show_job, status_text
from geoetl.cli.state import get_state
from geoetl.engine.models import JobStatus

if TYPE_CHECKING:
    from geoetl.engine.queries import JobQueries

app = typer.Typer(help="Follow and steer jobs.", no_args_is_help=True)

JobRef = Annotated[str, typer.Argument(help="Job id, or a unique prefix of it.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]


def resolve_job_id(queries: JobQueries, ref: str) -> str:
    """The full job id for ``ref`` (an id or a unique prefix)."""
    from geoetl.engine.queries import resolve_job_id as resolve

    return resolve(queries, ref)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: AsJson = False,
) -> None:
    """Jobs, newest first."""
    page = get_state(ctx).platform.queries.jobs(
        status=status, workflow=workflow, limit=limit, offset=offset
    )
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
    else:
        console.print(jobs_table(page.items, page.total))


@app.command()
def show(ctx: typer.Context, job: JobRef, as_json: AsJson = False) -> None:
    """A job's status, stages, result or error."""
    queries = get_state(ctx).platform.queries
    view = queries.job(resolve_job_id(queries, job))
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
    else:
        show_job(view)


@app.command()
def events(
    ctx: typer.Context,
    job: JobRef,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    as_json: AsJson = False,
) -> None:
    """A job's event log."""
    queries = get_state(ctx).platform.queries
    job_id = resolve_job_id(queries, job)
    after = 0
    while True:
        batch = queries.events(job_id, after=after)
        for e in batch:
            if as_json:
                typer.echo(e.model_dump_json())
            else:
                task = f" {e.task_id}" if e.task_id else ""
                console.print(
                    f"{e.at:%H:%M:%S.%f}"[:-3] + f" {e.kind:<16}{task} {e.message}",
                    highlight=False,
                    soft_wrap=True,
                )
            after = e.id
        if not follow:
            return
        if not batch and queries.job(job_id).status not in (
            JobStatus.queued,
            JobStatus.running,
            JobStatus.awaiting_approval,
        ):
            return
        time.sleep(0.5)


@app.command()
def cancel(ctx: typer.Context, job: JobRef) -> None:
    """Cancel an active job."""
    from geoetl import lifecycle

    platform = get_state(ctx).platform
    job_id = resolve_job_id(platform.queries, job)
    lifecycle.cancel(platform, job_id, actor="local")
    console.print(f"{job_id} {status_text(platform.store.job_status(job_id))}")


@app.command()
def resubmit(
    ctx: typer.Context,
    job: JobRef,
    wait: Annotated[bool, typer.Option(help="Run the new run here until it ends.")] = False,
    as_json: AsJson = False,
) -> None:
    """Run a job again as its next run."""
    from geoetl.cli.main import finish, run_in_process

    state = get_state(ctx)
    new_id = state.platform.store.resubmit(resolve_job_id(state.platform.queries, job))
    if wait:
        view = run_in_process(state, new_id, quiet=as_json)
        view.idempotent = False  # a new run, always
        finish(view, as_json=as_json)
        return
    view = state.platform.queries.job(new_id)
    view.idempotent = False
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
    else:
        console.print(f"{new_id} run {view.run} {status_text(view.status)}")


Note = Annotated[str | None, typer.Option("--note", help="Why; kept in the audit log.")]


@app.command()
def approve(
    ctx: typer.Context,
    job: JobRef,
    note: Note = None,
    wait: Annotated[bool, typer.Option(help="Run the publication here until it ends.")] = False,
) -> None:
    """Publish what a job awaiting approval staged (acts as the local admin)."""
    from geoetl import lifecycle
    from geoetl.auth.principal import LOCAL_ADMIN

    state = get_state(ctx)
    job_id = resolve_job_id(state.platform.queries, job)
    lifecycle.approve(state.platform, LOCAL_ADMIN, job_id, note)
    if wait:
        from geoetl.cli.main import finish, run_in_process

        finish(run_in_process(state, job_id, quiet=False), as_json=False)
        return
    console.print(f"{job_id} approved: {status_text(state.platform.store.job_status(job_id))}")


@app.command()
def reject(ctx: typer.Context, job: JobRef, note: Note = None) -> None:
    """Refuse a job awaiting approval: it ends and what it staged is deleted."""
    from geoetl import lifecycle
    from geoetl.auth.principal import LOCAL_ADMIN

    platform = get_state(ctx).platform
    job_id = resolve_job_id(platform.queries, job)
    lifecycle.reject(platform, LOCAL_ADMIN, job_id, note)
    console.print(f"{job_id} rejected: its staged outputs were deleted")
