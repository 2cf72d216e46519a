"""process_vector: inspect → plan chunks → load chunks (fan-out) → finalize → catalog."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pydantic import BaseModel, Field, field_validator, model_validator
from pyproj import CRS, Transformer

from geoetl import gdalsafe, lifecycle
from geoetl.catalog.models import AccessLevel
from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.errors import InputError
from geoetl.features.registry import FeatureCollection
from geoetl.publish import Target, ensure_target_free, slug
from geoetl.storage.objectstore import LINEAGE
from geoetl.vector.columns import index_columns, sanitize_columns
from geoetl.vector.geoparquet import (
    COVERING,
    GEOMETRY,
    MergedParts,
    PartWriter,
    wkb_part_table,
)
from geoetl.vector.geoparquet import batches as part_batches
from geoetl.vector.harden import HardenReport, as_multi, drop_m, harden
from geoetl.vector.memory import release_unused
from geoetl.vector.read import (
    Chunk,
    CsvOptions,
    find_dataset,
    list_layers,
    no_geometry,
    read_batches,
)
from geoetl.vector.simple import split as simple_polygons
from geoetl.versions import Version
from geoetl.workflows.stages import hold_for_approval, previous_result, publish

FAMILY_SUFFIX = {"points": "points", "lines": "lines", "polygons": "polygons"}
MULTI_TYPE = {"points": "MultiPoint", "lines": "MultiLineString", "polygons": "MultiPolygon"}
DEFAULT_INTENT = "ingest_vector"
# Ordered transform steps per intent. Reprojection, cleaning and the spatial index are
# always done; a recipe adds steps such as topology-preserving simplification.
RECIPES: dict[str, list[str]] = {
    "ingest_vector": ["normalize_crs", "clean", "spatial_index"],
    "ingest_road_network": ["normalize_crs", "clean", "simplify", "spatial_index"],
    "ingest_boundaries": ["normalize_crs", "clean", "simplify", "spatial_index"],
}
DEFAULT_TOLERANCE = {"EPSG:4326": 1e-5}  # ~1 m at the equator
VERSION_SUFFIX = re.compile(r"__v[0-9]+$")


class ProcessVectorParams(BaseModel):
    """Parameters of process_vector (SPEC "Vector processing")."""

    source: str = Field(description="Key of the file in the bronze zone.")
    layer: str | None = Field(default=None, description="One layer; default every layer.")
    collection_id: str = Field(
        default="system-vectors", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
    )
    dataset_id: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,60}$",
        description="Default: from the file name. Ids ending in __v<number> are reserved.",
    )
    target_crs: str = "EPSG:4326"
    input_crs: str | None = None
    keep_z: bool = False
    chunk_size: int = Field(default=100_000, ge=1, le=5_000_000)
    index_columns: list[str] = Field(default_factory=list)
    csv_lat: str | None = None
    csv_lon: str | None = None
    csv_wkt: str | None = None
    intent: str = DEFAULT_INTENT
    simplify_tolerance: float | None = Field(
        default=None, gt=0, description="For recipes that simplify; in target CRS units."
    )
    access_level: AccessLevel = "ouo"
    replace: bool = Field(
        default=False, description="Replace a dataset of that id published from another file."
    )
    batch_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$",
        description="The landing-zone batch this file came in (kept in its lineage).",
    )

    @field_validator("access_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("source")
    @classmethod
    def _bronze(cls, v: str) -> str:
        if not v.startswith("bronze/"):
            raise ValueError("source must be a key in the bronze zone (bronze/…)")
        return v

    @model_validator(mode="after")
    def _csv_columns(self) -> ProcessVectorParams:
        if bool(self.csv_lat) != bool(self.csv_lon):
            raise ValueError("give both csv_lat and csv_lon (the latitude and longitude columns)")
        if self.csv_wkt and self.csv_lat:
            raise ValueError("give either csv_wkt or csv_lat and csv_lon, not both")
        return self

    def csv(self) -> CsvOptions:
        """CSV geometry options."""
        return CsvOptions(lat=self.csv_lat, lon=self.csv_lon, wkt=self.csv_wkt)

    def recipe(self) -> tuple[str, list[str]]:
        """The intent actually used (unknown ones fall back to the default) and its steps."""
        intent = self.intent if self.intent in RECIPES else DEFAULT_INTENT
        return intent, RECIPES[intent]

    def tolerance(self) -> float:
        """Simplification tolerance in target CRS units."""
        return self.simplify_tolerance or DEFAULT_TOLERANCE.get(self.target_crs.upper(), 1.0)

    @field_validator("dataset_id")
    @classmethod
    def _not_a_version(cls, v: str | None) -> str | None:
        if v is not None and VERSION_SUFFIX.search(v):
            raise ValueError(
                "dataset ids ending in __v<number> name versions of other datasets; "
                "choose another dataset_id"
            )
        return v

    def resolved_dataset_id(self) -> str:
        """The dataset id: given, or from the file name."""
        if self.dataset_id:
            return self.dataset_id
        return VERSION_SUFFIX.sub("", slug(PurePosixPath(self.source).stem)[:60]) or "vector"

    def publication_target(self) -> Target:
        """The dataset this job publishes: its id is global (one GeoPackage per id)."""
        return Target(None, self.resolved_dataset_id(), "dataset_id", bool(self.dataset_id), 60)


def _parse_crs(value: str, what: str) -> CRS:
    # No +init=, grid paths or URLs: PROJ parses it without reading files or the network.
    return gdalsafe.parse_crs(value, what)


def source_downloads(ctx: TaskContext) -> Path:
    """Where a remote source is downloaded: shared by the job's tasks on this machine."""
    return ctx.scratch.parent / "source"


