"""``geoetl ingest FOLDER``: every dataset in a folder published, one job each.

Which files are datasets: vector files by suffix, a ``.zip``, a ``.gdb`` folder (one
dataset), rasters as ``geoetl ingest FILE`` tells them (by suffix, else GDAL opens them
with bands), and any other file GDAL opens as a vector dataset with a driver geoetl
accepts. A shapefile's ``.dbf``/``.shx``/``.prj``, a raster's ``.aux.xml``, world file
or header, and other files named after a file next to them (``lc.tif.ovr``,
``roads.shp.xml``) go with their dataset and are not counted. Hidden files and folders
are left out; other subfolders are searched.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import BaseModel
from rich.table import Table
from rich.text import Text

from geoetl.cli.ingest import ingest_file, job_helpers_for
from geoetl.cli.render import console, err_console, progress_display, status_text
from geoetl.cli.state import State
from geoetl.engine.models import JobStatus, JobView
from geoetl.errors import GeoEtlError, InputError
from geoetl.ingest import SHAPEFILE_SIDECARS, TIMES_WORKFLOW, WORKFLOWS, detect_kind

if TYPE_CHECKING:
    from rich.progress import Progress

    from geoetl.workers import JobHelpers

# Files that describe a raster next to them: PAM metadata, overviews, masks, headers,
# colour tables, statistics, a format's second file, world files.
RASTER_SIDECARS = (
    ".aux.xml",
    ".aux",
    ".ovr",
    ".rrd",
    ".msk",
    ".hdr",
    ".clr",
    ".stx",
    ".gri",
    ".sgrd",
    ".tfw",
    ".tifw",
    ".tiffw",
    ".wld",
    ".jgw",
    ".jpgw",
    ".pgw",
    ".pngw",
    ".j2w",
)
# A shapefile's spatial indexes besides the ones geoetl stores with it; GML's schema.
OTHER_SIDECARS = (".fix", ".atx", ".ain", ".aih", ".gfs")
SIDECARS = (*SHAPEFILE_SIDECARS, *RASTER_SIDECARS, *OTHER_SIDECARS)
# Suffixes whose content decides: a .json is as often a settings file as GeoJSON.
PROBED_SUFFIXES = {".json"}
KINDS = {workflow: kind for kind, workflow in WORKFLOWS.items()} | {TIMES_WORKFLOW: "raster"}

MOSAIC_WORKFLOW = "process_raster_collection"

SETTLED_OK = {JobStatus.succeeded.value, JobStatus.awaiting_approval.value}
"""Statuses that are no failure: published, or waiting for an admin's approval."""


class FolderItem(BaseModel):
    """One dataset of the folder and what became of it."""

    file: str
    kind: str | None = None
    status: str = "not started"
    published: str | None = None
    error: str | None = None
    job: JobView | None = None


class FolderReport(BaseModel):
    """``geoetl ingest FOLDER --json``: each dataset, and the files that were none."""

    folder: str
    datasets: list[FolderItem]
    not_datasets: list[str]


def find_datasets(folder: Path) -> tuple[list[Path], list[Path]]:
    """The datasets under ``folder``, and the files that are neither datasets nor sidecars."""
    from geoetl.vector.read import DATASET_SUFFIXES

    known = (DATASET_SUFFIXES | {".zip"}) - PROBED_SUFFIXES
    datasets: list[Path] = []
    others: list[Path] = []
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        for name in list(dirs):
            if name.startswith(".") or name == "__MACOSX":
                dirs.remove(name)
            elif name.lower().endswith(".gdb"):
                dirs.remove(name)  # a file geodatabase is one dataset
                datasets.append(base / name)
        names = {name for name in files if not name.startswith(".")}
        for name in names:
            if _is_sidecar(name, names):
                continue
            path = base / name
            if path.suffix.lower() in known or _opens_as_dataset(path):
                datasets.append(path)
            else:
                others.append(path)
    return sorted(datasets), sorted(others)


def _is_sidecar(name: str, names: set[str]) -> bool:
    if name.lower().endswith(SIDECARS):
        return True
    # Named after a file next to it: lc.tif.ovr, lc.tif.xml, roads.shp.xml.
    stem = name.rsplit(".", 1)[0]
    return "." in stem and stem in names


