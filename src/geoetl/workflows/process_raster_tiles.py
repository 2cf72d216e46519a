"""process_raster_tiles: one raster → a grid of tiles, one COG and STAC item each, one layer.

``layout=tiles`` (``geoetl ingest --tiles SIZE``): where process_raster publishes one
COG (a big one written in windows across workers and assembled), this publishes the
raster's output grid cut into tiles of ``tile_size`` px, each a COG with its own
overviews and an item ``{item}_r{row}_c{col}`` of the collection, which is served as one
layer (``/raster/collections/{id}/…``: a mosaic over a catalog search, as for
process_raster_collection). The source is inspected and the grid planned once (``grid``),
then each tile is read (or warped, with the resampling kernel of the whole grid) and
written by its own task on any worker of any machine, holding one band of rows; the
items are staged and published together. Each tile item is a dataset version like any
other (:mod:`geoetl.lifecycle`): the same source with the same options changes nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from geoetl import lifecycle
from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.errors import InputError
from geoetl.publish import ensure_target_free
from geoetl.raster.inspect import inspect_raster, parse_crs
from geoetl.raster.profiles import cog_profile, tiers_for
from geoetl.workflows import process_raster as one
from geoetl.workflows.process_raster import ProcessRasterParams
from geoetl.workflows.stages import hold_for_approval, publish_all

# More tiles than this are refused: ask for larger tiles.
MAX_TILES = 10_000
ITEM_ID_LENGTH = 150


def tile(params: ProcessRasterParams, item_id: str) -> ProcessRasterParams:
    """The single-item params of one tile."""
    return params.model_copy(update={"item_id": item_id})


def plan_grid(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Inspect the source, cut its output grid into tiles, number each tile's version."""
    from geoetl.raster.windows import plan_tiles

    objects = ctx.platform.objects
    if not objects.exists(params.source):
        raise InputError(f"source {params.source} does not exist in the object store")
    if params.time_as == "items":
        raise InputError(
            "time_as=items and layout=tiles do not go together: publish the time steps "
            "as bands (leave time_as out), or each step as one item without tiles"
        )
    ctx.progress(0, 1, "inspecting")
    if params.target_crs is not None:
        parse_crs(params.target_crs, "target_crs")  # refused before any tile is written
    source = one.job_source(params, ctx, ctx.scratch)
    info = inspect_raster(
        source,
        source.name,
        input_crs=params.input_crs,
        declared_type=params.raster_type,
        strict=params.strict_mode,
    )
    plan = plan_tiles(source, info, params.target_crs, params.tile_size)
    if plan.windows > MAX_TILES:
        raise InputError(
            f"tiles of {params.tile_size} px cut this raster ({plan.width} x {plan.height} "
            f"px) into {plan.windows} tiles, more than {MAX_TILES}: ask for larger tiles "
            "(tile_size)"
        )
    base = params.resolved_item_id()[: ITEM_ID_LENGTH - 10]
    tiles = []
    for index in range(plan.windows):
        row, col = divmod(index, plan.tile_cols)
        single = tile(params, f"{base}_r{row:03d}_c{col:03d}")
        ensure_target_free(ctx.platform, single)
        version = lifecycle.reserve(
            ctx.platform,
            kind="raster",
            collection_id=params.collection_id,
            item_id=single.resolved_item_id(),
            job_id=ctx.job_id,
            params=single,
            workflow=ctx.workflow,
            batch_id=params.batch_id,
        )
        tiles.append(
            {
                "item_id": version.item_id,
                "version": version.version,
                "unchanged": version.job_id != ctx.job_id,
            }
        )
        ctx.progress(index + 1, plan.windows, "numbering the tiles' versions")
    return {
        "info": info.model_dump(mode="json"),
        "plan": plan.model_dump(mode="json"),
        "rows": plan.tile_rows,
        "cols": plan.tile_cols,
        "tiles": tiles,
    }


def _validated(grid: Mapping[str, Any], index: int) -> dict[str, Any]:
    """What process_raster's stage functions read of a validate result, for one tile."""
    found = grid["tiles"][index]
    return {**grid["info"], "version": found["version"], "unchanged": found["unchanged"]}


