"""``geoetl ingest PATH``: store a file in bronze, detect its kind, run its workflow here.

The file is copied to bronze (and hashed) on a thread while the main thread loads the
engine and the workflows' libraries and opens the database: both take about as long
for a few hundred MB, and only one of them needs the interpreter lock.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from geoetl.cli.render import console
from geoetl.cli.state import State, get_state
from geoetl.errors import InputError
from geoetl.ingest import WORKFLOWS, Kind, detect_kind, job_request, store_in_bronze

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import Progress

    from geoetl.engine.models import JobView
    from geoetl.storage.objectstore import ObjectStore
    from geoetl.workers import JobHelpers


def ingest_file(
    state: State,
    path: Path,
    *,
    quiet: bool,
    options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    helpers: JobHelpers | None = None,
) -> JobView:
    """Store ``path`` in bronze and run its workflow here; the finished job.

    The same file with the same options is the same job (``idempotent``), except that a
    job that was cancelled runs again as its next run. Ctrl+C cancels the job
    (:class:`geoetl.cli.main.Interrupted`). ``progress`` is a display for the stage bars.
    ``helpers``: processes that help with the job, started by the caller (a folder's);
    without them, this starts its own.
    """
    kind = detect_kind(path.name, str(path))
    if helpers is not None:
        return _ingest(state, path, kind, helpers, quiet=quiet, options=options, progress=progress)
    # Before the copy starts its thread: helpers are forked from this process once it
    # has imported the workflow's libraries, and load none themselves.
    with job_helpers_for(state, WORKFLOWS[kind]) as own:
        return _ingest(state, path, kind, own, quiet=quiet, options=options, progress=progress)


@contextlib.contextmanager
def job_helpers_for(state: State, *workflows: str) -> Iterator[JobHelpers | None]:
    """Helper processes for this command's jobs of ``workflows`` (or None), stopped after.

    Started before this process runs any job (:class:`geoetl.workers.JobHelpers`).
    """
    from geoetl.workers import job_helpers

    helpers = job_helpers(state.settings, *workflows)
    try:
        yield helpers
    finally:
        if helpers is not None:
            # Ctrl+C again leaves without waiting: they stop when this process ends.
            with contextlib.suppress(KeyboardInterrupt):
                helpers.stop()


def _ingest(
    state: State,
    path: Path,
    kind: Kind,
    helpers: JobHelpers | None,
    *,
    quiet: bool,
    options: dict[str, Any] | None,
    progress: Progress | None,
) -> JobView:
    from geoetl.cli.main import run_in_process
    from geoetl.storage.objectstore import open_object_store

    objects = open_object_store(state.settings)
    with ThreadPoolExecutor(1, thread_name_prefix="geoetl-bronze") as pool:
        stored = pool.submit(_store, objects, path, state.settings.scratch_dir)
        platform = state.platform  # imports, connects and migrates meanwhile,
        platform.workflows.get(WORKFLOWS[kind])  # and imports the workflow's libraries
        source = stored.result()
    workflow, params = job_request(kind, source, options or {})
    from geoetl.auth.principal import LOCAL_ADMIN
    from geoetl.engine.models import JobStatus
    from geoetl.publish import authorize

    params, level = authorize(platform, LOCAL_ADMIN, platform.workflows.get(workflow), params)
    job_id, idempotent = platform.store.submit(
        workflow, params, submitted_by=LOCAL_ADMIN.name, access_level=level
    )
    if idempotent and platform.store.job_status(job_id) == JobStatus.cancelled:
        # Cancelled earlier (Ctrl+C, `geoetl jobs cancel`): asking again means run it again.
        job_id = platform.store.resubmit(job_id, submitted_by=LOCAL_ADMIN.name)
        idempotent = False
    view = run_in_process(
        state, job_id, quiet=quiet, cancel_on_interrupt=True, progress=progress, helpers=helpers
    )
    view.idempotent = idempotent
    return view


def _store(objects: ObjectStore, path: Path, scratch: Path) -> str:
    """The bronze key of ``path``; a ``.gdb`` folder is stored as a zip of it.

    The bronze store keeps files, not folders, and the vector pipeline unpacks a zip.
    """
    if not path.is_dir():
        return store_in_bronze(objects, path)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gdb-", dir=scratch) as tmp:
        archive = Path(tmp) / f"{path.stem}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for member in sorted(p for p in path.rglob("*") if p.is_file()):
                # Fixed times and order: the same geodatabase makes the same zip (and job).
                info = zipfile.ZipInfo(f"{path.name}/{member.relative_to(path).as_posix()}")
                info.external_attr = 0o644 << 16
                with member.open("rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
        return store_in_bronze(objects, archive)


def ingest(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="A raster or vector file (or .zip, or .gdb folder) to publish, or a folder: "
            "every dataset in it, one job each."
        ),
    ],
    collection: Annotated[str | None, typer.Option(help="STAC collection id.")] = None,
    item_id: Annotated[str | None, typer.Option(help="Raster: STAC item id.")] = None,
    dataset_id: Annotated[str | None, typer.Option(help="Vector: dataset id.")] = None,
    layer: Annotated[str | None, typer.Option(help="Vector: load only this layer.")] = None,
    tier: Annotated[
        str | None, typer.Option(help="Raster: visualization, analysis, archive or all.")
    ] = None,
    target_crs: Annotated[
        str | None, typer.Option(help="Target CRS (raster: 'native' keeps the file's).")
    ] = None,
    input_crs: Annotated[str | None, typer.Option(help="CRS of a file that has none.")] = None,
    raster_type: Annotated[str | None, typer.Option(help="Raster: auto, rgb, dem, …")] = None,
    variable: Annotated[
        str | None,
        typer.Option(help="NetCDF/HDF5: the variable to publish (default: the only one)."),
    ] = None,
    time_as: Annotated[
        str | None,
        typer.Option(
            help="NetCDF: time steps as 'bands' of one item (default) or one item each ('items')."
        ),
    ] = None,
    tiles: Annotated[
        int | None,
        typer.Option(
            help="Raster: publish it cut into tiles of this many pixels (a multiple of 512), "
            "one COG and item each, served as one mosaic layer of the collection.",
            min=512,
        ),
    ] = None,
    keep_z: Annotated[bool, typer.Option(help="Vector: keep Z coordinates.")] = False,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help="Vector: features per load task (default 100,000); the tasks run side by "
            "side (GEOETL_RUN_WORKERS processes).",
            min=1,
            max=5_000_000,
        ),
    ] = None,
    csv_lat: Annotated[str | None, typer.Option(help="CSV latitude column.")] = None,
    csv_lon: Annotated[str | None, typer.Option(help="CSV longitude column.")] = None,
    csv_wkt: Annotated[str | None, typer.Option(help="CSV WKT geometry column.")] = None,
    access_level: Annotated[str, typer.Option(help="public, ouo or restricted.")] = "ouo",
    strict: Annotated[bool, typer.Option(help="Raster: warnings become errors.")] = False,
    replace: Annotated[
        bool, typer.Option(help="Replace an item of the same id published from another file.")
    ] = False,
    mosaic: Annotated[
        bool,
        typer.Option(
            help="Folder: its rasters as one collection (--collection, default the folder's "
            "name) served as a single mosaic layer, in one job."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the finished job.")] = False,
) -> None:
    """Publish a file, or every dataset in a folder: validate, convert, catalog, serve."""
    from geoetl.cli.main import finish

    if not path.exists():
        raise InputError(f"{path} is not a file or folder")
    state = get_state(ctx)
    options: dict[str, Any] = {
        "collection_id": collection,
        "item_id": item_id,
        "dataset_id": dataset_id,
        "layer": layer,
        "output_tier": tier,
        "target_crs": target_crs,
        "input_crs": input_crs,
        "raster_type": raster_type,
        "variable": variable,
        "time_as": time_as,
        "layout": None if tiles is None else "tiles",
        "tile_size": tiles,
        "keep_z": keep_z or None,
        "chunk_size": chunk_size,
        "csv_lat": csv_lat,
        "csv_lon": csv_lon,
        "csv_wkt": csv_wkt,
        "access_level": access_level,
        "strict_mode": strict or None,
        "replace": replace or None,
    }
    if mosaic:
        from geoetl.cli.folder import ingest_mosaic

        ingest_mosaic(state, path, options, as_json=as_json)
        return
    if path.is_dir() and path.suffix.lower() != ".gdb":
        from geoetl.cli.folder import ingest_folder

        ingest_folder(state, path, options, as_json=as_json)
        return
    view = ingest_file(state, path, quiet=as_json, options=options)
    if as_json or view.result is None:
        finish(view, as_json=as_json)
        return
    result = view.result
    base = state.settings.public_url.rstrip("/")
    if view.workflow == "process_raster":
        location = state.platform.objects.gdal_path(result["cog"])
        console.print(f"[green]published[/] {result['collection_id']}/{result['item_id']}")
        console.print(
            f"  type     {result['raster_type']}, {result['compression']}, {result['crs']}"
        )
        console.print(f"  COG      {location}", soft_wrap=True)
        console.print(f"  viewer   {base}{result['urls']['viewer']}", soft_wrap=True)
        console.print(f"  tiles    {base}{result['urls']['tiles']}", soft_wrap=True)
        console.print(f"  preview  {base}{result['urls']['preview']}", soft_wrap=True)
    elif view.workflow == "process_raster_tiles":
        grid = result["tiles"]
        console.print(
            f"[green]published[/] {result['collection_id']}: {len(result['items'])} tiles "
            f"({grid['rows']} x {grid['cols']}) of {grid['size']} px, {grid['crs']}"
        )
        console.print(f"  viewer   {base}{result['urls']['viewer']}", soft_wrap=True)
        console.print(f"  tiles    {base}{result['urls']['tiles']}", soft_wrap=True)
        console.print(f"  catalog  {base}{result['urls']['stac_collection']}", soft_wrap=True)
    elif view.workflow == "process_raster_times":
        console.print(
            f"[green]published[/] {result['collection_id']}: variable {result['variable']}, "
            f"{len(result['items'])} time steps"
        )
        for entry in result["items"]:
            console.print(f"  {entry['time']:<22}{entry['item_id']}", soft_wrap=True)
        console.print(f"  catalog  {base}{result['urls']['stac_collection']}", soft_wrap=True)
    else:
        console.print(f"[green]published[/] {result['collection_id']}/{result['dataset_id']}")
        for table in result["tables"]:
            url = base + result["urls"]["features"][table["collection_id"]]
            console.print(
                f"  {table['family']:<9}{table['features']:>8} features  {url}", soft_wrap=True
            )
        report = result["report"]
        console.print(
            f"  report   read {report['read']}, repaired {report['repaired']}, "
            f"dropped {sum(report['dropped'].values())}, reprojected {report['reprojected']}"
        )
    for warning in result.get("warnings", []):
        console.print(f"  [yellow]warning[/] {warning}")
    console.print(f"  job      {view.job_id}")
