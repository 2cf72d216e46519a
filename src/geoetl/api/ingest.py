"""``POST /ingest``: upload a file and publish it, as ``geoetl ingest`` does from a shell.

The request body is the file itself (``curl --data-binary @dem.tif
'…/ingest?filename=dem.tif'``). It is streamed to a staging object and hashed on the
way, stored in bronze under its SHA-256, and the raster or vector workflow is
submitted; the running workers do the rest. The answer is the job (202, with a
``Location`` to poll). Uploading the same file with the same options again returns the
same job. A broken or oversized upload leaves nothing behind.
"""

from __future__ import annotations

import shutil
import unicodedata
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from geoetl.api.deps import PlatformDep
from geoetl.api.jobs import check_active_jobs, submit_as, with_links
from geoetl.api.security import PublisherDep
from geoetl.auth.principal import level_above
from geoetl.engine.models import JobView
from geoetl.engine.workflow import validate_params
from geoetl.errors import Forbidden, GeoEtlError, InputError, TooLarge
from geoetl.gdalsafe import bronze_file, check_crs_text
from geoetl.ingest import RASTER_SUFFIXES, Kind, detect_kind, job_request
from geoetl.platform import Platform
from geoetl.publish import authorize

router = APIRouter(tags=["ingest"])

# Request-body pieces are gathered to this size before each write to the store.
_WRITE_BYTES = 4 * 1024 * 1024
# Unicode categories a file name may not hold: controls, format characters (bidi
# overrides such as U+202E, zero-width joiners), unassigned, private use, surrogates.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cn", "Co", "Cs"}


def check_upload_name(filename: str) -> None:
    """InputError for a name that is not a plain file name.

    Refused: empty names, paths (slashes, backslashes, ``..``), names over 200 bytes, and
    NUL, control, bidi or other invisible format characters, which make a name look
    like something else in listings and logs.
    """
    if not filename or filename in (".", ".."):
        raise InputError("filename is empty; pass the file's name, e.g. filename=dem.tif")
    if "/" in filename or "\\" in filename or Path(filename).name != filename:
        raise InputError(f"filename {filename!r} must be a plain file name, not a path")
    bad = sorted(
        {f"U+{ord(c):04X}" for c in filename if unicodedata.category(c) in _REFUSED_CATEGORIES}
    )
    if bad:
        raise InputError(
            f"filename contains control or invisible characters ({', '.join(bad)}); rename the file"
        )


def _check_level(platform: Platform, level: str | None, clearance: str, name: str) -> None:
    # Before taking the upload: a level the caller may not publish is refused at once.
    wanted = (level or "ouo").strip().lower()
    if wanted not in ("public", "ouo", "restricted"):
        return  # the params' validation names the valid ones
    if level_above(wanted, clearance) or level_above(wanted, platform.settings.audience):
        raise Forbidden(
            f"{name} may not publish {wanted} data here (clearance {clearance}, deployment "
            f"serves up to {platform.settings.audience}); pass a lower access_level"
        )