def plan_cogs(params: ProcessRasterParams, results: StageResults) -> list[dict[str, Any]]:
    """One task per tile and tier (none for unchanged tiles)."""
    grid = results["grid"]
    info = one.info_of(grid["info"])
    return [
        {"index": index, "tier": tier}
        for index, found in enumerate(grid["tiles"])
        if not found["unchanged"]
        for tier in tiers_for(params.output_tier, info.raster_type)
    ]


def make_tile(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Write one tile's COG of one tier and stage it (as process_raster's write_tier)."""
    from geoetl.raster.windows import SplitPlan, write_tile

    grid = ctx.results["grid"]
    index, tier = int(ctx.item["index"]), str(ctx.item["tier"])
    single = tile(params, grid["tiles"][index]["item_id"])
    validated = _validated(grid, index)
    key = one.staging_key(ctx, single, tier, int(validated["version"]))
    if "staged" in ctx.checkpoints and ctx.platform.objects.exists(key):
        return {**ctx.checkpoints["staged"], "index": index}
    info = one.info_of(grid["info"])
    plan = SplitPlan.model_validate(grid["plan"])
    profile = cog_profile(info.raster_type, tier, info.dtype, params.jpeg_quality)  # type: ignore[arg-type]
    message = f"writing tile {index + 1} of {plan.windows} ({tier})"
    ctx.progress(0, 1, message)
    source = one.job_source(params, ctx, ctx.scratch / "source")
    out = ctx.scratch / "tile.tif"

    def report(fraction: float) -> None:
        ctx.progress(round(fraction, 3), 1, message)

    result = write_tile(source, info, profile, plan, index, out, ctx.scratch / "work", report)
    ctx.raise_if_cancelled()
    facts = {**result.model_dump(), "tier": tier}
    return {**one.stage_cog(single, ctx, validated, out, key, facts), "index": index}


def register(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Stage one STAC item per tile (published by the next stage)."""
    grid = ctx.results["grid"]
    cogs: list[dict[str, Any]] = ctx.results.get("cog") or []
    count = len(grid["tiles"])
    items = []
    versions = []
    for index, found in enumerate(grid["tiles"]):
        entry = {"item_id": found["item_id"], "version": found["version"]}
        if found["unchanged"]:
            items.append({**entry, "new": False})
            continue
        single = tile(params, found["item_id"])
        own = [c for c in cogs if int(c["index"]) == index]
        staged = one.stage_item(single, ctx, _validated(grid, index), own)
        items.append({**entry, "version": staged["version"], "new": True})
        versions.append({"item_id": staged["item_id"], "version": staged["version"]})
        ctx.progress(index + 1, count, "staging items")
    shutil.rmtree(one.source_downloads(ctx), ignore_errors=True)
    return {
        "items": items,
        "versions": versions,
        "approval": bool(versions) and lifecycle.needs_approval(ctx.platform, params.collection_id),
    }


def summarize(params: ProcessRasterParams, results: StageResults) -> dict[str, Any]:
    """The job result: the tiles' items and where the collection is served as one layer."""
    grid = results["grid"]
    items = results["catalog"]["items"]
    plan = grid["plan"]
    return {
        "collection_id": params.collection_id,
        "items": items,
        "tiles": {
            "size": params.tile_size,
            "rows": grid["rows"],
            "cols": grid["cols"],
            "grid": [int(plan["width"]), int(plan["height"])],
            "crs": plan["crs"],
        },
        "raster_type": grid["info"]["raster_type"],
        "published": sum(1 for i in items if i["new"]),
        "unchanged": sum(1 for i in items if not i["new"]),
        "warnings": grid["info"]["warnings"],
        "urls": one.collection_urls(params.collection_id),
    }


process_raster_tiles = Workflow(
    "process_raster_tiles",
    params=ProcessRasterParams,
    stages=[
        Stage("grid", plan_grid, queue="raster"),
        Stage("cog", make_tile, plan=plan_cogs, retry=Retry(attempts=3), queue="raster"),
        Stage("catalog", register, queue="raster"),
        Stage("publish", publish_all, hold=hold_for_approval, queue="raster"),
    ],
    finalize=summarize,
    description=(
        "A raster cut into tiles: one COG and STAC item each, in one collection served "
        "as a single mosaic layer."
    ),
)
