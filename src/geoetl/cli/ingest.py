"""``geoetl ingest PATH``: store a file in bronze, detect its kind, run its workflow here.

The file is copied to bronze (and hashed) on a thread while the main thread loads the
engine and the workflows' libraries and opens the database: both take about as long
for a few hundred MB, and only one of them needs the interpreter lock.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from geoetl.cli.render import console
from geoetl.cli.state import State, get_state
from geoetl.errors import InputError
from geoetl.ingest import WORKFLOWS, detect_kind, job_request, store_in_bronze

if TYPE_CHECKING:
    from geoetl.engine.models import JobView


def ingest_file(
    state: State, path: Path, *, quiet: bool, options: dict[str, Any] | None = None
) -> JobView:
    """Store ``path`` in bronze and run its workflow here; the finished job."""
    from geoetl.cli.main import run_in_process
    from geoetl.storage.objectstore import ObjectStore

    kind = detect_kind(path.name, str(path))
    assert state.settings.storage_url is not None
    objects = ObjectStore(state.settings.storage_url)
    with ThreadPoolExecutor(1, thread_name_prefix="geoetl-bronze") as pool:
        stored = pool.submit(store_in_bronze, objects, path)
        platform = state.platform  # imports, connects and migrates meanwhile,
        platform.workflows.get(WORKFLOWS[kind])  # and imports the workflow's libraries
        source = stored.result()
    workflow, params = job_request(kind, source, options or {})
    from geoetl.auth.principal import LOCAL_ADMIN
    from geoetl.publish import authorize

    params, level = authorize(platform, LOCAL_ADMIN, platform.workflows.get(workflow), params)
    job_id, _ = platform.store.submit(
        workflow, params, submitted_by=LOCAL_ADMIN.name, access_level=level
    )
    return run_in_process(state, job_id, quiet=quiet)


def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A raster or vector file (or .zip) to publish.")],
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
    keep_z: Annotated[bool, typer.Option(help="Vector: keep Z coordinates.")] = False,
    csv_lat: Annotated[str | None, typer.Option(help="CSV latitude column.")] = None,
    csv_lon: Annotated[str | None, typer.Option(help="CSV longitude column.")] = None,
    csv_wkt: Annotated[str | None, typer.Option(help="CSV WKT geometry column.")] = None,
    access_level: Annotated[str, typer.Option(help="public, ouo or restricted.")] = "ouo",
    strict: Annotated[bool, typer.Option(help="Raster: warnings become errors.")] = False,
    replace: Annotated[
        bool, typer.Option(help="Replace an item of the same id published from another file.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the finished job.")] = False,
) -> None:
    """Publish a file: validate, convert to cloud-native form, catalog and serve it."""
    from geoetl.cli.main import finish

    if not path.exists():
        raise InputError(f"{path} is not a file")
    state = get_state(ctx)
    view = ingest_file(
        state,
        path,
        quiet=as_json,
        options={
            "collection_id": collection,
            "item_id": item_id,
            "dataset_id": dataset_id,
            "layer": layer,
            "output_tier": tier,
            "target_crs": target_crs,
            "input_crs": input_crs,
            "raster_type": raster_type,
            "keep_z": keep_z or None,
            "csv_lat": csv_lat,
            "csv_lon": csv_lon,
            "csv_wkt": csv_wkt,
            "access_level": access_level,
            "strict_mode": strict or None,
            "replace": replace or None,
        },
    )
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