def _opens_as_dataset(path: Path) -> bool:
    """Whether ``path`` is a raster or a vector dataset geoetl reads (by its content).

    A reference format geoetl refuses (a VRT) counts, so the summary says why it was
    refused. Files only a refused vector driver reads (a PDF, a MapInfo table) are not
    geoetl's datasets: they are listed as left alone.
    """
    from pyogrio.errors import DataLayerError, DataSourceError

    from geoetl import gdalsafe

    try:
        if detect_kind(path.name, str(path)) == "raster":
            return True
    except InputError:
        return True
    try:
        with gdalsafe.reading_vector(path) as src:
            gdalsafe.vector_info(src)
    except (InputError, DataSourceError, DataLayerError):
        return False
    return True


def ingest_folder(state: State, folder: Path, options: dict[str, Any], *, as_json: bool) -> None:
    """Publish every dataset under ``folder`` with ``options``; a summary; exit 1 on failures."""
    for option, flag in (("item_id", "--item-id"), ("dataset_id", "--dataset-id")):
        if options.get(option) is not None:
            raise InputError(
                f"{flag} names one dataset, and {folder} is a folder: each of its datasets "
                f"is named after its file; ingest a single file to choose its id"
            )
    paths, others = find_datasets(folder)
    if not paths:
        raise InputError(
            f"{folder} holds no dataset geoetl reads (rasters, vector files, .zip archives "
            "or .gdb folders)"
        )
    items = [FolderItem(file=p.relative_to(folder).as_posix()) for p in paths]
    try:
        # One set of helpers for every dataset, forked before the first job and before
        # the progress display's thread.
        with job_helpers_for(state, *folder_workflows(paths)) as helpers:
            if as_json:
                for path, item in zip(paths, items, strict=True):
                    _ingest(state, path, item, options, None, helpers)
            else:
                with progress_display() as progress:
                    overall = progress.add_task("datasets", total=len(items), note="")
                    for path, item in zip(paths, items, strict=True):
                        progress.update(overall, note=item.file)
                        _ingest(state, path, item, options, progress, helpers)
                        progress.advance(overall)
                    progress.update(overall, note="")
    except KeyboardInterrupt:
        # Ctrl+C before the job existed (while the file was copied into bronze).
        current = next((item for item in items if item.status == "not started"), None)
        if current is not None:
            current.status, current.error = JobStatus.cancelled.value, "Ctrl+C"
        _report(folder, items, others, as_json=as_json)
        err_console.print("[yellow]cancelled (Ctrl+C)[/]")
        raise typer.Exit(130) from None
    except BaseException:
        _report(folder, items, others, as_json=as_json)  # then main() says what stopped it
        raise
    _report(folder, items, others, as_json=as_json)
    if any(item.status not in SETTLED_OK for item in items):
        raise typer.Exit(1)


def folder_workflows(paths: list[Path]) -> list[str]:
    """The workflows that the datasets at ``paths`` run (those whose kind is known now)."""
    workflows = set()
    for path in paths:
        with contextlib.suppress(GeoEtlError):  # its job says what is wrong with it
            workflows.add(WORKFLOWS[detect_kind(path.name, str(path))])
    return sorted(workflows)


def _ingest(
    state: State,
    path: Path,
    item: FolderItem,
    options: dict[str, Any],
    progress: Progress | None,
    helpers: JobHelpers | None,
) -> None:
    from geoetl.cli.main import Interrupted

    try:
        view = ingest_file(
            state, path, quiet=progress is None, options=options, progress=progress, helpers=helpers
        )
    except Interrupted as exc:
        item.status, item.error = exc.status.value, "Ctrl+C"
        item.job = state.platform.queries.job(exc.job_id)
        raise
    except (GeoEtlError, OSError) as exc:  # before a job existed: unreadable, a conflict…
        item.status, item.error = JobStatus.failed.value, str(exc)
        return
    item.job = view
    item.kind = KINDS.get(view.workflow)
    item.status = view.status.value
    if view.status == JobStatus.succeeded:
        result = view.result or {}
        item.published = (
            f"{result['collection_id']}/{result.get('item_id') or result.get('dataset_id')}"
            if "items" not in result
            else f"{result['collection_id']}: {len(result['items'])} items"
        )
    elif view.error is not None:
        item.error = view.error.message
    elif view.status == JobStatus.cancelled:
        item.error = "cancelled (geoetl jobs cancel, or the API)"


