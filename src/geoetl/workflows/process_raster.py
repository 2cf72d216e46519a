"""process_raster: validate → Cloud-Optimized GeoTIFF(s) → STAC item."""

from __future__ import annotations

import importlib
import shutil
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from geoetl import gdalsafe, lifecycle
from geoetl.catalog.models import AccessLevel
from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.errors import InputError
from geoetl.publish import Target, ensure_target_free, slug
from geoetl.raster.cog import write_cog
from geoetl.raster.inspect import DeclaredType, RasterInfo, inspect_raster, parse_crs
from geoetl.raster.profiles import TierChoice, cog_profile, tiers_for
from geoetl.raster.source import bronze_raster
from geoetl.storage.objectstore import LINEAGE, sha256_file
from geoetl.versions import Version
from geoetl.workflows import split_raster
from geoetl.workflows.stages import hold_for_approval, previous_result, publish


class ProcessRasterParams(BaseModel):
    """Parameters of process_raster (SPEC "Raster processing")."""

    source: str = Field(description="Key of the file in the bronze zone.")
    collection_id: str = Field(
        default="system-rasters", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
    )
    item_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,149}$",
        description="Default: from the file name (and the tier unless 'analysis').",
    )
    output_tier: TierChoice = "analysis"
    target_crs: str | None = Field(default="EPSG:4326", description="null keeps the native CRS.")
    input_crs: str | None = Field(
        default=None,
        description="Used when the file has no CRS, or only a local (engineering) one.",
    )
    raster_type: DeclaredType = "auto"
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    strict_mode: bool = False
    access_level: AccessLevel = "ouo"
    replace: bool = Field(
        default=False, description="Replace an item of that id published from another file."
    )
    batch_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$",
        description="The landing-zone batch this file came in (kept in its lineage).",
    )
    variable: str | None = Field(
        default=None,
        description="NetCDF/HDF5: the variable to publish (default: the file's only one).",
    )
    time_as: Literal["bands", "items"] = Field(
        default="bands",
        description="NetCDF: time steps as the bands of one item, or one item each "
        "(process_raster_times).",
    )
    time_index: int | None = Field(
        default=None, ge=0, description="NetCDF: publish only this time step (0-based)."
    )
    layout: Literal["cog", "tiles"] = Field(
        default="cog",
        description="cog: one COG and item; tiles: the raster cut into tiles of tile_size "
        "px, one COG and item each, served as one mosaic (process_raster_tiles).",
    )
    tile_size: int = Field(
        default=8192,
        ge=512,
        le=65536,
        multiple_of=512,
        description="layout=tiles: the tiles' width and height in pixels of the output.",
    )

    @field_validator("access_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        # Case-insensitive on input; the Literal rejects anything else with a 422.
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("source")
    @classmethod
    def _bronze(cls, v: str) -> str:
        if not v.startswith("bronze/"):
            raise ValueError("source must be a key in the bronze zone (bronze/…)")
        return v

    @field_validator("variable")
    @classmethod
    def _variable(cls, v: str | None) -> str | None:
        try:
            return None if v is None else gdalsafe.check_variable_name(v)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    def resolved_item_id(self) -> str:
        """The item id: given, or derived from the source file name and tier."""
        if self.item_id:
            return self.item_id
        stem = slug(PurePosixPath(self.source).stem)
        if self.variable:
            stem = slug(f"{stem}_{self.variable.strip('/')}")
        return stem if self.output_tier == "analysis" else f"{stem}_{self.output_tier}"

    def publication_target(self) -> Target:
        """The STAC item this job publishes."""
        return Target(self.collection_id, self.resolved_item_id(), "item_id", bool(self.item_id))


def validate(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Open and check the source, and number the version this job publishes.

    InputError tells the user what to fix. The same source with the same params as
    the current version is ``unchanged``: no COG is written, nothing new is published.
    """
    objects = ctx.platform.objects
    if not objects.exists(params.source):
        raise InputError(f"source {params.source} does not exist in the object store")
    ensure_target_free(ctx.platform, params)
    ctx.progress(0, 1, "inspecting")
    if params.target_crs is not None:
        parse_crs(params.target_crs, "target_crs")  # refused before any COG is written
    if params.time_as == "items" and params.time_index is None:
        raise InputError(
            "time_as=items publishes one item per time step: submit process_raster_times "
            "(geoetl ingest --time-as items does)"
        )
    if params.layout == "tiles":
        raise InputError(
            "layout=tiles publishes one item per tile: submit process_raster_tiles "
            "(geoetl ingest --tiles SIZE does)"
        )
    source = job_source(params, ctx, ctx.scratch)
    info = inspect_raster(
        source,
        source.name,
        input_crs=params.input_crs,
        declared_type=params.raster_type,
        strict=params.strict_mode,
    )
    version = lifecycle.reserve(
        ctx.platform,
        kind="raster",
        collection_id=params.collection_id,
        item_id=params.resolved_item_id(),
        job_id=ctx.job_id,
        params=params,
        workflow=ctx.workflow,
        batch_id=params.batch_id,
    )
    return {
        **info.model_dump(mode="json"),
        "version": version.version,
        "unchanged": version.job_id != ctx.job_id,
        # A big raster's COG is written in windows (geoetl.raster.windows).
        "split": split_plan(ctx, params, source, info),
    }


def split_plan(
    ctx: TaskContext, params: ProcessRasterParams, source: Any, info: RasterInfo
) -> dict[str, Any] | None:
    """The windows of a raster above ``raster_split_bytes``; None for one COG task."""
    from geoetl.raster.windows import plan_split

    split_bytes = ctx.platform.settings.raster_split_bytes
    plan = plan_split(source, info, params.target_crs, split_bytes)
    return None if plan is None else plan.model_dump(mode="json")


def _info(results: Mapping[str, Any]) -> RasterInfo:
    return info_of(results["validate"])


def info_of(validated: Mapping[str, Any]) -> RasterInfo:
    """The raster facts of a validate result (without its version fields)."""
    found = dict(validated)
    found.pop("version", None)
    found.pop("unchanged", None)
    found.pop("split", None)
    return RasterInfo.model_validate(found)


def version_of(
    ctx: TaskContext, params: ProcessRasterParams, validated: Mapping[str, Any]
) -> Version:
    """The version a validate result reserved."""
    version: Version = ctx.platform.versions.get(
        params.collection_id, params.resolved_item_id(), int(validated["version"])
    )
    return version


def source_downloads(ctx: TaskContext) -> Path:
    """Where a remote source is downloaded: shared by the job's tasks on this machine.

    Under the job's scratch folder, which the janitor removes once the job ended.
    """
    return ctx.scratch.parent / "source"


def plan_tiers(params: ProcessRasterParams, results: StageResults) -> list[Any]:
    """One COG task per tier to produce (none when the version is unchanged).

    A big raster (``split`` planned by validate) gets one task per window instead.
    """
    if results["validate"].get("unchanged"):
        return []
    if results["validate"].get("split"):
        return split_raster.plan_windows(results["validate"])
    info = _info(results)
    return list(tiers_for(params.output_tier, info.raster_type))


def tmp_key(job_id: str, item_id: str, tier: str) -> str:
    """Where a COG waits until the catalog stage publishes it."""
    return f"tmp/{job_id}/{item_id}_{tier}.tif"


def silver_key(params: ProcessRasterParams, tier: str, version: int = 1) -> str:
    """The published COG's key (versions after the first in a ``v{N}/`` folder)."""
    prefix = lifecycle.cog_prefix(params.collection_id, version)
    return f"{prefix}/{params.resolved_item_id()}_{tier}.tif"


def staging_key(ctx: TaskContext, params: ProcessRasterParams, tier: str, version: int) -> str:
    """Where the COG task stores its COG.

    On a folder it waits under tmp/ and the catalog stage renames it into silver. On S3
    and Azure a "rename" is a server-side copy of the whole object (as slow as the
    upload), so the COG is uploaded to its silver key at once; it is served only once
    the catalog stage has recorded the item.
    """
    if ctx.platform.objects.is_local:
        return tmp_key(ctx.job_id, params.resolved_item_id(), tier)
    return silver_key(params, tier, version)


# What the COG check and the catalog stage import (rio-cogeo with morecantile and pyproj,
# pystac, rio-stac): about 0.1 s of a cold `geoetl ingest`, imported on a thread while
# GDAL, which releases the interpreter lock, writes the COG.
AFTER_COG_MODULES = ("rio_cogeo.cogeo", "geoetl.raster.stac")


def preload(modules: tuple[str, ...]) -> None:
    """Import ``modules`` on a daemon thread; a failure surfaces where they are used."""

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:
                return

    threading.Thread(target=run, name="geoetl-preload", daemon=True).start()


def make_cog(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Write this tier's COG in scratch and stage it under tmp/ (published by catalog)."""
    if isinstance(ctx.item, dict):  # a window of a big raster
        return split_raster.write_window(params, ctx)
    return write_tier(params, ctx, ctx.results["validate"], str(ctx.item))


def write_tier(
    params: ProcessRasterParams, ctx: TaskContext, validated: Mapping[str, Any], tier: str
) -> dict[str, Any]:
    """Write one tier's COG of a validated source and stage it (a task's work)."""
    info = info_of(validated)
    key = staging_key(ctx, params, tier, int(validated["version"]))
    if "staged" in ctx.checkpoints and ctx.platform.objects.exists(key):
        return dict(ctx.checkpoints["staged"])
    profile = cog_profile(info.raster_type, tier, info.dtype, params.jpeg_quality)  # type: ignore[arg-type]
    preload(AFTER_COG_MODULES)
    message = f"writing {tier} COG"
    ctx.progress(0, 1, message)
    source = job_source(params, ctx, ctx.scratch / "source")
    out = ctx.scratch / "cog.tif"

    def report(fraction: float) -> None:
        # Raises TaskCancelled once the job is cancelled: GDAL stops writing within moments.
        # Reporting also makes the heartbeat ask about the task every tick.
        ctx.progress(round(fraction, 3), 1, message)

    result = write_cog(
        source,
        out,
        info,
        profile,
        params.target_crs,
        ctx.scratch / "work",
        warp_memory_bytes=ctx.platform.settings.raster_warp_memory_mb * 1024 * 1024,
        progress=report,
    )
    ctx.raise_if_cancelled()  # a finished COG of a cancelled job is not staged
    return stage_cog(params, ctx, validated, out, key, {**result.model_dump(), "tier": tier})


def stage_cog(
    params: ProcessRasterParams,
    ctx: TaskContext,
    validated: Mapping[str, Any],
    out: Path,
    key: str,
    facts: dict[str, Any],
) -> dict[str, Any]:
    """Store a written COG at its staging ``key`` and checkpoint what the catalog needs."""
    # The STAC item's file fields, from the local file: the catalog stage reads the
    # stored COG in place and never downloads it.
    digest = sha256_file(out)
    if key.startswith("silver/"):  # the janitor knows whose it is before it is published
        version = version_of(ctx, params, validated)
        ctx.platform.versions.add_objects(
            version.collection_id, version.item_id, version.version, [key]
        )
    # An upload (multipart) on S3 and Azure, tagged with the lineage record it belongs to.
    lineage = f"{params.collection_id}/{params.resolved_item_id()}@v{validated['version']}"
    ctx.platform.objects.move_file(out, key, metadata={LINEAGE: lineage})
    staged = {**facts, "tmp_key": key, "sha256": digest}
    ctx.checkpoint("staged", staged)
    return staged


def job_source(params: ProcessRasterParams, ctx: TaskContext, scratch: Path) -> Any:
    """The job's raster (or NetCDF/HDF5 variable) as a checked file on this machine."""
    return bronze_raster(
        ctx.platform.objects,
        params.source,
        scratch,
        source_downloads(ctx),
        variable=params.variable,
        time_index=params.time_index,
    )


def register(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Move the staged COGs to silver and stage the STAC item as a draft version."""
    validated = ctx.results["validate"]
    if validated.get("unchanged"):
        shutil.rmtree(source_downloads(ctx), ignore_errors=True)
        version = version_of(ctx, params, validated)
        return {
            "unchanged": True,
            "item_id": version.item_id,
            "version": version.version,
            "previous": previous_result(ctx, version),
        }
    cogs = ctx.results["assemble"] or ctx.results["cog"]  # assembled from windows, or not
    staged = stage_item(params, ctx, validated, cogs)
    if ctx.results["assemble"]:
        split_raster.remove_parts(ctx)
    # No later stage reads the source: the copy downloaded for the job's tasks on this
    # machine can go (the janitor removes the job's scratch too, but a CLI run has none).
    shutil.rmtree(source_downloads(ctx), ignore_errors=True)
    return staged


def stage_item(
    params: ProcessRasterParams,
    ctx: TaskContext,
    validated: Mapping[str, Any],
    cogs: list[dict[str, Any]],
) -> dict[str, Any]:
    """Move one source's staged COGs to silver and stage its STAC item as a draft."""
    version = version_of(ctx, params, validated)
    objects = ctx.platform.objects
    item_id = params.resolved_item_id()
    published = []
    for cog in cogs:
        key = silver_key(params, cog["tier"], version.version)
        if cog["tmp_key"] != key and objects.exists(cog["tmp_key"]):
            objects.move(cog["tmp_key"], key)
        elif not objects.exists(key):
            raise InputError(f"staged COG {cog['tmp_key']} is missing; resubmit the job")
        published.append({**cog, "key": key})
    primary = next((c for c in published if c["tier"] == "analysis"), published[0])
    extras: dict[str, tuple[Path | dict[str, Any], str, str]] = {
        c["tier"]: (_file_facts(c), c["key"], f"{c['tier']} COG ({c['compression']})")
        for c in published
        if c is not primary
    }
    source_sha = PurePosixPath(params.source).parts[1]
    info = validated
    now = datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")
    properties = {
        "geoetl:job_id": ctx.job_id,
        "geoetl:workflow": ctx.workflow,
        "geoetl:access_level": params.access_level,
        "geoetl:source": {"key": params.source, "sha256": source_sha},
        "geoetl:raster_type": info["raster_type"],
        "geoetl:tier": primary["tier"],
        "geoetl:warnings": info["warnings"],
        "created": now,
        "updated": now,
    }
    from geoetl.raster.stac import build_item

    with gdalsafe.open_stored_raster(objects, primary["key"]) as cog:  # read in place
        item = build_item(
            cog,
            item_id=item_id,
            collection_id=params.collection_id,
            href=primary["key"],
            properties=properties,
            extra_assets=extras,
            files=_file_facts(primary),
        )
    lifecycle.stage_draft(ctx.platform, version, item, [c["key"] for c in published])
    return {
        "item_id": item_id,
        "cogs": published,
        "version": version.version,
        "approval": lifecycle.needs_approval(ctx.platform, params.collection_id),
    }


def _file_facts(cog: dict[str, Any]) -> dict[str, Any]:
    from geoetl.raster.stac import file_facts

    return file_facts(int(cog["size_bytes"]), str(cog["sha256"]))


def summarize(params: ProcessRasterParams, results: StageResults) -> dict[str, Any]:
    """The job result users see."""
    info = results["validate"]
    catalog = results["catalog"]
    if catalog.get("unchanged"):
        return unchanged_result(params, results)
    cogs = catalog["cogs"]
    primary = next((c for c in cogs if c["tier"] == "analysis"), cogs[0])
    return {
        "item_id": catalog["item_id"],
        "collection_id": params.collection_id,
        "raster_type": info["raster_type"],
        "cog": primary["key"],
        "size_bytes": primary["size_bytes"],
        "compression": primary["compression"],
        "crs": primary["crs"],
        "reprojected": primary["reprojected"],
        "tiers": {c["tier"]: c["key"] for c in cogs},
        "warnings": info["warnings"],
        "version": catalog["version"],
        "urls": raster_urls(params.collection_id, catalog["item_id"]),
    }


def unchanged_result(params: Any, results: StageResults) -> dict[str, Any]:
    """An unchanged re-publication's result: the published version's, marked unchanged."""
    version = int(results["validate"]["version"])
    previous = results["catalog"].get("previous") or {}
    return {
        **previous,
        "collection_id": params.collection_id,
        "version": version,
        "unchanged": True,
        "warnings": [
            *previous.get("warnings", []),
            f"the same source with the same options is already published as version "
            f"{version}: nothing new was published",
        ],
    }


def collection_urls(collection_id: str) -> dict[str, str]:
    """Where a collection of rasters is served as one layer, relative to the API root."""
    base = f"/raster/collections/{collection_id}"
    return {
        "stac_collection": f"/stac/collections/{collection_id}",
        "tilejson": f"{base}/WebMercatorQuad/tilejson.json",
        "tiles": f"{base}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png",
        "viewer": f"{base}/WebMercatorQuad/map.html",
    }


def raster_urls(collection_id: str, item_id: str) -> dict[str, str]:
    """Where the item is served, relative to the API root."""
    base = f"/raster/collections/{collection_id}/items/{item_id}"
    return {
        "tilejson": f"{base}/WebMercatorQuad/tilejson.json",
        "tiles": f"{base}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png",
        "preview": f"{base}/preview.png",
        "viewer": f"{base}/WebMercatorQuad/map.html",
        "stac_item": f"/stac/collections/{collection_id}/items/{item_id}",
    }


process_raster = Workflow(
    "process_raster",
    params=ProcessRasterParams,
    stages=[
        Stage("validate", validate, queue="raster"),
        Stage("cog", make_cog, plan=plan_tiers, retry=Retry(attempts=3), queue="raster"),
        Stage(
            "assemble",
            split_raster.assemble_tier,
            plan=split_raster.plan_assembly,
            retry=Retry(attempts=3),
            queue="raster",
        ),
        Stage("catalog", register, queue="raster"),
        Stage("publish", publish, hold=hold_for_approval, queue="raster"),
    ],
    finalize=summarize,
    description="Validate a raster, write Cloud-Optimized GeoTIFF(s), record a STAC item.",
)
