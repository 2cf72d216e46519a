"""Terminal output: job tables, a job's details, and live progress bars."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from geoetl.engine.models import JobStatus, JobView

if TYPE_CHECKING:
    from geoetl.engine.queries import JobQueries

console = Console()
err_console = Console(stderr=True)

STATUS_STYLE = {
    JobStatus.queued: "cyan",
    JobStatus.running: "yellow",
    JobStatus.awaiting_approval: "magenta",
    JobStatus.succeeded: "green",
    JobStatus.failed: "red",
    JobStatus.cancelled: "dim",
}
DONE = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}


def status_text(status: JobStatus) -> str:
    """A status word in its colour."""
    return f"[{STATUS_STYLE[status]}]{status.value}[/]"


def jobs_table(jobs: list[JobView], total: int) -> Table:
    """One line per job."""
    table = Table(title=f"{len(jobs)} of {total} jobs", title_justify="left")
    for col in ("job", "workflow", "run", "status", "stage", "progress", "created", "took"):
        table.add_column(col)
    for j in jobs:
        table.add_row(
            j.job_id[:12],
            j.workflow,
            str(j.run),
            status_text(j.status),
            j.stage or "",
            f"{j.progress.done:.1f}/{j.progress.total:.0f}",
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{j.duration_seconds:.2f}s" if j.duration_seconds is not None else "",
        )
    return table


def show_job(job: JobView) -> None:
    """A job's details: status, stages, result or error."""
    console.print(f"job      {job.job_id}")
    console.print(f"workflow {job.workflow} v{job.version}, run {job.run}")
    console.print(f"status   {status_text(job.status)}")
    if job.duration_seconds is not None:
        console.print(f"took     {job.duration_seconds:.2f}s, {job.attempts} task attempt(s)")
    table = Table(show_header=True, box=None)
    for col in ("stage", "status", "tasks", "done", "running", "failed", "attempts"):
        table.add_column(col)
    for s in job.stages:
        table.add_row(
            s.name,
            s.status,
            str(s.total),
            str(s.succeeded),
            str(s.running),
            str(s.failed),
            str(s.attempts),
        )
    console.print(table)
    if job.error:
        where = f" in stage {job.error.stage}" if job.error.stage else ""
        console.print(f"[red]error{where}:[/] {job.error.message}")
    if job.result is not None:
        console.print("result")
        console.print_json(data=job.result)


def follow(queries: JobQueries, job_id: str, done: threading.Event, *, quiet: bool) -> JobView:
    """Show a bar per stage until ``done`` is set; returns the job's final view."""
    if quiet:
        done.wait()
        return queries.job(job_id)
    columns: list[Any] = [
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    ]
    bars: dict[str, Any] = {}
    with Progress(*columns, console=err_console, transient=False) as progress:
        while True:
            finished = done.wait(0.2)
            job = queries.job(job_id)
            for stage in job.stages:
                if stage.total == 0 and stage.name not in bars:
                    continue
                if stage.name not in bars:
                    bars[stage.name] = progress.add_task(stage.name, total=stage.total, note="")
                note = ""
                if stage.progress and stage.progress.message:
                    note = stage.progress.message
                if stage.failed:
                    note = "[red]failed[/]"
                progress.update(
                    bars[stage.name], total=stage.total, completed=stage.succeeded, note=note
                )
            if finished or job.status in DONE:
                return job