def _dataset(params: ProcessVectorParams, ctx: TaskContext) -> Path:
    objects = ctx.platform.objects
    if not objects.exists(params.source):
        raise InputError(f"source {params.source} does not exist in the object store")
    name = gdalsafe.check_source_key(params.source)  # a file directly in its bronze folder
    # On S3 or Azure the source is downloaded once per job and machine (every chunk task
    # reads it), into the job's scratch folder; on a folder it is read where it is.
    downloads = source_downloads(ctx)
    local = objects.local_copy(params.source, downloads / name)
    if local.suffix.lower() == ".shp" and not objects.is_local:
        # A loose shapefile's sidecars sit next to it in bronze under the same hash folder.
        folder = PurePosixPath(params.source).parent
        for key in objects.list(str(folder)):
            objects.local_copy(key, downloads / PurePosixPath(key).name)
    return find_dataset(local, ctx.scratch)


def inspect(params: ProcessVectorParams, ctx: TaskContext) -> dict[str, Any]:
    """Layers to load with their sizes and CRS; InputError for what cannot be loaded."""
    ctx.progress(0, 1, "inspecting")
    ensure_target_free(ctx.platform, params)
    _parse_crs(params.target_crs, "target_crs")
    if params.input_crs:
        _parse_crs(params.input_crs, "input_crs")
    path = _dataset(params, ctx)
    layers = list_layers(path, params.csv())  # a CSV without geometry columns: InputError
    with_geometry = [layer.name for layer in layers if layer.geometry_type is not None]
    if params.layer:
        layers = [layer for layer in layers if layer.name == params.layer]
        if not layers:
            raise InputError(f"{path.name} has no layer {params.layer!r}")
    if not layers:
        raise InputError(f"{path.name} has no feature layers")
    out = []
    warnings = []
    for layer in layers:
        # Before the CRS: a table without geometry needs no CRS, it cannot be loaded.
        if layer.geometry_type is None:
            message = no_geometry(path.name, layer.name, layer.fields, with_geometry)
            if params.layer or not with_geometry:
                raise InputError(message)
            warnings.append(f"layer {layer.name!r} of {path.name} has no geometry: not loaded")
            continue
        if layer.features == 0:
            if params.layer:
                raise InputError(f"layer {layer.name!r} of {path.name} is empty")
            continue
        if not layer.crs and not params.input_crs:
            if not layer.default_crs:
                raise InputError(
                    f"layer {layer.name!r} of {path.name} has no coordinate reference system; "
                    "pass input_crs (for example EPSG:4326)"
                )
            lat, lon = layer.geometry_columns
            warnings.append(
                f"{path.name}: columns {lat!r} and {lon!r} were read as WGS 84 latitude and "
                f"longitude ({layer.default_crs}); pass input_crs if they are in another CRS"
            )
        out.append(layer.model_dump())
    if not out:
        raise InputError(f"every layer of {path.name} is empty")
    version = lifecycle.reserve(
        ctx.platform,
        kind="vector",
        collection_id=params.collection_id,
        item_id=params.resolved_dataset_id(),
        job_id=ctx.job_id,
        params=params,
        workflow=ctx.workflow,
        batch_id=params.batch_id,
    )
    return {
        "dataset": path.name,
        "layers": out,
        "warnings": warnings,
        "version": version.version,
        "unchanged": version.job_id != ctx.job_id,
    }


