"""Terminal output: job tables, a job's details, and live progress bars."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
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
# Job ids as tables show them: a prefix `geoetl jobs show` accepts (6+ characters).
JOB_ID_CHARS = 8


def status_text(status: JobStatus) -> str:
    """A status word in its colour."""
    return f"[{STATUS_STYLE[status]}]{status.value}[/]"


def took(seconds: float | None) -> str:
    """A duration as people read it: ``4.20s``, ``3m05s``, ``2h07m``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def jobs_table(jobs: list[JobView], total: int) -> Table:
    """One line per job; ids are shortened so the rest fits in 80 columns."""
    table = Table(
        title=f"{len(jobs)} of {total} jobs",
        title_justify="left",
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    # Names and states never wrap or lose letters; on a narrow terminal the stage and
    # the creation time wrap onto a second line instead.
    table.add_column("job", no_wrap=True)
    table.add_column("workflow", no_wrap=True, overflow="fold")
    table.add_column("run", no_wrap=True, justify="right")
    table.add_column("status", no_wrap=True, overflow="fold")
    table.add_column("stage", overflow="fold")
    table.add_column("progress", no_wrap=True)
    table.add_column("created", overflow="fold")
    table.add_column("took", no_wrap=True, justify="right")
    for j in jobs:
        table.add_row(
            j.job_id[:JOB_ID_CHARS],
            j.workflow,
            str(j.run),
            status_text(j.status),
            j.stage or "",
            f"{j.progress.done:.1f}/{j.progress.total:.0f}",
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            took(j.duration_seconds),
        )
    return table


def show_job(job: JobView) -> None:
    """A job's details: status, stages, result or error."""
    console.print(f"job      {job.job_id}")
    console.print(f"workflow {job.workflow} v{job.version}, run {job.run}")
    console.print(f"status   {status_text(job.status)}")
    if job.duration_seconds is not None:
        console.print(f"took     {took(job.duration_seconds)}, {job.attempts} task attempt(s)")
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


def progress_display() -> Progress:
    """A live display of progress bars on stderr (each bar carries a ``note`` field)."""
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err_console,
    )


def follow(
    queries: JobQueries,
    job_id: str,
    done: threading.Event,
    *,
    quiet: bool,
    progress: Progress | None = None,
) -> JobView:
    """Show a bar per stage until ``done`` is set or the job ends; the job's final view.

    The bars go to ``progress`` (a display the caller shows, such as a folder's overall
    bar), indented and removed when the job ends; without it, to a display of their own
    that stays on screen.
    """
    if quiet:
        done.wait()
        return queries.job(job_id)
    bars: dict[str, TaskID] = {}
    if progress is None:
        with progress_display() as own:
            return _draw(own, bars, queries, job_id, done, indent="")
    try:
        return _draw(progress, bars, queries, job_id, done, indent="  ")
    finally:
        for bar in bars.values():
            progress.remove_task(bar)


def _draw(
    progress: Progress,
    bars: dict[str, TaskID],
    queries: JobQueries,
    job_id: str,
    done: threading.Event,
    *,
    indent: str,
) -> JobView:
    while True:
        finished = done.wait(0.2)
        job = queries.job(job_id)
        for stage in job.stages:
            if stage.total == 0 and stage.name not in bars:
                continue
            if stage.name not in bars:
                bars[stage.name] = progress.add_task(
                    indent + stage.name, total=stage.total, note=""
                )
            note = ""
            if stage.progress and stage.progress.message:
                note = stage.progress.message
            if stage.failed:
                note = "[red]failed[/]"
            elif stage.status == "cancelled":
                note = "[dim]cancelled[/]"
            progress.update(
                bars[stage.name], total=stage.total, completed=stage.succeeded, note=note
            )
        if finished or job.status in DONE:
            return job
