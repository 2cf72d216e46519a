"""process_raster_collection: many rasters → a consistency check → one COG each → one collection.

SPEC "Raster collections": a country's flood-hazard tiles, a folder of scenes. Every
file is validated in its own task (fan-out), then the set is checked as a whole: the
same CRS, band count and data type (a mosaic of mixed ones would be wrong), resolution
differences only warned. Each file's COG is written by its own task, then one STAC
item per file is staged in the collection and published together (held for approval
where required), so the collection is served as one layer
(``/raster/collections/{id}/…``). Each item is a dataset version like any other
(:mod:`geoetl.lifecycle`): re-running with one file changed publishes a new version of
that item only.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from geoetl import lifecycle
from geoetl.catalog.models import AccessLevel
from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.errors import InputError
from geoetl.publish import slug
from geoetl.raster.inspect import DeclaredType
from geoetl.raster.profiles import TierChoice, tiers_for
from geoetl.workflows import process_raster as one
from geoetl.workflows.stages import hold_for_approval, publish_all

MAX_FILES = 10_000


class ProcessRasterCollectionParams(BaseModel):
    """Parameters of process_raster_collection."""

    sources: list[str] = Field(
        min_length=1, max_length=MAX_FILES, description="Keys of the files in the bronze zone."
    )
    collection_id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
    output_tier: TierChoice = "analysis"
    target_crs: str | None = Field(default="EPSG:4326", description="null keeps the native CRS.")
    input_crs: str | None = None
    raster_type: DeclaredType = "auto"
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    strict_mode: bool = False
    access_level: AccessLevel = "ouo"
    replace: bool = Field(
        default=False, description="Replace items of those ids published from other files."
    )

    @field_validator("access_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("sources")
    @classmethod
    def _bronze(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not s.startswith("bronze/")]
        if bad:
            raise ValueError(f"sources must be keys in the bronze zone (bronze/…): {bad[:3]}")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> ProcessRasterCollectionParams:
        repeated = [s for s, n in Counter(self.sources).items() if n > 1]
        if repeated:
            raise ValueError(f"a source is listed twice: {repeated[:3]}")
        return self

    def item_ids(self) -> list[str]:
        """One item id per source, from its file name (names that slug alike: _2, _3 …)."""
        seen: Counter[str] = Counter()
        out = []
        for source in self.sources:
            stem = slug(PurePosixPath(source).stem)[:140]
            seen[stem] += 1
            out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
        return out

    def one(self, index: int) -> one.ProcessRasterParams:
        """The single-file params of source ``index``."""
        return one.ProcessRasterParams(
            source=self.sources[index],
            collection_id=self.collection_id,
            item_id=self.item_ids()[index],
            output_tier=self.output_tier,
            target_crs=self.target_crs,
            input_crs=self.input_crs,
            raster_type=self.raster_type,
            jpeg_quality=self.jpeg_quality,
            strict_mode=self.strict_mode,
            access_level=self.access_level,
            replace=self.replace,
        )


def plan_files(params: ProcessRasterCollectionParams, results: StageResults) -> list[int]:
    """One validation task per file."""
    return list(range(len(params.sources)))


def validate_file(params: ProcessRasterCollectionParams, ctx: TaskContext) -> dict[str, Any]:
    """Validate one file and number its item's version (as process_raster does)."""
    index = int(ctx.item)
    return {**one.validate(params.one(index), ctx), "index": index}


def check(params: ProcessRasterCollectionParams, ctx: TaskContext) -> dict[str, Any]:
    """The files must agree on CRS, band count and data type to make one layer."""
    infos = sorted(ctx.results["validate"], key=lambda v: int(v["index"]))
    facts = {"CRS": "crs", "band count": "count", "data type": "dtype"}
    for what, field in facts.items():
        values = Counter(str(v.get(field)) for v in infos)
        if len(values) > 1:
            common = values.most_common(1)[0][0]
            odd = [
                PurePosixPath(params.sources[int(v["index"])]).name
                for v in infos
                if str(v.get(field)) != common
            ]
            raise InputError(
                f"the files do not share one {what}: most have {common}, but "
                f"{', '.join(odd[:10])}{' and more' if len(odd) > 10 else ''} differ; "
                "publish them as separate collections (or convert them first)"
            )
    warnings = []
    resolutions = Counter(_resolution(v) for v in infos)
    if len(resolutions) > 1:
        warnings.append(
            f"the files have {len(resolutions)} different resolutions "
            f"({', '.join(list(resolutions)[:4])}): the mosaic shows each at its own"
        )
    return {"files": len(infos), "warnings": warnings}