@router.post(
    "/ingest",
    status_code=202,
    response_model=JobView,
    openapi_extra={
        "requestBody": {
            "description": "The file's bytes (a GeoTIFF, a GeoPackage, a zipped shapefile, …).",
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def ingest_upload(
    request: Request,
    response: Response,
    platform: PlatformDep,
    caller: PublisherDep,
    filename: Annotated[str, Query(description="The file's name; its suffix tells the format.")],
    collection_id: Annotated[str | None, Query(description="STAC collection id.")] = None,
    item_id: Annotated[str | None, Query(description="Raster: STAC item id.")] = None,
    dataset_id: Annotated[str | None, Query(description="Vector: dataset id.")] = None,
    layer: Annotated[str | None, Query(description="Vector: load only this layer.")] = None,
    output_tier: Annotated[
        str | None, Query(description="Raster: visualization, analysis, archive or all.")
    ] = None,
    target_crs: Annotated[
        str | None, Query(description="Target CRS; for a raster 'native' keeps the file's.")
    ] = None,
    input_crs: Annotated[str | None, Query(description="CRS of a file that has none.")] = None,
    raster_type: Annotated[str | None, Query(description="Raster: auto, rgb, dem, …")] = None,
    jpeg_quality: Annotated[int | None, Query(ge=1, le=100)] = None,
    variable: Annotated[
        str | None, Query(description="NetCDF/HDF5: the variable to publish.")
    ] = None,
    time_as: Annotated[
        str | None, Query(description="NetCDF: time steps as 'bands' (default) or 'items'.")
    ] = None,
    layout: Annotated[
        str | None,
        Query(description="Raster: 'cog' (default) or 'tiles': one COG and item per tile."),
    ] = None,
    tile_size: Annotated[
        int | None, Query(description="Raster, layout=tiles: tile px, a multiple of 512.")
    ] = None,
    strict_mode: Annotated[bool | None, Query(description="Raster: warnings fail.")] = None,
    keep_z: Annotated[bool | None, Query(description="Vector: keep Z coordinates.")] = None,
    csv_lat: Annotated[str | None, Query(description="CSV latitude column.")] = None,
    csv_lon: Annotated[str | None, Query(description="CSV longitude column.")] = None,
    csv_wkt: Annotated[str | None, Query(description="CSV WKT geometry column.")] = None,
    access_level: Annotated[str | None, Query(description="public, ouo or restricted.")] = None,
    replace: Annotated[
        bool | None, Query(description="Replace an item of that id from another file.")
    ] = None,
) -> JobView:
    """Upload a file and submit the job publishing it; 202 with the job. Publishers."""
    check_upload_name(filename)
    _check_level(platform, access_level, caller.clearance, caller.name)
    for option, value in (("target_crs", target_crs), ("input_crs", input_crs)):
        if value is not None and value.strip().lower() != "native":
            check_crs_text(value, option)  # a CRS that reads files or URLs: 400 at once
    await run_in_threadpool(check_active_jobs, platform, caller)
    options: dict[str, Any] = {
        "collection_id": collection_id,
        "item_id": item_id,
        "dataset_id": dataset_id,
        "layer": layer,
        "output_tier": output_tier,
        "target_crs": target_crs,
        "input_crs": input_crs,
        "raster_type": raster_type,
        "jpeg_quality": jpeg_quality,
        "variable": variable,
        "time_as": time_as,
        "layout": layout,
        "tile_size": tile_size,
        "strict_mode": strict_mode,
        "keep_z": keep_z,
        "csv_lat": csv_lat,
        "csv_lon": csv_lon,
        "csv_wkt": csv_wkt,
        "access_level": access_level,
        "replace": replace,
    }
    if Path(filename).suffix.lower() in RASTER_SUFFIXES:
        # A raster by its name: check the options before taking the upload (422 at once).
        workflow, params = job_request("raster", f"bronze/{'0' * 64}/{filename}", options)
        validate_params(platform.workflows.get(workflow), params)
    objects = platform.objects
    limit = platform.settings.upload_max_mb * 1024 * 1024
    upload = await run_in_threadpool(objects.begin_upload, filename)
    try:
        pending = bytearray()
        async for piece in request.stream():
            pending += piece
            if upload.size + len(pending) > limit:
                raise TooLarge(
                    f"the upload is larger than {platform.settings.upload_max_mb} MiB "
                    "(GEOETL_UPLOAD_MAX_MB); put large files in bronze and POST /jobs"
                )
            if len(pending) >= _WRITE_BYTES:
                await run_in_threadpool(upload.write, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(upload.write, bytes(pending))
        if upload.size == 0:
            raise InputError("the request body is empty: send the file's bytes as the body")
        fresh = not await run_in_threadpool(objects.exists, f"bronze/{upload.hexdigest}/{filename}")
        source, _sha256 = await run_in_threadpool(upload.commit)
    except BaseException:
        # Not awaited: on a client that went away the request is being cancelled, and an
        # await could be interrupted before the partial upload is gone.
        upload.abort()
        raise
    try:
        await run_in_threadpool(platform.tokens.record_upload, source, caller.name)
        kind = await run_in_threadpool(stored_kind, platform, filename, source)
        workflow, params = job_request(kind, source, options)
        wf = platform.workflows.get(workflow)
        params, level = await run_in_threadpool(authorize, platform, caller, wf, params)
        job_id, idempotent = await run_in_threadpool(
            submit_as, platform, caller, workflow, params, level
        )
    except GeoEtlError:
        if fresh:  # a refused upload leaves nothing behind in bronze
            await run_in_threadpool(objects.delete_prefix, str(Path(source).parent))
        raise
    view = with_links(request, await run_in_threadpool(platform.queries.job, job_id))
    view.idempotent = idempotent
    response.headers["Location"] = str(request.url_for("get_job", job_id=job_id))
    return view


def stored_kind(platform: Platform, filename: str, source: str) -> Kind:
    """Raster or vector, for an upload stored at the bronze key ``source``.

    Read where it is stored (GDAL reads a remote object's header in place); a zip on a
    remote store is fetched to scratch first, as its member list is read locally.
    """
    objects = platform.objects
    if objects.is_local or not filename.lower().endswith(".zip"):
        return detect_kind(filename, bronze_file(objects, source))
    folder = platform.settings.scratch_dir / "uploads" / uuid.uuid4().hex
    try:
        local = objects.get_file(source, folder / filename)
        return detect_kind(filename, str(local))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
