"""process_raster's tasks for a big raster: one per window, then one per tier to assemble.

:mod:`geoetl.raster.windows` does the raster work. Here: the plan's items, where the
parts wait (``tmp/{job_id}/parts/``, in the object store, so a worker on any machine
writes or reads them), checkpoints (a retried window whose part is stored is not
written again; a retried assembly whose COG is staged is not redone), progress per
window, and removing the parts once the item is staged. A failed job leaves nothing
published: the parts and any staged COG are under ``tmp/{job_id}/`` (or recorded as the
reserved version's objects), which the janitor removes when the job ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from geoetl import gdalsafe
from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import StageResults
from geoetl.errors import InputError
from geoetl.raster.inspect import RasterInfo
from geoetl.raster.profiles import Tier, cog_profile, tiers_for

if TYPE_CHECKING:
    from geoetl.raster.windows import SplitPlan
    from geoetl.workflows.process_raster import ProcessRasterParams


def split_of(validated: Mapping[str, Any]) -> SplitPlan | None:
    """The windows validate planned, or None for a single-pass conversion."""
    from geoetl.raster.windows import SplitPlan

    found = validated.get("split")
    return None if found is None else SplitPlan.model_validate(found)


def plan_windows(validated: Mapping[str, Any]) -> list[dict[str, int]]:
    """One item per window of a split conversion."""
    plan = split_of(validated)
    return [] if plan is None else [{"window": i} for i in range(plan.windows)]


def plan_assembly(params: ProcessRasterParams, results: StageResults) -> list[str]:
    """One assembly task per tier of a split conversion; none otherwise."""
    validated = results["validate"]
    if validated.get("unchanged") or split_of(validated) is None:
        return []
    return list(tiers_for(params.output_tier, _info(validated).raster_type))


def part_key(job_id: str, index: int) -> str:
    """Where window ``index``'s part waits for assembly."""
    return f"{parts_prefix(job_id)}{index:05d}.tif"


def parts_prefix(job_id: str) -> str:
    """The folder of a job's parts."""
    return f"tmp/{job_id}/parts/"


def _info(validated: Mapping[str, Any]) -> RasterInfo:
    from geoetl.workflows.process_raster import info_of

    return info_of(validated)


def _profile(params: ProcessRasterParams, info: RasterInfo, tier: Tier) -> Any:
    return cog_profile(info.raster_type, tier, info.dtype, params.jpeg_quality)


def write_window(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Write one window's part to the object store (a task of the cog stage)."""
    from geoetl.raster.windows import write_part
    from geoetl.workflows.process_raster import job_source

    validated = ctx.results["validate"]
    plan = split_of(validated)
    if plan is None:
        raise InputError("this job's raster was not planned in windows; resubmit the job")
    index = int(ctx.item["window"])
    key = part_key(ctx.job_id, index)
    objects = ctx.platform.objects
    if "part" in ctx.checkpoints and objects.exists(key):
        return dict(ctx.checkpoints["part"])
    info = _info(validated)
    # The warp's resampling is the raster type's, the same for every tier.
    profile = _profile(params, info, tiers_for(params.output_tier, info.raster_type)[0])
    message = f"writing window {index + 1} of {plan.windows}"
    ctx.progress(0, 1, message)
    source = job_source(params, ctx, ctx.scratch / "source")
    out = ctx.scratch / "part.tif"

    def report(fraction: float) -> None:
        ctx.progress(round(fraction, 3), 1, message)

    write_part(source, info, profile, plan, index, out, report)
    ctx.raise_if_cancelled()
    size = out.stat().st_size
    objects.move_file(out, key)
    window = plan.window(index)
    done = {
        "window": index,
        "part_key": key,
        "row_off": int(window.row_off),
        "rows": int(window.height),
        "size_bytes": size,
    }
    ctx.checkpoint("part", done)
    return done


def assemble_tier(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Assemble this tier's COG from the windows' parts and stage it (as write_tier)."""
    from geoetl.raster.windows import assemble_cog
    from geoetl.workflows.process_raster import stage_cog, staging_key

    validated = ctx.results["validate"]
    plan = split_of(validated)
    if plan is None:
        raise InputError("this job's raster was not planned in windows; resubmit the job")
    tier = str(ctx.item)
    key = staging_key(ctx, params, tier, int(validated["version"]))
    objects = ctx.platform.objects
    if "staged" in ctx.checkpoints and objects.exists(key):
        return dict(ctx.checkpoints["staged"])
    written = sorted(ctx.results["cog"], key=lambda part: int(part["window"]))
    keys = [str(part["part_key"]) for part in written]
    if [int(p["window"]) for p in written] != list(range(plan.windows)):
        raise InputError("window parts are missing; resubmit the job")
    for part in keys:
        if not objects.exists(part):
            raise InputError(f"window part {part} is missing; resubmit the job")
    info = _info(validated)
    profile = _profile(params, info, tier)  # type: ignore[arg-type]
    message = f"assembling {tier} COG from {plan.windows} windows"
    ctx.progress(0, 1, message)

    def report(fraction: float) -> None:
        ctx.progress(round(fraction, 3), 1, message)

    out = ctx.scratch / "cog.tif"
    # GDAL reads a local store's parts in place. From a remote store it may fetch only
    # one named file per read (geoetl.gdalsafe), so the parts are downloaded (to disk:
    # the COG driver streams them from there).
    downloads = ctx.scratch / "parts"
    downloads.mkdir(parents=True, exist_ok=True)
    paths = [
        objects.gdal_path(k)
        if objects.is_local
        else str(objects.local_copy(k, downloads / k.rsplit("/", 1)[-1]))
        for k in keys
    ]
    env = gdalsafe.rasterio_env_kwargs(gdalsafe.gdal_options(None))
    result = assemble_cog(
        paths,
        plan,
        out,
        info,
        profile,
        ctx.scratch / "work",
        gdal_env=env,
        progress=report,
    )
    ctx.raise_if_cancelled()
    facts = {**result.model_dump(), "tier": tier, "windows": plan.windows}
    return stage_cog(params, ctx, validated, out, key, facts)


def remove_parts(ctx: TaskContext) -> None:
    """Delete the job's window parts (once every tier's COG is staged)."""
    ctx.platform.objects.delete_prefix(parts_prefix(ctx.job_id))