def _resolution(info: dict[str, Any]) -> str:
    """A file's pixel size in its CRS units, as "X x Y" (rounded for comparison)."""
    west, south, east, north = info["bounds"]
    return f"{(east - west) / info['width']:.6g} x {(north - south) / info['height']:.6g}"


def plan_cogs(params: ProcessRasterCollectionParams, results: StageResults) -> list[dict[str, Any]]:
    """One COG task per file and tier (none for unchanged files)."""
    out = []
    for v in sorted(results["validate"], key=lambda v: int(v["index"])):
        if v.get("unchanged"):
            continue
        info = one.info_of(v)
        for tier in tiers_for(params.output_tier, info.raster_type):
            out.append({"index": int(v["index"]), "tier": tier})
    return out


def make_cog(params: ProcessRasterCollectionParams, ctx: TaskContext) -> dict[str, Any]:
    """Write one file's COG of one tier."""
    index, tier = int(ctx.item["index"]), str(ctx.item["tier"])
    validated = _validated(ctx.results, index)
    return {**one.write_tier(params.one(index), ctx, validated, tier), "index": index}


def _validated(results: Mapping[str, Any], index: int) -> dict[str, Any]:
    return dict(next(v for v in results["validate"] if int(v["index"]) == index))


def register(params: ProcessRasterCollectionParams, ctx: TaskContext) -> dict[str, Any]:
    """Stage one STAC item per file in the collection (published by the next stage)."""
    cogs: list[dict[str, Any]] = ctx.results.get("cog") or []
    items = []
    versions = []
    for index in range(len(params.sources)):
        validated = _validated(ctx.results, index)
        single = params.one(index)
        if validated.get("unchanged"):
            version = one.version_of(ctx, single, validated)
            items.append({"item_id": version.item_id, "version": version.version, "new": False})
            continue
        staged = one.stage_item(
            single, ctx, validated, [c for c in cogs if int(c["index"]) == index]
        )
        items.append({"item_id": staged["item_id"], "version": staged["version"], "new": True})
        versions.append({"item_id": staged["item_id"], "version": staged["version"]})
        ctx.progress(index + 1, len(params.sources), "staging items")
    shutil.rmtree(one.source_downloads(ctx), ignore_errors=True)
    return {
        "items": items,
        "versions": versions,
        "approval": bool(versions) and lifecycle.needs_approval(ctx.platform, params.collection_id),
    }


def summarize(params: ProcessRasterCollectionParams, results: StageResults) -> dict[str, Any]:
    """The job result: the collection, its items and how to see them as one layer."""
    items = results["catalog"]["items"]
    return {
        "collection_id": params.collection_id,
        "items": items,
        "published": sum(1 for i in items if i["new"]),
        "unchanged": sum(1 for i in items if not i["new"]),
        "warnings": results["check"]["warnings"],
        "urls": one.collection_urls(params.collection_id),
    }


process_raster_collection = Workflow(
    "process_raster_collection",
    params=ProcessRasterCollectionParams,
    stages=[
        Stage("validate", validate_file, plan=plan_files, retry=Retry(attempts=2), queue="raster"),
        Stage("check", check, queue="raster"),
        Stage("cog", make_cog, plan=plan_cogs, retry=Retry(attempts=3), queue="raster"),
        Stage("catalog", register, queue="raster"),
        Stage("publish", publish_all, hold=hold_for_approval, queue="raster"),
    ],
    finalize=summarize,
    description=(
        "Many rasters that share CRS, bands and data type: one COG and STAC item each, "
        "in one collection served as a single mosaic layer."
    ),
)
