"""`geoetl batch submit|show` and `geoetl watch`: landing-zone batches on the command line."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from geoetl.cli.render import console, err_console
from geoetl.cli.state import State, get_state
from geoetl.errors import InputError
from geoetl.ingest import TILES_WORKFLOW, TIMES_WORKFLOW, WORKFLOWS

if TYPE_CHECKING:
    from geoetl.workers import JobHelpers

# Every workflow a batch's files can run (their kinds are known once they are submitted).
BATCH_WORKFLOWS = sorted({*WORKFLOWS.values(), TIMES_WORKFLOW, TILES_WORKFLOW})

app = typer.Typer(help="Landing-zone batches: many files, one manifest.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _batch_id(name: str) -> str:
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S")
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:60] or "batch"
    return f"{base}-{stamp}"


def _local_manifest(path: Path) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """A manifest file whose file paths are local (relative to it) or landing keys."""
    from geoetl.limits import loads

    doc = loads(path.read_bytes(), what=str(path), max_depth=10)
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise InputError(f"{path} is not a manifest: it needs a 'files' list")
    batch_id = str(doc.get("batch_id") or _batch_id(path.stem))
    doc["batch_id"] = batch_id
    uploads = []
    for entry in doc["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InputError(f"{path}: every file needs a 'path'")
        local = (path.parent / entry["path"]).resolve()
        if not entry["path"].startswith("landing/") and local.is_file():
            key = f"landing/{batch_id}/{local.name}"
            uploads.append((local, key))
            entry["path"] = key
    return doc, uploads


def submit(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="A folder (every file in it, one manifest made for you) or a manifest."
        ),
    ],
    batch_id: Annotated[
        str | None, typer.Option(help="Default: the folder's name and time.")
    ] = None,
    access_level: Annotated[str, typer.Option(help="public, ouo or restricted.")] = "ouo",
    intent: Annotated[str, typer.Option(help="ingest, ingest_vector, ingest_raster, …")] = "ingest",
    collection: Annotated[str | None, typer.Option(help="STAC collection of every file.")] = None,
    wait: Annotated[bool, typer.Option(help="Run the batch's jobs here until they end.")] = True,
    as_json: AsJson = False,
) -> None:
    """Upload files to the landing zone, commit them with a manifest, and submit the batch."""
    from geoetl.cli.ingest import job_helpers_for

    state = get_state(ctx)
    # Helpers forked before anything runs here take the jobs' tasks side by side.
    helping = job_helpers_for(state, *BATCH_WORKFLOWS) if wait else contextlib.nullcontext()
    with helping as helpers:
        batch = _submit(state, path, batch_id, access_level, intent, collection)
        if wait:
            _run_batch(state, batch, quiet=as_json, helpers=helpers)
    show(ctx, batch, as_json=as_json)


def _submit(
    state: State,
    path: Path,
    batch_id: str | None,
    access_level: str,
    intent: str,
    collection: str | None,
) -> str:
    """Upload the files, commit them with the manifest, submit their jobs; the batch id."""
    from geoetl.landing import MANIFESTS, watch_once
    from geoetl.storage.objectstore import sha256_file

    platform = state.platform
    if path.is_dir():
        batch = batch_id or _batch_id(path.name)
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path} holds no files")
        uploads = [(p, f"landing/{batch}/{p.relative_to(path).as_posix()}") for p in files]
        doc: dict[str, Any] = {
            "batch_id": batch,
            "uploader": "local",
            "intent": intent,
            "access_level": access_level,
            "files": [{"path": key, "sha256": sha256_file(p)} for p, key in uploads],
        }
        if collection:
            doc["collection_id"] = collection
    elif path.is_file():
        doc, uploads = _local_manifest(path)
        if batch_id:
            raise InputError("--batch-id is for folders; a manifest names its own batch_id")
        batch = doc["batch_id"]
    else:
        raise InputError(f"{path} is not a folder or a manifest file")
    for local, key in uploads:
        platform.objects.put_file(local, key)
    # The manifest last: it commits the batch.
    manifest_path = state.settings.scratch_dir / f"manifest-{batch}.json"
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(doc, indent=2))
    try:
        platform.objects.put_file(manifest_path, f"{MANIFESTS}/{batch}.json")
    finally:
        manifest_path.unlink(missing_ok=True)
    watch_once(platform, "cli")
    return str(batch)


def _run_batch(state: State, batch_id: str, *, quiet: bool, helpers: JobHelpers | None) -> None:
    """Work on the batch's jobs here until each has ended."""
    from geoetl.cli.main import run_in_process

    batch = state.platform.batches.get(batch_id)
    for f in batch.files:
        if f.job_id:
            run_in_process(state, f.job_id, quiet=quiet, helpers=helpers)


def show(ctx: typer.Context, batch_id: str, as_json: AsJson = False) -> None:
    """A batch: its manifest's problems, and each file's job and status."""
    from geoetl.landing import batch_view

    platform = get_state(ctx).platform
    view = batch_view(platform, platform.batches.get(batch_id))
    if as_json:
        typer.echo(json.dumps(view, indent=2))
    else:
        counts = ", ".join(f"{n} {s}" for s, n in view["counts"].items()) or "no jobs"
        console.print(f"batch {view['batch_id']}: {view['status']} ({counts})", highlight=False)
        for error in view["errors"]:
            err_console.print(f"  [red]error[/] {error}", highlight=False, soft_wrap=True)
        table = Table("file", "kind", "status", "job", box=None)
        for f in view["files"]:
            table.add_row(f["path"], f["kind"] or "", f["status"] or "", (f["job_id"] or "")[:12])
        console.print(table)
    if view["status"] == "invalid" or any(
        f["status"] in ("failed", "refused", "cancelled") for f in view["files"]
    ):
        raise typer.Exit(1)


app.command("submit")(submit)


@app.command("show")
def show_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="The batch id.")],
    as_json: AsJson = False,
) -> None:
    """A batch: its manifest's problems, and each file's job and status."""
    show(ctx, batch_id, as_json=as_json)


def watch(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(help="Seconds between looks.", min=0.1)] = 5.0,
    once: Annotated[bool, typer.Option(help="Look once, then exit.")] = False,
) -> None:
    """Pick up landing-zone manifests and submit their batches (each exactly once)."""
    from geoetl.engine.worker import worker_id
    from geoetl.landing import watch_once

    platform = get_state(ctx).platform
    me = worker_id("watch")
    stop = threading.Event()
    while True:
        for batch in watch_once(platform, me):
            console.print(f"picked up batch {batch}", highlight=False)
        if once or stop.wait(interval):
            return