def _report(folder: Path, items: list[FolderItem], others: list[Path], *, as_json: bool) -> None:
    skipped = [p.relative_to(folder).as_posix() for p in others]
    if as_json:
        report = FolderReport(folder=str(folder), datasets=items, not_datasets=skipped)
        typer.echo(report.model_dump_json(indent=2))
        return
    counts: dict[str, int] = {}
    for item in items:
        counts[item.status] = counts.get(item.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    console.print(Text(f"{len(items)} datasets in {folder}: {summary}"), soft_wrap=True)
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("file", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("published / error", overflow="fold")
    statuses = {s.value for s in JobStatus}
    for item in items:
        status = (
            Text.from_markup(status_text(JobStatus(item.status)))
            if item.status in statuses
            else Text(item.status, style="dim")
        )
        outcome = Text(item.published) if item.published else Text(item.error or "", style="red")
        table.add_row(Text(item.file), item.kind or "", status, outcome)
    console.print(table, highlight=False)
    if skipped:
        console.print(Text(f"not datasets, left alone: {', '.join(skipped)}"), soft_wrap=True)


RASTER_OPTIONS = (
    "output_tier",
    "target_crs",
    "input_crs",
    "raster_type",
    "access_level",
    "strict_mode",
    "replace",
)


def ingest_mosaic(state: State, folder: Path, options: dict[str, Any], *, as_json: bool) -> None:
    """Publish every raster under ``folder`` as one collection, in one job (a mosaic layer)."""
    from geoetl.auth.principal import LOCAL_ADMIN
    from geoetl.cli.main import finish, run_in_process
    from geoetl.ingest import store_in_bronze
    from geoetl.publish import authorize, slug

    if not folder.is_dir():
        raise InputError(f"--mosaic publishes a folder's rasters; {folder} is not a folder")
    paths, _others = find_datasets(folder)
    rasters = []
    for path in paths:
        try:
            if detect_kind(path.name, str(path)) == "raster":
                rasters.append(path)
        except InputError:
            continue  # refused files are not part of the layer; a single ingest says why
    if not rasters:
        raise InputError(f"{folder} holds no raster geoetl reads")
    # Helpers take the rasters' validation and COG tasks side by side with this process.
    with job_helpers_for(state, MOSAIC_WORKFLOW) as helpers:
        platform = state.platform
        sources = [store_in_bronze(platform.objects, path) for path in rasters]
        params: dict[str, Any] = {
            "sources": sources,
            "collection_id": options.get("collection_id") or slug(folder.name),
            **{k: options[k] for k in RASTER_OPTIONS if options.get(k) is not None},
        }
        if str(params.get("target_crs", "")).lower() == "native":
            params["target_crs"] = None
        workflow = platform.workflows.get(MOSAIC_WORKFLOW)
        params, level = authorize(platform, LOCAL_ADMIN, workflow, params)
        job_id, _ = platform.store.submit(
            workflow.name, params, submitted_by=LOCAL_ADMIN.name, access_level=level
        )
        view = run_in_process(
            state, job_id, quiet=as_json, cancel_on_interrupt=True, helpers=helpers
        )
    if as_json or view.status != JobStatus.succeeded or view.result is None:
        finish(view, as_json=as_json)
        return
    result = view.result
    base = state.settings.public_url.rstrip("/")
    console.print(
        f"[green]published[/] {len(result['items'])} rasters as collection "
        f"{result['collection_id']} ({result['published']} new, "
        f"{result['unchanged']} unchanged)"
    )
    console.print(f"  viewer   {base}{result['urls']['viewer']}", soft_wrap=True)
    console.print(f"  tiles    {base}{result['urls']['tiles']}", soft_wrap=True)
    console.print(f"  STAC     {base}{result['urls']['stac_collection']}", soft_wrap=True)
    for warning in result.get("warnings", []):
        console.print(f"  [yellow]warning[/] {warning}")
    console.print(f"  job      {view.job_id}")
