"""``POST /ingest``: upload a file and publish it, as ``geoetl ingest`` does from a shell.

The request body is the file itself (``curl --data-binary @dem.tif
'…/ingest?filename=dem.tif'``). It is streamed to a staging object and hashed on the
way, stored in bronze under its SHA-256, and the raster or vector workflow is
submitted; the running workers do the rest. The answer is the job (202, with a
``Location`` to poll). Uploading the same file with the same options again returns the
same job. A broken or oversized upload leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from geoetl.api.deps import PlatformDep
from geoetl.api.jobs import with_links
from geoetl.engine.models import JobView
from geoetl.engine.workflow import validate_params
from geoetl.errors import InputError, TooLarge
from geoetl.ingest import RASTER_SUFFIXES, detect_kind, job_request

router = APIRouter(tags=["ingest"])

# Request-body pieces are gathered to this size before each write to the store.
_WRITE_BYTES = 4 * 1024 * 1024


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
    strict_mode: Annotated[bool | None, Query(description="Raster: warnings fail.")] = None,
    keep_z: Annotated[bool | None, Query(description="Vector: keep Z coordinates.")] = None,
    csv_lat: Annotated[str | None, Query(description="CSV latitude column.")] = None,
    csv_lon: Annotated[str | None, Query(description="CSV longitude column.")] = None,
    csv_wkt: Annotated[str | None, Query(description="CSV WKT geometry column.")] = None,
    access_level: Annotated[str | None, Query(description="public, ouo or restricted.")] = None,
) -> JobView:
    """Upload a file and submit the job publishing it; 202 with the job."""
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
        "strict_mode": strict_mode,
        "keep_z": keep_z,
        "csv_lat": csv_lat,
        "csv_lon": csv_lon,
        "csv_wkt": csv_wkt,
        "access_level": access_level,
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
        source, _sha256 = await run_in_threadpool(upload.commit)
    except BaseException:
        # Not awaited: on a client that went away the request is being cancelled, and an
        # await could be interrupted before the partial upload is gone.
        upload.abort()
        raise
    kind = await run_in_threadpool(detect_kind, filename, objects.gdal_path(source))
    workflow, params = job_request(kind, source, options)
    job_id, idempotent = await run_in_threadpool(platform.store.submit, workflow, params)
    view = with_links(request, await run_in_threadpool(platform.queries.job, job_id))
    view.idempotent = idempotent
    response.headers["Location"] = str(request.url_for("get_job", job_id=job_id))
    return view
