"""process_raster_times: one NetCDF variable → one COG and STAC item per time step.

``time_as=items`` (``geoetl ingest --time-as items``): where ``time_as=bands`` publishes
a variable's time steps as the bands of one item, this publishes each time step as an
item of its own, ``{item}_{YYYYMMDDTHHMMSS}``, whose datetime is the step's time, all
in one collection: a time series a STAC client can search by date. It is a fan-out of
process_raster: the time axis is read once (``times``), then each step is validated,
converted and catalogued by process_raster's own stage functions with
``time_index`` set, and the items are published together. Each item is a dataset
version like any other (:mod:`geoetl.lifecycle`).
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Mapping
from typing import Any

from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.errors import InputError
from geoetl.lifecycle import needs_approval
from geoetl.raster.profiles import tiers_for
from geoetl.workflows import process_raster as one
from geoetl.workflows.process_raster import ProcessRasterParams
from geoetl.workflows.stages import hold_for_approval, publish_all

# More time steps than this are refused: one item each is the wrong shape for them
# (publish them as bands, or split the file).
MAX_TIME_STEPS = 10_000
ITEM_ID_LENGTH = 150


def read_times(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """The variable's time steps and the item id of each."""
    from geoetl.raster import multidim
    from geoetl.raster.source import bronze_file

    objects = ctx.platform.objects
    if not objects.exists(params.source):
        raise InputError(f"source {params.source} does not exist in the object store")
    ctx.progress(0, 1, "reading the time axis")
    source = bronze_file(objects, params.source, ctx.scratch, one.source_downloads(ctx))
    if not multidim.is_container(source):
        raise InputError(
            f"{source.name} is not a NetCDF or HDF5 file; time_as=items applies only to "
            "those — leave it out"
        )
    name, axis = multidim.time_steps(source, params.variable)
    if len(axis.texts) > MAX_TIME_STEPS:
        raise InputError(
            f"variable {name} has {len(axis.texts)} time steps, more than {MAX_TIME_STEPS} "
            "items; publish it with time_as=bands or split the file"
        )
    base = ProcessRasterParams.model_validate(
        {**params.model_dump(), "variable": name}
    ).resolved_item_id()
    base = base[: ITEM_ID_LENGTH - 17]
    ids = [f"{base}_{axis.stamp(i)}" for i in range(len(axis.texts))]
    seen: Counter[str] = Counter()
    for i, item_id in enumerate(ids):  # steps within one second of each other
        seen[item_id] += 1
        if seen[item_id] > 1:
            ids[i] = f"{item_id[: ITEM_ID_LENGTH - 6]}_{i}"
    warnings = []
    if not all(axis.datetimes):
        warnings.append(
            f"the time axis uses the {axis.calendar} calendar, whose dates are not real "
            "dates: the items' datetime is the processing time; each step's time is in "
            "its band description"
        )
    return {"variable": name, "times": axis.texts, "item_ids": ids, "warnings": warnings}


def step(
    params: ProcessRasterParams, results: Mapping[str, Any], index: int
) -> ProcessRasterParams:
    """The single-item params of time step ``index``."""
    times = results["times"]
    return params.model_copy(
        update={
            "item_id": times["item_ids"][index],
            "variable": times["variable"],
            "time_index": index,
        }
    )


def plan_steps(params: ProcessRasterParams, results: StageResults) -> list[int]:
    """One validation task per time step."""
    return list(range(len(results["times"]["times"])))


def validate_step(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Validate one time step and number its item's version (as process_raster does)."""
    index = int(ctx.item)
    return {**one.validate(step(params, ctx.results, index), ctx), "index": index}


def _validated(results: Mapping[str, Any], index: int) -> dict[str, Any]:
    return dict(next(v for v in results["validate"] if int(v["index"]) == index))


def plan_cogs(params: ProcessRasterParams, results: StageResults) -> list[dict[str, Any]]:
    """One COG task per time step and tier (none for unchanged steps)."""
    out = []
    for v in sorted(results["validate"], key=lambda v: int(v["index"])):
        if v.get("unchanged"):
            continue
        info = one.info_of(v)
        for tier in tiers_for(params.output_tier, info.raster_type):
            out.append({"index": int(v["index"]), "tier": tier})
    return out


def make_cog(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Write one time step's COG of one tier."""
    index, tier = int(ctx.item["index"]), str(ctx.item["tier"])
    single = step(params, ctx.results, index)
    return {**one.write_tier(single, ctx, _validated(ctx.results, index), tier), "index": index}


def register(params: ProcessRasterParams, ctx: TaskContext) -> dict[str, Any]:
    """Stage one STAC item per time step (published by the next stage)."""
    cogs: list[dict[str, Any]] = ctx.results.get("cog") or []
    count = len(ctx.results["times"]["times"])
    items = []
    versions = []
    for index in range(count):
        validated = _validated(ctx.results, index)
        single = step(params, ctx.results, index)
        time = ctx.results["times"]["times"][index]
        if validated.get("unchanged"):
            version = one.version_of(ctx, single, validated)
            items.append(
                {"item_id": version.item_id, "version": version.version, "time": time, "new": False}
            )
            continue
        staged = one.stage_item(
            single, ctx, validated, [c for c in cogs if int(c["index"]) == index]
        )
        items.append(
            {"item_id": staged["item_id"], "version": staged["version"], "time": time, "new": True}
        )
        versions.append({"item_id": staged["item_id"], "version": staged["version"]})
        ctx.progress(index + 1, count, "staging items")
    shutil.rmtree(one.source_downloads(ctx), ignore_errors=True)
    return {
        "items": items,
        "versions": versions,
        "approval": bool(versions) and needs_approval(ctx.platform, params.collection_id),
    }


def summarize(params: ProcessRasterParams, results: StageResults) -> dict[str, Any]:
    """The job result: the variable, one item per time step, and where they are served."""
    items = results["catalog"]["items"]
    validated = results["validate"]
    warnings = list(results["times"]["warnings"])
    for v in validated:
        warnings += [w for w in v.get("warnings", []) if w not in warnings]
    return {
        "collection_id": params.collection_id,
        "variable": results["times"]["variable"],
        "items": items,
        "raster_type": validated[0]["raster_type"] if validated else None,
        "published": sum(1 for i in items if i["new"]),
        "unchanged": sum(1 for i in items if not i["new"]),
        "warnings": warnings,
        "urls": {
            "stac_collection": f"/stac/collections/{params.collection_id}",
            "stac_items": [
                one.raster_urls(params.collection_id, i["item_id"])["stac_item"] for i in items
            ],
        },
    }


process_raster_times = Workflow(
    "process_raster_times",
    params=ProcessRasterParams,
    stages=[
        Stage("times", read_times, queue="raster"),
        Stage("validate", validate_step, plan=plan_steps, retry=Retry(attempts=2), queue="raster"),
        Stage("cog", make_cog, plan=plan_cogs, retry=Retry(attempts=3), queue="raster"),
        Stage("catalog", register, queue="raster"),
        Stage("publish", publish_all, hold=hold_for_approval, queue="raster"),
    ],
    finalize=summarize,
    description=(
        "A NetCDF variable's time steps: one COG and STAC item each (with its own "
        "datetime), in one collection."
    ),
)