def storage_id(params: ProcessVectorParams, results: Mapping[str, Any]) -> str:
    """The feature-store dataset of this job's version."""
    return lifecycle.storage_dataset(
        params.resolved_dataset_id(), int(results["inspect"]["version"])
    )


def _version(params: ProcessVectorParams, ctx: TaskContext) -> Version:
    version: Version = ctx.platform.versions.get(
        params.collection_id,
        params.resolved_dataset_id(),
        int(ctx.results["inspect"]["version"]),
    )
    return version


def plan(params: ProcessVectorParams, ctx: TaskContext) -> dict[str, Any]:
    """Column names per layer and the chunks to load; starts a fresh load of the dataset."""
    if ctx.results["inspect"].get("unchanged"):
        return {"columns": {}, "chunks": []}
    ctx.platform.features.begin_load(storage_id(params, ctx.results))
    layers = ctx.results["inspect"]["layers"]
    chunks = []
    columns = {}
    for layer in layers:
        columns[layer["name"]] = sanitize_columns(layer["fields"])
        for i in range(math.ceil(layer["features"] / params.chunk_size)):
            chunks.append({"layer": layer["name"], "skip": i * params.chunk_size})
    index_columns(params.index_columns, columns)  # unknown names: InputError, before any SQL
    return {"columns": columns, "chunks": chunks}


def chunk_items(params: ProcessVectorParams, results: StageResults) -> list[dict[str, Any]]:
    """One load task per chunk, numbered in order."""
    return [{**c, "chunk_id": i} for i, c in enumerate(results["plan"]["chunks"])]


def table_name(dataset_id: str, layer: str, family: str, n_layers: int) -> str:
    """``{dataset}[_{layer}]_{family}``: one table per layer and geometry family."""
    base = dataset_id if n_layers == 1 else f"{dataset_id}_{slug(layer)}"
    return f"{base}_{FAMILY_SUFFIX[family]}"


