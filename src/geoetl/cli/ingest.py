"""``geoetl ingest PATH``: store a file in bronze, detect its kind, run its workflow here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import rasterio
import typer
from rasterio.errors import RasterioError

from geoetl.cli.render import console
from geoetl.cli.state import State, get_state
from geoetl.engine.models import JobView
from geoetl.errors import InputError


def store_in_bronze(state: State, path: Path) -> str:
    """Copy ``path`` into bronze under its content hash (the same file is stored once)."""
    key, _digest = state.platform.objects.put_content_addressed(path)
    return key


def detect_kind(path: Path) -> str:
    """``raster`` when GDAL opens it as a raster with bands, else ``vector``."""
    try:
        with rasterio.open(path) as ds:
            return "raster" if ds.count > 0 else "vector"
    except RasterioError:
        return "vector"


def ingest_file(
    state: State,
    path: Path,
    *,
    quiet: bool,
    collection: str | None = None,
    item_id: str | None = None,
    tier: str = "analysis",
    target_crs: str = "EPSG:4326",
    input_crs: str | None = None,
    raster_type: str = "auto",
    access_level: str = "ouo",
    strict: bool = False,
) -> JobView:
    """Store ``path`` in bronze and run process_raster on it here; the finished job."""
    from geoetl.cli.main import run_in_process

    if detect_kind(path) != "raster":
        raise InputError(
            f"{path.name} is not a raster GDAL can read; vector ingestion is not available yet"
        )
    key = store_in_bronze(state, path)
    params: dict[str, Any] = {
        "source": key,
        "output_tier": tier,
        "target_crs": None if target_crs.lower() == "native" else target_crs,
        "input_crs": input_crs,
        "raster_type": raster_type,
        "access_level": access_level,
        "strict_mode": strict,
    }
    if collection:
        params["collection_id"] = collection
    if item_id:
        params["item_id"] = item_id
    job_id, _ = state.platform.store.submit("process_raster", params)
    return run_in_process(state, job_id, quiet=quiet)


def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A raster (GeoTIFF, …) to publish.")],
    collection: Annotated[str | None, typer.Option(help="STAC collection id.")] = None,
    item_id: Annotated[str | None, typer.Option(help="STAC item id.")] = None,
    tier: Annotated[
        str, typer.Option(help="visualization, analysis, archive or all.")
    ] = "analysis",
    target_crs: Annotated[
        str, typer.Option(help="Target CRS, or 'native' to keep the file's.")
    ] = "EPSG:4326",
    input_crs: Annotated[str | None, typer.Option(help="CRS of a file that has none.")] = None,
    raster_type: Annotated[str, typer.Option(help="auto, rgb, rgba, dem, …")] = "auto",
    access_level: Annotated[str, typer.Option(help="public, ouo or restricted.")] = "ouo",
    strict: Annotated[bool, typer.Option(help="Warnings become errors.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the finished job.")] = False,
) -> None:
    """Publish a file: validate, convert to cloud-native form, catalog it."""
    from geoetl.cli.main import finish

    if not path.is_file():
        raise InputError(f"{path} is not a file")
    state = get_state(ctx)
    view = ingest_file(
        state,
        path,
        quiet=as_json,
        collection=collection,
        item_id=item_id,
        tier=tier,
        target_crs=target_crs,
        input_crs=input_crs,
        raster_type=raster_type,
        access_level=access_level,
        strict=strict,
    )
    job_id = view.job_id
    if as_json or view.result is None:
        finish(view, as_json=as_json)
        return
    result = view.result
    location = state.platform.objects.gdal_path(result["cog"])
    console.print(f"[green]published[/] {result['collection_id']}/{result['item_id']}")
    console.print(f"  type     {result['raster_type']}, {result['compression']}, {result['crs']}")
    console.print(f"  COG      {location}", soft_wrap=True)
    base = state.settings.public_url.rstrip("/")
    console.print(f"  viewer   {base}{result['urls']['viewer']}", soft_wrap=True)
    console.print(f"  tiles    {base}{result['urls']['tiles']}", soft_wrap=True)
    console.print(f"  preview  {base}{result['urls']['preview']}", soft_wrap=True)
    for warning in result["warnings"]:
        console.print(f"  [yellow]warning[/] {warning}")
    console.print(f"  job      {job_id}")
