"""The ``geoetl`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from geoetl.cli import audit as audit_cli
from geoetl.cli import batch as batch_cli
from geoetl.cli import db as db_cli
from geoetl.cli import ingest as ingest_cli
from geoetl.cli import jobs as jobs_cli
from geoetl.cli import lifecycle as lifecycle_cli
from geoetl.cli import tokens as tokens_cli
from geoetl.cli.render import JOB_ID_CHARS, console, err_console, follow, show_job
from geoetl.cli.state import State, get_state
from geoetl.engine.models import JobStatus
from geoetl.errors import Conflict, GeoEtlError, InputError

# The engine, the database layer and the geospatial stack are imported by the commands
# that use them: `geoetl ingest` starts copying the file while they load (see ingest.py).
if TYPE_CHECKING:
    from rich.progress import Progress

    from geoetl.engine.models import JobView
    from geoetl.platform import Platform
    from geoetl.workers import JobHelpers

log = logging.getLogger(__name__)
# How often a command that runs a job with helpers checks that none died (its tasks then
# go back to the queue; nobody else would notice before their leases ran out).
HELPER_CHECK_SECONDS = 0.2

app = typer.Typer(
    name="geoetl",
    help="Turn geospatial files into published services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(jobs_cli.app, name="jobs")
app.add_typer(tokens_cli.app, name="tokens")
app.add_typer(batch_cli.app, name="batch")
app.command("watch")(batch_cli.watch)
app.command()(ingest_cli.ingest)
app.command("unpublish")(lifecycle_cli.unpublish)
app.command("versions")(lifecycle_cli.versions)
app.command("lineage")(lifecycle_cli.lineage)
app.command("audit")(audit_cli.audit)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
db_app.command("create-reader-role")(db_cli.create_reader_role)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option(help="Data folder (GEOETL_HOME).", show_default=False)
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(home=home)


class Interrupted(Exception):
    """Ctrl+C stopped a job run here: it was cancelled (or had just ended)."""

    def __init__(self, job_id: str, status: JobStatus) -> None:
        self.job_id = job_id
        self.status = status
        short = job_id[:JOB_ID_CHARS]
        if status == JobStatus.cancelled:
            message = f"cancelled: job {short} (Ctrl+C); run the same command to start it again"
        else:
            message = f"interrupted: job {short} had {status.value} already"
        super().__init__(message)


def run_in_process(
    state: State,
    job_id: str,
    *,
    quiet: bool,
    cancel_on_interrupt: bool = False,
    progress: Progress | None = None,
    helpers: JobHelpers | None = None,
) -> JobView:
    """Run a job to completion here, with progress bars unless ``quiet``; its final view.

    Ctrl+C cancels the job and raises :class:`Interrupted` when ``cancel_on_interrupt``
    (``geoetl ingest``: the job is this command's own work); otherwise the job keeps its
    state for a worker to finish. ``progress`` is a display to draw the stage bars in.
    ``helpers``: processes started to run this job's tasks too (whoever started them
    stops them).
    """
    from geoetl.workers import lease_sweeper, make_runner, worker_id

    platform = state.platform
    if helpers is not None:
        helpers.run(job_id)
    runner = make_runner(platform, worker_id("cli"))
    done = threading.Event()
    stop = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            runner.run_job(job_id, stop)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=work, name="geoetl-runner", daemon=True)
    thread.start()
    # Nobody else may sweep leases (no janitor, no worker): tasks left running by a
    # command that was killed (this job's, run again now) go back to the queue.
    threading.Thread(
        target=lease_sweeper(platform, runner.worker_id).run_forever,
        args=(done,),
        kwargs={"at_once": True},
        name="geoetl-lease-sweeper",
        daemon=True,
    ).start()
    if helpers is not None:
        threading.Thread(
            target=_watch_helpers,
            args=(helpers, platform, done),
            name="geoetl-helpers",
            daemon=True,
        ).start()
    cancelled = False  # the job was cancelled: the task running here should stop now
    try:
        try:
            view = follow(platform.queries, job_id, done, quiet=quiet, progress=progress)
        except KeyboardInterrupt:
            if not cancel_on_interrupt:
                err_console.print(
                    f"interrupted; job {job_id[:12]} keeps its state: "
                    f"`geoetl jobs show {job_id[:12]}`, or run `geoetl worker` to finish it"
                )
                raise typer.Exit(130) from None
            status = _cancel(platform, job_id)
            cancelled = status == JobStatus.cancelled
            raise Interrupted(job_id, status) from None
        cancelled = view.status == JobStatus.cancelled  # by `geoetl jobs cancel`, the API…
    finally:
        stop.set()
        if cancelled:
            # Its task learns of it now instead of at the next lease renewal, and stops
            # at its next progress report or checkpoint.
            runner.heartbeat.beat(renew=True)
        # Ctrl+C again leaves without waiting: the task's lease runs out on its own.
        with contextlib.suppress(KeyboardInterrupt):
            thread.join(timeout=30)
        runner.close()
    if failure:
        raise failure[0]
    return view


def _watch_helpers(helpers: JobHelpers, platform: Platform, done: threading.Event) -> None:
    """Until ``done``: the tasks of a helper that died go back to the queue at once."""
    failing = False
    while not done.wait(HELPER_CHECK_SECONDS):
        try:
            helpers.recover(platform.store)
            failing = False
        except Exception as exc:  # the database is away: the next check tries again
            if not failing:  # once per failure, not every check
                log.warning("could not check the job helpers: %s", exc)
            failing = True


def _cancel(platform: Platform, job_id: str) -> JobStatus:
    """Cancel the job; the status it ended with (``cancelled``, unless it had ended)."""
    try:
        return platform.store.cancel(job_id)
    except Conflict:
        return platform.store.job_status(job_id)


def finish(view: JobView, *, as_json: bool) -> None:
    """Print a finished job and exit non-zero unless it succeeded."""
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
    elif view.status == JobStatus.awaiting_approval:
        short = view.job_id[:JOB_ID_CHARS]
        show_job(view)
        err_console.print(
            f"[magenta]awaiting approval:[/] job {short} ({view.workflow}) staged its outputs; "
            f"nothing is published until an admin runs `geoetl jobs approve {short}` "
            f"(or `geoetl jobs reject {short}`)",
            highlight=False,
            soft_wrap=True,
        )
        return
    elif view.status == JobStatus.cancelled:
        short = view.job_id[:JOB_ID_CHARS]
        err_console.print(
            f"[yellow]cancelled:[/] job {short} ({view.workflow}) was cancelled; "
            f"`geoetl jobs resubmit {short}` runs it again",
            highlight=False,
            soft_wrap=True,
        )
    else:
        show_job(view)
    if view.status not in (JobStatus.succeeded, JobStatus.awaiting_approval):
        raise typer.Exit(1)


@app.command()
def submit(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Workflow name (see `geoetl workflows`).")],
    params: Annotated[str, typer.Option(help="Params as a JSON object.")] = "{}",
    wait: Annotated[bool, typer.Option(help="Run the job here until it ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Submit a job; identical params return the existing job."""
    state = get_state(ctx)
    try:
        raw: Any = json.loads(params)
    except json.JSONDecodeError as exc:
        raise InputError(f"--params is not valid JSON: {exc}") from None
    from geoetl.auth.principal import LOCAL_ADMIN
    from geoetl.publish import job_access_level

    if not isinstance(raw, dict):
        raise InputError("--params must be a JSON object")
    level = job_access_level(state.platform.workflows.get(workflow), raw)
    job_id, idempotent = state.platform.store.submit(
        workflow, raw, submitted_by=LOCAL_ADMIN.name, access_level=level
    )
    if wait:
        view = run_in_process(state, job_id, quiet=as_json)
        view.idempotent = idempotent
        finish(view, as_json=as_json)
        return
    view = state.platform.queries.job(job_id)
    view.idempotent = idempotent
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
    else:
        note = " (already submitted: same workflow and params)" if idempotent else ""
        console.print(f"{view.job_id} {view.status.value}{note}")