def _reproject(geoms: npt.NDArray[np.object_], transformer: Transformer) -> Any:
    def move(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.column_stack(transformer.transform(*coords.T))

    # include_z=None keeps each geometry's dimension (Z is transformed when present);
    # shapely's type stubs only know True/False.
    per_geometry: Any = None
    return shapely.transform(geoms, move, include_z=per_geometry)


def _check_degrees(geoms: npt.NDArray[np.object_], dataset: str, columns: list[str]) -> None:
    """InputError unless the points are longitude/latitude degrees (|lon| ≤ 180, |lat| ≤ 90)."""
    bounds = shapely.bounds(geoms)
    bounds = bounds[~np.isnan(bounds[:, 0])]
    outside = (np.abs(bounds[:, [0, 2]]) > 180).any(axis=1) | (np.abs(bounds[:, [1, 3]]) > 90).any(
        axis=1
    )
    if outside.any():
        x, y = bounds[outside][0, :2]
        lat, lon = columns
        raise InputError(
            f"{dataset}: {int(outside.sum()):,} row(s) have {lon!r}/{lat!r} values outside "
            f"longitude ±180 / latitude ±90 (the first: {x:g}, {y:g}), so they are not WGS 84 "
            "degrees; pass input_crs naming their coordinate reference system (input_crs "
            "EPSG:4326 loads them as they are)"
        )


def _part_key(job_id: str, table: str, chunk_id: int) -> str:
    return f"tmp/{job_id}/parts/{table}/{chunk_id:05d}.parquet"


# How much of the source file one batch of a chunk reads: features are read, reprojected,
# cleaned and written a batch at a time, so a load task holds one batch in memory (about
# ten times its size in the source: Arrow, shapely objects and their copies), not a
# whole chunk. 1 MB is about 3,400 of the benchmark's polygons: 20 MiB less peak than
# 2 MB at the same speed (docs/benchmarks.md).
BATCH_SOURCE_BYTES = 1024 * 1024
MIN_BATCH, MAX_BATCH = 1_000, 65_536


def batch_features(source_bytes: int, features: int, chunk_size: int) -> int:
    """Features per batch: about :data:`BATCH_SOURCE_BYTES` of the source each."""
    per_feature = max(source_bytes / max(features, 1), 1.0)
    size = int(BATCH_SOURCE_BYTES / per_feature)
    return max(1, min(chunk_size, MAX_BATCH, max(MIN_BATCH, size)))


def load_chunk(params: ProcessVectorParams, ctx: TaskContext) -> dict[str, Any]:
    """Read one chunk, reproject, clean, rename columns, stage it as GeoParquet parts.

    The chunk is streamed in batches (:func:`batch_features`), each written as a row
    group of its table's part. A chunk's parts have fixed keys, so a retried chunk
    replaces its own parts and never duplicates rows; finalize builds the feature tables
    and GeoParquet from them.
    """
    item = ctx.item
    path = _dataset(params, ctx)
    layers = ctx.results["inspect"]["layers"]
    layer = next(x for x in layers if x["name"] == item["layer"])
    target = _parse_crs(params.target_crs, "target_crs")
    source_crs: CRS | None = None
    transformer: Transformer | None = None
    total = sum(int(x["features"]) for x in layers)
    batch = batch_features(ctx.platform.objects.size(params.source), total, params.chunk_size)
    mapping = ctx.results["plan"]["columns"][item["layer"]]
    dataset_id = storage_id(params, ctx.results)
    report = HardenReport()
    reprojected = 0
    writers: dict[str, PartWriter] = {}
    families_of: dict[str, str] = {}
    batches = read_batches(
        path,
        item["layer"],
        params.csv(),
        skip=item["skip"],
        limit=params.chunk_size,
        column_types=layer.get("column_types"),
        batch_size=batch,
    )
    try:
        for chunk in batches:
            attributes, layer_crs = chunk.attributes, chunk.crs
            if source_crs is None:
                source = layer_crs or params.input_crs
                if source is None:  # CSV latitude/longitude columns: WGS 84 unless input_crs
                    source = layer.get("default_crs")
                assert source is not None  # inspect refused layers without any
                source_crs = _parse_crs(source, "input_crs")
                if not source_crs.equals(target):
                    transformer = Transformer.from_crs(source_crs, target, always_xy=True)
            if not (layer_crs or params.input_crs):
                columns = layer.get("geometry_columns") or ["lat", "lon"]
                _check_degrees(chunk.geometries, path.name, columns)
            if transformer is not None:
                reprojected += attributes.num_rows
            families, part_report = _clean(chunk, transformer, target, params)
            del chunk
            _add_report(report, part_report)
            attrs = attributes.rename_columns([mapping.get(c, c) for c in attributes.column_names])
            del attributes
            for family, cleaned in families.items():
                table = table_name(dataset_id, item["layer"], family, len(layers))
                if table not in writers:
                    writers[table] = PartWriter(ctx.scratch / f"{table}.parquet")
                    families_of[table] = family
                writers[table].write(
                    wkb_part_table(
                        attrs.take(cleaned.rows),
                        cleaned.wkb,
                        cleaned.bounds,
                        target,
                        cleaned.geometry_type,
                    )
                )
            del attrs, families
            release_unused()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        batches.close()
    tables = {}
    # The chunk's features are numbered from its place in the layer. When every row
    # it read is kept in one table, the store (PostGIS) may stage them now, beside the
    # other chunks; finalize then has only to index them (see _staged_by_chunks).
    fids = range(item["skip"] + 1, item["skip"] + params.chunk_size + 1)
    whole = len(writers) == 1 and all(w.rows == report.read for w in writers.values())
    for table, writer in writers.items():
        geometry_type = writer.close()
        copied = None
        if whole:
            columns = [c for c in pq.read_schema(writer.path).names if c != COVERING]
            copied = ctx.platform.features.copy_rows(
                dataset_id,
                table,
                fids,
                part_batches([writer.path], columns),
                geometry_column=GEOMETRY,
                geometry_type=geometry_type,
                crs=target.to_wkt(),
            )
        key = _part_key(ctx.job_id, table, item["chunk_id"])
        ctx.platform.objects.move_file(writer.path, key)
        tables[table] = {
            "family": families_of[table],
            "layer": item["layer"],
            "rows": writer.rows,
            "part": key,
            "geometry_type": geometry_type,
            "first_fid": fids.start,
            "copied": copied,
        }
    return {"tables": tables, "report": report.model_dump(), "reprojected": reprojected}


def _staged_by_chunks(chunks: list[dict[str, Any]]) -> bool:
    """Whether one table's chunks staged all its rows, numbered 1..n without a gap."""
    following = 1
    for chunk in sorted(chunks, key=lambda c: int(c.get("first_fid") or 0)):
        if chunk.get("copied") != chunk["rows"] or chunk.get("first_fid") != following:
            return False
        following += chunk["rows"]
    return True


@dataclass
class _Cleaned:
    """One family of a cleaned batch: its rows, their WKB and bounds, the part's type."""

    rows: npt.NDArray[np.int64]  # indices into the batch, ascending
    wkb: pa.Array
    bounds: npt.NDArray[np.float64]
    geometry_type: str


def _clean(
    chunk: Chunk,
    transformer: Transformer | None,
    target: CRS,
    params: ProcessVectorParams,
) -> tuple[dict[str, _Cleaned], HardenReport]:
    """A batch reprojected and cleaned, as WKB per geometry family.

    One-ring polygons are done on their WKB (:mod:`geoetl.vector.simple`); the other
    rows go through :func:`harden`, with the same result.
    """
    _intent, steps = params.recipe()
    simple = None
    rest = np.arange(chunk.attributes.num_rows)
    if chunk.wkb is not None and "simplify" not in steps:
        simple = simple_polygons(chunk.wkb, transformer, geographic=target.is_geographic)
        rest = np.setdiff1d(rest, simple.rows, assume_unique=True)
        # Only the rows left are decoded.
        read = shapely.from_wkb(chunk.wkb.take(pa.array(rest)).to_numpy(zero_copy_only=False))
    else:
        read = chunk.geometries[rest]
    # Before reprojecting: transform loses M (and XYZM's Z).
    geoms, m_dropped = drop_m(read)
    if transformer is not None:
        geoms = _reproject(geoms, transformer)
    families, geoms, report = harden(geoms, keep_z=params.keep_z, geographic=target.is_geographic)
    report.m_dropped += m_dropped
    if "simplify" in steps:
        geoms = shapely.simplify(geoms, params.tolerance(), preserve_topology=True)
        for family, rows in families.items():  # simplify may return single parts
            geoms[rows] = as_multi(geoms[rows], family)
    out: dict[str, _Cleaned] = {}
    for family, rows in families.items():
        has_z = params.keep_z and bool(shapely.has_z(geoms[rows]).any())
        written = shapely.to_wkb(geoms[rows], output_dimension=3 if has_z else 2, flavor="iso")
        out[family] = _Cleaned(
            rest[rows],
            pa.array(written, pa.binary()),
            shapely.bounds(geoms[rows]),
            MULTI_TYPE[family] + (" Z" if has_z else ""),
        )
    if simple is not None and len(simple.rows):
        report.read += len(simple.rows)
        done = _Cleaned(simple.rows, simple.wkb, simple.bounds, MULTI_TYPE["polygons"])
        if "polygons" in out:  # both kinds of rows, back in the batch's order
            other = out["polygons"]
            order = np.argsort(np.concatenate([done.rows, other.rows]), kind="stable")
            done = _Cleaned(
                np.concatenate([done.rows, other.rows])[order],
                pa.concat_arrays([done.wkb, other.wkb]).take(pa.array(order)),
                np.concatenate([done.bounds, other.bounds])[order],
                other.geometry_type,
            )
        out["polygons"] = done
    return dict(sorted(out.items(), key=lambda kv: int(kv[1].rows[0]))), report


def _add_report(total: HardenReport, part: HardenReport) -> None:
    """Add one batch's (or chunk's) cleaning counts to ``total``."""
    total.read += part.read
    total.repaired += part.repaired
    total.z_dropped += part.z_dropped
    total.m_dropped += part.m_dropped
    total.antimeridian_split += part.antimeridian_split
    for reason, n in part.dropped.items():
        total.drop(reason, n)


def finalize_load(params: ProcessVectorParams, ctx: TaskContext) -> dict[str, Any]:
    """Write the feature tables and GeoParquet from the parts (not served until published)."""
    if ctx.results["inspect"].get("unchanged"):
        return {"unchanged": True}
    chunks: list[dict[str, Any]] = ctx.results["load"]
    base_id = params.resolved_dataset_id()
    dataset_id = storage_id(params, ctx.results)
    report = HardenReport()
    reprojected = 0
    tables: dict[str, dict[str, Any]] = {}
    for chunk in chunks:  # in chunk order
        _add_report(report, HardenReport.model_validate(chunk["report"]))
        reprojected += chunk["reprojected"]
        for table, info in chunk["tables"].items():
            entry = tables.setdefault(table, {**info, "rows": 0, "parts": [], "chunks": []})
            entry["rows"] += info["rows"]
            entry["parts"].append(info["part"])
            entry["chunks"].append(info)
            if info["geometry_type"].endswith(" Z"):
                entry["geometry_type"] = info["geometry_type"]
    if not tables:
        raise InputError(
            f"no feature of {dataset_id} survived cleaning: {report.dropped or 'all empty'}"
        )
    store = ctx.platform.features
    objects = ctx.platform.objects
    target = _parse_crs(params.target_crs, "target_crs")
    mapping = ctx.results["plan"]["columns"]
    staged = {t for t, info in tables.items() if _staged_by_chunks(info["chunks"])}
    # A retried finalize starts again from the parts, but for the tables the chunks
    # staged, as long as the store still holds every one of their rows.
    store.begin_load(dataset_id, keep=staged)
    staged = {t for t in staged if store.staged_rows(dataset_id, t) == tables[t]["rows"]}
    merged: dict[str, MergedParts] = {}
    for table, info in sorted(tables.items()):
        parts = [
            objects.local_copy(key, ctx.scratch / "parts" / key.replace("/", "_"))
            for key in info["parts"]
        ]
        merged[table] = MergedParts(parts, ctx.scratch / f"{table}.parquet")
        if table in staged:
            continue
        columns = [c for c in merged[table].schema.names if c != COVERING]
        store.write_table(
            dataset_id,
            table,
            merged[table].batches(columns),
            geometry_column=GEOMETRY,
            geometry_type=info["geometry_type"],
            crs=target.to_wkt(),
        )
    per_layer = index_columns(params.index_columns, mapping)
    index = {t: per_layer[info["layer"]] for t, info in tables.items()}
    source = ctx.results["inspect"]["dataset"]
    described = {}
    for t, info in tables.items():
        where = source if info["layer"] == source else f"layer {info['layer']} in {source}"
        described[t] = {
            stored: f"{original} (column of {where})"
            for original, stored in mapping[info["layer"]].items()
        }
    written = {}
    # The GeoParquet files are written while the store indexes and analyzes the tables
    # (in the database, for PostGIS): the two take about as long.
    with ThreadPoolExecutor(1, thread_name_prefix="geoetl-index") as pool:
        indexing = pool.submit(store.finish_load, dataset_id, index, described)
        for table, stream in merged.items():
            rows, bbox = stream.finish()
            written[table] = (stream.out, rows, bbox)
        indexing.result()
    out = []
    single = len(tables) == 1
    version = _version(params, ctx)
    keys = [f"silver/vector/{params.collection_id}/{table}.parquet" for table in sorted(tables)]
    ctx.platform.versions.add_objects(version.collection_id, version.item_id, version.version, keys)
    collections = []
    for table, info in sorted(tables.items()):
        local, rows, bbox = written[table]
        key = f"silver/vector/{params.collection_id}/{table}.parquet"
        objects.move_file(local, key, metadata={LINEAGE: version.ref})  # a rename in a folder
        # OGC API collection ids stay the same from version to version.
        collection_id = base_id if single else base_id + table[len(dataset_id) :]
        collections.append(
            FeatureCollection(
                collection_id=collection_id,
                dataset_id=dataset_id,
                table_name=table,
                family=info["family"],
                title=f"{base_id} ({info['family']})",
                feature_count=rows,
                bbox=bbox or None,
                fields=store.fields(dataset_id, table),
                column_map=mapping[info["layer"]],
                access_level=params.access_level,
                stac_collection=params.collection_id,
                job_id=ctx.job_id,
            ).model_dump()
        )
        out.append(
            {
                "table": table,
                "collection_id": collection_id,
                "family": info["family"],
                "features": rows,
                "bbox": bbox or None,
                "geoparquet": key,
            }
        )
    report.families = {t["family"]: t["features"] for t in out}
    intent, steps = params.recipe()
    warnings = list(ctx.results["inspect"].get("warnings", []))
    if intent != params.intent:
        warnings.append(f"unknown intent {params.intent!r}: used the {intent} recipe")
    if report.m_dropped:
        warnings.append(
            f"{report.m_dropped:,} feature(s) had M (measure) values; they were dropped "
            "(GeoJSON and GeoParquet carry no measures — keep them as an attribute column "
            "if you need them)"
        )
    return {
        "tables": out,
        "collections": collections,
        "report": {**report.model_dump(), "reprojected": reprojected},
        "recipe": {"intent": intent, "steps": steps},
        "warnings": warnings,
    }


def register(params: ProcessVectorParams, ctx: TaskContext) -> dict[str, Any]:
    """A STAC item per dataset linking its OGC API collections and GeoParquet assets.

    Staged as a draft version; the publish stage serves it.
    """
    shutil.rmtree(source_downloads(ctx), ignore_errors=True)  # no later stage reads it
    version = _version(params, ctx)
    if ctx.results["inspect"].get("unchanged"):
        return {
            "unchanged": True,
            "item_id": version.item_id,
            "version": version.version,
            "previous": previous_result(ctx, version),
        }
    done = ctx.results["finalize"]
    dataset_id = params.resolved_dataset_id()
    boxes = [t["bbox"] for t in done["tables"] if t["bbox"]]
    bbox = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    now = datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")
    assets = {}
    for t in done["tables"]:
        assets[t["table"]] = {
            "href": t["geoparquet"],  # an object key; the API serves it as a URL
            "type": "application/vnd.apache.parquet",
            "roles": ["data"],
            "title": f"GeoParquet of {t['collection_id']}",
        }
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": dataset_id,
        "collection": params.collection_id,
        "bbox": bbox,
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [
                    [bbox[0], bbox[1]],
                    [bbox[2], bbox[1]],
                    [bbox[2], bbox[3]],
                    [bbox[0], bbox[3]],
                    [bbox[0], bbox[1]],
                ]
            ],
        },
        "properties": {
            "datetime": now,
            "created": now,
            "updated": now,
            "geoetl:job_id": ctx.job_id,
            "geoetl:workflow": ctx.workflow,
            "geoetl:access_level": params.access_level,
            "geoetl:source": {
                "key": params.source,
                "sha256": PurePosixPath(params.source).parts[1],
            },
            "geoetl:report": done["report"],
        },
        "links": [
            {"rel": "items", "href": f"/collections/{t['collection_id']}/items"}
            for t in done["tables"]
        ],
        "assets": assets,
    }
    lifecycle.stage_draft(
        ctx.platform,
        version,
        item,
        [t["geoparquet"] for t in done["tables"]],
        storage_id=storage_id(params, ctx.results),
        feature_collections=[FeatureCollection.model_validate(c) for c in done["collections"]],
    )
    return {
        "item_id": dataset_id,
        "version": version.version,
        "approval": lifecycle.needs_approval(ctx.platform, params.collection_id),
    }


def summarize(params: ProcessVectorParams, results: StageResults) -> dict[str, Any]:
    """The job result: tables, report and URLs."""
    if results["catalog"].get("unchanged"):
        version = int(results["catalog"]["version"])
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
    done = results["finalize"]
    dataset_id = params.resolved_dataset_id()
    return {
        "collection_id": params.collection_id,
        "dataset_id": dataset_id,
        "tables": [
            {
                "table": t["table"],
                "collection_id": t["collection_id"],
                "family": t["family"],
                "features": t["features"],
            }
            for t in done["tables"]
        ],
        "report": done["report"],
        "columns": results["plan"]["columns"],
        "recipe": done["recipe"],
        "warnings": done["warnings"],
        "version": results["catalog"]["version"],
        "urls": {
            "features": {
                t["collection_id"]: f"/collections/{t['collection_id']}/items"
                for t in done["tables"]
            },
            "geoparquet": {t["collection_id"]: t["geoparquet"] for t in done["tables"]},
            "stac_item": f"/stac/collections/{params.collection_id}/items/{dataset_id}",
        },
    }


process_vector = Workflow(
    "process_vector",
    params=ProcessVectorParams,
    stages=[
        Stage("inspect", inspect, queue="vector"),
        Stage("plan", plan, queue="vector"),
        Stage("load", load_chunk, plan=chunk_items, retry=Retry(attempts=3), queue="vector"),
        Stage("finalize", finalize_load, queue="vector"),
        Stage("catalog", register, queue="vector"),
        Stage("publish", publish, hold=hold_for_approval, queue="vector"),
    ],
    finalize=summarize,
    description="Read a vector dataset, clean and reproject it, publish it as OGC API Features.",
)