@app.command()
def workflows(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the workflows and their params."""
    registry = get_state(ctx).platform.workflows
    if as_json:
        typer.echo(
            json.dumps(
                [{"name": w.name, "params": w.params.model_json_schema()} for w in registry],
                indent=2,
            )
        )
        return
    for wf in registry:
        fields = ", ".join(wf.params.model_fields)
        console.print(f"[bold]{wf.name}[/] v{wf.version}: {wf.description}  params: {fields}")


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues to take from (default all).")
    ] = None,
) -> None:
    """Run workers that claim tasks of their queues until stopped (Ctrl+C).

    With GEOETL_EXECUTOR=celery they are Celery workers consuming the queues' messages;
    otherwise local processes that claim from the database.
    """
    state = get_state(ctx)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if state.settings.executor == "celery":
        from geoetl.celery_executor import run_celery_worker

        run_celery_worker(state.settings, queue_list, concurrency)
        return
    from geoetl.workers import WorkerPool, run_worker

    stop = threading.Event()
    if concurrency == 1:
        _install_stop(stop)
        err_console.print("worker started; Ctrl+C stops it after the current task")
        run_worker(state.settings, "w0", queue_list, stop)
        return
    pool = WorkerPool(state.settings, concurrency, queue_list)
    pool.start()
    _install_stop(stop)
    err_console.print(f"{concurrency} workers started (pids {pool.pids}); Ctrl+C stops them")
    pool.supervise(stop)


@app.command()
def janitor(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
    interval: Annotated[float | None, typer.Option(help="Seconds between passes.")] = None,
    orphans: Annotated[
        bool,
        typer.Option(
            "--orphans",
            help="Sweep objects no item, version or active job uses (older than "
            "GEOETL_ORPHAN_GRACE_HOURS) and abandoned versions, once, instead of a pass.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --orphans: list them, remove nothing.")
    ] = False,
    bronze: Annotated[
        bool,
        typer.Option(
            "--bronze",
            help="With --orphans: bronze sources no job uses too, once older than "
            "GEOETL_BRONZE_RETENTION_DAYS.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --orphans: print the report as JSON.")
    ] = False,
) -> None:
    """Re-queue expired leases, re-dispatch lost tasks, clean scratch; report what was done.

    With --orphans: remove (or list) orphaned objects and abandoned versions, once.
    """
    if orphans or dry_run or bronze or as_json:
        from geoetl.cli.orphans import run_orphan_sweep

        run_orphan_sweep(
            get_state(ctx), orphans=orphans, dry_run=dry_run, bronze=bronze, as_json=as_json
        )
        return
    from geoetl.workers import make_janitor

    jan = make_janitor(get_state(ctx).platform)
    if once:
        report = jan.run_once()
        console.print(
            f"re-queued {len(report.requeued)}, failed {len(report.failed)}, "
            f"re-dispatched {len(report.redispatched)}"
        )
        for label, items in (
            ("re-queued", report.requeued),
            ("failed", report.failed),
            ("re-dispatched", report.redispatched),
        ):
            for task_id in items:
                console.print(f"  {label}: {task_id}")
        return
    stop = threading.Event()
    _install_stop(stop)
    jan.run_forever(stop, interval)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=0, help="Local worker processes to start (0 = API only).")
    ] = 1,
) -> None:
    """Serve the API, with local workers and the janitor."""
    from geoetl.cli.serve import run_server

    state = get_state(ctx)
    announce_admin_token(state)
    run_server(state.settings, host=host, port=port, workers=workers)


def announce_admin_token(state: State) -> Path | None:
    """On a home without tokens, create the admin token file and say where it is."""
    from geoetl.auth.tokens import ensure_admin_token

    path = ensure_admin_token(state.platform.tokens, state.settings.home)
    if path is not None:
        console.print(
            f"created an admin API token in {path} (readable only by you); use it as\n"
            f'  curl -H "Authorization: Bearer $(cat {path})" …\n'
            "and create others with `geoetl tokens create`",
            highlight=False,
            soft_wrap=True,
        )
    return path


SAMPLE_DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


@app.command()
def demo(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Folder of sample data.")] = SAMPLE_DATA,
    serve: Annotated[bool, typer.Option(help="Serve them afterwards (Ctrl+C stops).")] = True,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
) -> None:
    """Ingest the sample rasters and vectors on the embedded default, then serve them."""
    from geoetl.cli.folder import find_datasets, folder_workflows
    from geoetl.cli.ingest import ingest_file, job_helpers_for

    state = get_state(ctx)
    files = find_datasets(data)[0] if data.is_dir() else []
    if not files:
        raise InputError(f"no sample data in {data}; pass --data with a folder of files")
    console.print(f"geoetl home: {state.settings.home}")
    base = f"http://127.0.0.1:{port}"
    published: list[str] = []
    # One set of helpers for every file, forked before the first job (see JobHelpers).
    with job_helpers_for(state, *folder_workflows(files)) as helpers:
        for path in files:
            console.print(f"ingesting {path.name}")
            # The storm tracks have no CRS: they are lon/lat (input_crs is used only then).
            options = {"access_level": "public", "input_crs": "EPSG:4326"}
            view = ingest_file(state, path, quiet=False, options=options, helpers=helpers)
            result: dict[str, Any] = view.result or {}
            if view.status != JobStatus.succeeded:
                finish(view, as_json=False)
            if view.workflow == "process_raster":
                viewer = base + result["urls"]["viewer"]
                line = f"{result['item_id']} ({result['raster_type']}): {viewer}"
                published.append(f"  map      {line}")
            else:
                for cid, url in result["urls"]["features"].items():
                    published.append(f"  features {cid}: {base}{url}?f=html")
    console.print("published:")
    for line in published:
        console.print(line, soft_wrap=True, highlight=False)
    if serve:
        from geoetl.cli.serve import run_server

        console.print(
            f"serving on {base} (web console: {base}/ui, API docs: {base}/docs); Ctrl+C stops"
        )
        token_file = state.settings.home / "admin-token"
        if announce_admin_token(state) is None and token_file.exists():
            console.print(f"admin token for writes (uploads, jobs): {token_file}")
        run_server(state.settings, host="127.0.0.1", port=port, workers=1)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or upgrade the schema (on PostgreSQL also PostGIS and pgSTAC)."""
    from geoetl.engine.db import is_postgres, make_engine
    from geoetl.engine.migrate import upgrade

    settings = get_state(ctx).settings
    engine = make_engine(settings.db_url)
    revision = upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    console.print(f"database {where} at revision {revision}")
    if is_postgres(engine):
        from geoetl.auth.dbroles import ReaderRoles
        from geoetl.catalog.pgstac_install import install

        console.print(f"pgSTAC {install(engine)} and PostGIS ready in {where}")
        for name in ReaderRoles(engine, settings.postgis_schema).reapply():
            console.print(f"reader role {name}: policies and grants applied again")
    engine.dispose()


@app.command("migrate-data")
def migrate_data_command(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Target database, postgresql://user@host/db.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Copy this deployment's catalog and feature tables into a PostgreSQL database.

    Safe to run again; counts are checked at the end. Both deployments must share the
    storage (GEOETL_STORAGE_URL): COGs and GeoParquet files are not copied.
    """
    from dataclasses import asdict

    from geoetl.cli.render import progress_display
    from geoetl.engine.db import normalize_url
    from geoetl.migrate_data import migrate_data
    from geoetl.platform import Platform

    state = get_state(ctx)
    if normalize_url(to).get_backend_name() != "postgresql":
        raise InputError(f"--to must be a postgresql:// URL, got {to.split(':', 1)[0]}://…")
    target = Platform.from_settings(state.settings.model_copy(update={"database_url": to}))
    try:
        bars: dict[str, Any] = {}
        with progress_display() as progress:

            def tell(what: str, done: int, total: int) -> None:
                if what not in bars:
                    bars[what] = progress.add_task(what, total=total, note="")
                progress.update(bars[what], completed=done, total=total)

            report = migrate_data(state.platform, target, tell)
    finally:
        target.close()
    if as_json:
        typer.echo(json.dumps(asdict(report)))
        return
    where = normalize_url(to).render_as_string(hide_password=True)
    console.print(
        f"copied {report.collections} collection(s), {report.items} item(s), "
        f"{report.feature_tables} feature table(s) and {report.features:,} feature(s) "
        f"to {where}; every count matches",
        highlight=False,
    )


def _install_stop(stop: threading.Event) -> None:
    import signal

    def handler(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    """Entry point: errors are one readable line, not a traceback."""
    try:
        app()
    except Interrupted as exc:
        err_console.print(f"[yellow]{exc}[/]", highlight=False, soft_wrap=True)
        sys.exit(130)
    except GeoEtlError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(exc, InputError) else 1)
    except Exception as exc:
        from sqlalchemy.exc import OperationalError  # loaded already if the database was used

        if not isinstance(exc, OperationalError):
            raise
        err_console.print(
            f"[red]error:[/] database unreachable: {exc.orig}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
