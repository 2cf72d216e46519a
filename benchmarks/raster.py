"""Raster benchmark (issue 3): ``geoetl ingest`` against ``gdal_translate -of COG``.

Inputs are built deterministically from the sample rasters in ``examples/data`` into
``--work-dir`` (kept between runs; rebuilt with ``--rebuild``):

* ``rgb_<N>.tif``: L7_ETMs bands 3,2,1 upsampled to N x N (bilinear, rasterio
  ``out_shape``), uint8, PHOTOMETRIC=RGB, pixel interleaved, 512x512 tiles,
  **uncompressed**, native CRS (SIRGAS 2000 / UTM 25S);
* ``dem_<N>.tif``: olinda_dem_utm25s upsampled the same way, float32, 512x512 tiles,
  **uncompressed**, native CRS (UTM 25S, GRS80), no nodata;
* ``rgb_<N>_striped.tif``: the same pixels as ``rgb_<N>`` in strips of one row (an
  untiled GeoTIFF, GDAL's default layout), native only (issue 16);
* ``rgb_<M>.tif``: like ``rgb_<N>`` at M x M (3000 x 3000 x 3 bytes = 27 MB), the
  "~27 MB input end to end" case.

Each case runs, as separate processes, alternating the order every repeat:

* ``geoetl ingest PATH --json [--target-crs native]`` with a fresh ``GEOETL_HOME`` whose
  database ``geoetl db upgrade`` created beforehand, untimed, as on an installed platform
  (``--no-init-home`` times the first use too, about 0.15 s more): the whole job (bronze
  copy + SHA-256, validation, COG, cog_validate, STAC, catalog);
* ``gdal_translate -of COG`` with the same creation options geoetl uses (checked against
  ``geoetl.raster.profiles`` at start-up), plus ``--config GDAL_NUM_THREADS ALL_CPUS``
  because geoetl sets that too, and ``-a_nodata nan`` where geoetl reads the DEM through
  ``vrt://…?a_nodata=nan`` (float data without nodata, reprojected);
* ``rasterio-cog``: a bare ``rasterio.shutil.copy(…, driver="COG")`` in a fresh Python
  process, i.e. geoetl's COG write alone on geoetl's own GDAL. The system gdal_translate
  and rasterio's bundled GDAL are usually different versions, so this control separates
  "GDAL version" from "geoetl's extra work".

Wall time and peak RSS are those of the child alone. Every child is started by a small
``python -S`` launcher that calls ``os.wait4``: a child's ``ru_maxrss`` starts at the
high-water mark of the process it was spawned from (vfork + exec keeps it), and this
benchmark's own process holds hundreds of MB after building the inputs.

For geoetl runs the wall time is split with the job's own timestamps (SQLite catalog in
``GEOETL_HOME``): before the job exists (interpreter start, imports, detect, SHA-256 and
bronze copy), each stage (validate, cog, catalog), and after the job (JSON, exit). With
``--phases`` (default) one more geoetl run per case is made in-process with timers around
the functions of each step.

Run from the repository root::

    .venv/bin/python benchmarks/raster.py --size 8000 --small-size 3000 --repeats 3 \\
        --out benchmarks/out/raster.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    BenchmarkError,
    busy_cpu_s,
    clean_env,
    console_factory,
    free_port,
    launch,
    machine_info,
    median,
    sha256_of,
    time_baselines,
    wait_quiet,
    warm_cache,
)

DATA = ROOT / "examples" / "data"
BIN = Path(sys.executable).parent

FLOOR_WALL_RATIO = 1.10  # geoetl ingest / gdal_translate, 8000 x 8000 cases
FLOOR_RSS_RATIO = 1.5
FLOOR_SMALL_WALL_S = 2.0  # ~27 MB input end to end
OLD_PLATFORM_SMALL_S = (22.0, 37.0)

TOOLS = ("geoetl", "gdal_translate", "rasterio-cog")
BLOCK = 512

# The -co options geoetl's "analysis" tier uses (SPEC; geoetl.raster.profiles).
COMMON_OPTIONS = {
    "BLOCKSIZE": str(BLOCK),
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "NUM_THREADS": "ALL_CPUS",
    "BIGTIFF": "IF_SAFER",
}
KIND_OPTIONS = {
    "rgb": {"COMPRESS": "DEFLATE", "PREDICTOR": "2", "LEVEL": "5"},
    "dem": {"COMPRESS": "DEFLATE", "PREDICTOR": "3", "LEVEL": "5"},
}
TARGET_CRS = "EPSG:4326"
WARP_RESAMPLING = "BILINEAR"


# -- inputs ------------------------------------------------------------------------------------


@dataclass
class InputFile:
    name: str
    kind: str  # rgb | dem
    path: Path
    width: int
    height: int
    description: str
    bytes: int = 0
    sha256: str = ""
    build_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "mb": self.bytes / 1e6,
            "sha256": self.sha256,
            "description": self.description,
            "build_s": self.build_s,
        }


def upsample(
    src_path: Path, dst: Path, size: int, bands: list[int], *, rgb: bool, tiled: bool = True
) -> None:
    """``bands`` of ``src_path`` resampled (bilinear) to size x size, uncompressed.

    Tiled in 512 px blocks, or (``tiled=False``) in strips of one row, GDAL's default
    layout for an untiled GeoTIFF this wide.
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import ColorInterp, Resampling

    with rasterio.open(src_path) as src:
        data = src.read(bands, out_shape=(len(bands), size, size), resampling=Resampling.bilinear)
        transform = src.transform * Affine.scale(src.width / size, src.height / size)
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": len(bands),
            "dtype": data.dtype.name,
            "crs": src.crs,
            "transform": transform,
            "nodata": None,
            "compress": "none",
            "interleave": "pixel",
        }
        if tiled:
            profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
        else:
            profile.update(tiled=False, blockysize=1)
        if rgb:
            profile["photometric"] = "RGB"
    partial = dst.with_suffix(".partial.tif")
    with rasterio.open(partial, "w", **profile) as out:
        out.write(data)
        if rgb:
            out.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    partial.replace(dst)


def build_inputs(work: Path, size: int, small_size: int, rebuild: bool) -> dict[str, InputFile]:
    work.mkdir(parents=True, exist_ok=True)
    specs = [
        InputFile(
            f"rgb_{size}",
            "rgb",
            work / f"rgb_{size}.tif",
            size,
            size,
            f"L7_ETMs.tif bands 3,2,1 -> {size}x{size} bilinear; uint8 RGB, pixel interleave, "
            f"{BLOCK}x{BLOCK} tiles, uncompressed, EPSG:31985",
        ),
        InputFile(
            f"dem_{size}",
            "dem",
            work / f"dem_{size}.tif",
            size,
            size,
            f"olinda_dem_utm25s.tif -> {size}x{size} bilinear; float32, {BLOCK}x{BLOCK} "
            "tiles, uncompressed, UTM 25S (GRS80) as in the sample, no nodata",
        ),
        InputFile(
            f"rgb_{size}_striped",
            "rgb",
            work / f"rgb_{size}_striped.tif",
            size,
            size,
            f"like rgb_{size} but striped (untiled, one row per strip: GDAL's default "
            "layout of an untiled GeoTIFF), issue 16",
        ),
        InputFile(
            f"rgb_{small_size}",
            "rgb",
            work / f"rgb_{small_size}.tif",
            small_size,
            small_size,
            f"L7_ETMs.tif bands 3,2,1 -> {small_size}x{small_size} bilinear; uint8 RGB, "
            f"{BLOCK}x{BLOCK} tiles, uncompressed, EPSG:31985",
        ),
    ]
    inputs: dict[str, InputFile] = {}
    for spec in specs:
        if rebuild or not spec.path.exists():
            t0 = time.perf_counter()
            if spec.kind == "rgb":
                tiled = not spec.name.endswith("_striped")
                upsample(
                    DATA / "L7_ETMs.tif", spec.path, spec.width, [3, 2, 1], rgb=True, tiled=tiled
                )
            else:
                upsample(DATA / "olinda_dem_utm25s.tif", spec.path, spec.width, [1], rgb=False)
            spec.build_s = time.perf_counter() - t0
        spec.bytes = spec.path.stat().st_size
        spec.sha256 = sha256_of(spec.path)
        inputs[spec.name] = spec
    return inputs


# -- cases and commands ------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    input: InputFile
    reproject: bool
    ratio_floors: bool  # the 8000 x 8000 cases carry the wall/RSS ratio floors
    absolute_floor_s: float | None = None  # the ~27 MB end-to-end case

    @property
    def options(self) -> dict[str, str]:
        opts = {**KIND_OPTIONS[self.input.kind], **COMMON_OPTIONS}
        if self.reproject:
            opts["TARGET_SRS"] = TARGET_CRS
            opts["WARP_RESAMPLING"] = WARP_RESAMPLING
        return opts

    @property
    def nan_nodata(self) -> bool:
        """geoetl reads float data without nodata as ``vrt://…?a_nodata=nan`` to reproject."""
        return self.reproject and self.input.kind == "dem"


def make_cases(inputs: dict[str, InputFile], size: int, small_size: int) -> list[Case]:
    big_rgb, big_dem, small = (
        inputs[f"rgb_{size}"],
        inputs[f"dem_{size}"],
        inputs[f"rgb_{small_size}"],
    )
    return [
        Case(f"rgb{size}-native", big_rgb, reproject=False, ratio_floors=True),
        # Issue 16: the same pixels striped (untiled), native; the one-pass bronze copy.
        Case(
            f"rgb{size}-striped-native",
            inputs[f"rgb_{size}_striped"],
            reproject=False,
            ratio_floors=True,
        ),
        Case(f"rgb{size}-4326", big_rgb, reproject=True, ratio_floors=True),
        Case(f"dem{size}-native", big_dem, reproject=False, ratio_floors=True),
        Case(f"dem{size}-4326", big_dem, reproject=True, ratio_floors=True),
        Case(
            f"rgb{small_size}-4326",
            small,
            reproject=True,
            ratio_floors=False,
            absolute_floor_s=FLOOR_SMALL_WALL_S,
        ),
        Case(f"rgb{small_size}-native", small, reproject=False, ratio_floors=False),
    ]


def geoetl_argv(case: Case) -> list[str]:
    argv = [str(BIN / "geoetl"), "ingest", str(case.input.path), "--tier", "analysis", "--json"]
    return argv + ([] if case.reproject else ["--target-crs", "native"])


def gdal_argv(case: Case, dst: Path) -> list[str]:
    argv = ["gdal_translate", "-q", "-of", "COG", "--config", "GDAL_NUM_THREADS", "ALL_CPUS"]
    if case.nan_nodata:
        argv += ["-a_nodata", "nan"]
    for key, value in case.options.items():
        argv += ["-co", f"{key}={value}"]
    return [*argv, str(case.input.path), str(dst)]


RASTERIO_COG = (
    "import json, sys, rasterio, rasterio.shutil\n"
    "with rasterio.Env(GDAL_NUM_THREADS='ALL_CPUS'):\n"
    "    rasterio.shutil.copy(sys.argv[1], sys.argv[2], driver='COG', **json.loads(sys.argv[3]))\n"
)


def rasterio_argv(case: Case, dst: Path) -> list[str]:
    src = str(case.input.path)
    if case.nan_nodata:
        src = f"vrt://{src}?a_nodata=nan"
    return [sys.executable, "-c", RASTERIO_COG, src, str(dst), json.dumps(case.options)]


def check_profiles_match() -> list[str]:
    """Differences between this benchmark's -co options and geoetl's own profiles."""
    from geoetl.raster.profiles import cog_profile

    problems = []
    for kind, dtype in (("rgb", "uint8"), ("dem", "float32")):
        theirs = cog_profile(kind, "analysis", dtype, 85).creation_options()  # type: ignore[arg-type]
        ours = {**KIND_OPTIONS[kind], **COMMON_OPTIONS}
        if theirs != ours:
            problems.append(f"{kind}: geoetl uses {theirs}, benchmark uses {ours}")
        profile = cog_profile(kind, "analysis", dtype, 85)  # type: ignore[arg-type]
        if profile.resampling.upper() != WARP_RESAMPLING:
            problems.append(f"{kind}: geoetl warps with {profile.resampling}")
    return problems


# -- running one child -------------------------------------------------------------------------


@dataclass
class Run:
    tool: str
    rep: int
    position: int
    wall_s: float
    maxrss_kib: int
    utime_s: float
    stime_s: float
    start_epoch: float
    output: Path
    output_bytes: int
    argv: list[str]
    other_cpu_s: float
    busy_before: float = 0.0
    noisy: bool = False
    geoetl: dict[str, Any] = field(default_factory=dict)

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib / 1024.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "rep": self.rep,
            "position": self.position,
            "wall_s": self.wall_s,
            "peak_rss_mib": self.rss_mib,
            "utime_s": self.utime_s,
            "stime_s": self.stime_s,
            "cpu_s": self.utime_s + self.stime_s,
            "other_cpu_s": self.other_cpu_s,
            "busy_cpus_before": self.busy_before,
            "noisy": self.noisy,
            "output_bytes": self.output_bytes,
            "argv": self.argv,
            **({"geoetl": self.geoetl} if self.geoetl else {}),
        }


def geoetl_split(home: Path, job: dict[str, Any], start: float, wall: float) -> dict[str, Any]:
    """Where a geoetl run's wall time went, from the job's and tasks' timestamps."""
    with contextlib.closing(sqlite3.connect(home / "geoetl.db")) as db:
        created, finished = db.execute(
            "SELECT created_at, finished_at FROM jobs WHERE job_id = ?", (job["job_id"],)
        ).fetchone()
        tasks = db.execute(
            "SELECT stage, started_at, finished_at FROM tasks "
            "WHERE job_key = (SELECT job_key FROM jobs WHERE job_id = ?) "
            "ORDER BY stage_index, idx",
            (job["job_id"],),
        ).fetchall()
    stages: dict[str, float] = defaultdict(float)
    for stage, started, done in tasks:
        stages[stage] += done - started
    in_job = finished - created
    return {
        "before_job_s": created - start,
        "stages_s": dict(stages),
        "job_overhead_s": in_job - sum(stages.values()),
        "job_s": in_job,
        "after_job_s": start + wall - finished,
        "duration_seconds": job.get("duration_seconds"),
        "result": job.get("result"),
    }


def run_tool(
    case: Case, tool: str, rep: int, position: int, run_dir: Path, *, init_home: bool = True
) -> Run:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    env = clean_env()
    if tool == "geoetl":
        home = run_dir / "home"
        env["GEOETL_HOME"] = str(home)
        if init_home:
            # An installed platform: its database exists (created once, not per file).
            subprocess.run(
                [str(BIN / "geoetl"), "db", "upgrade"], env=env, check=True, capture_output=True
            )
        argv = geoetl_argv(case)
        usage = launch(argv, run_dir, env)
        job = json.loads((run_dir / "stdout").read_text())
        if job.get("status") != "succeeded":
            raise BenchmarkError(f"geoetl job {job.get('job_id')} ended {job.get('status')}")
        output = home / "storage" / job["result"]["cog"]
        split = geoetl_split(home, job, usage["start_epoch"], usage["wall_s"])
    else:
        output = run_dir / "out.tif"
        argv = gdal_argv(case, output) if tool == "gdal_translate" else rasterio_argv(case, output)
        usage = launch(argv, run_dir, env)
        split = {}
    return Run(
        tool=tool,
        rep=rep,
        position=position,
        wall_s=usage["wall_s"],
        maxrss_kib=usage["maxrss_kib"],
        utime_s=usage["utime_s"],
        stime_s=usage["stime_s"],
        start_epoch=usage["start_epoch"],
        output=output,
        output_bytes=output.stat().st_size,
        argv=argv,
        other_cpu_s=usage["other_cpu_s"],
        geoetl=split,
    )


# -- verification ------------------------------------------------------------------------------


def describe_output(path: Path) -> dict[str, Any]:
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    valid, errors, warnings = cog_validate(str(path), quiet=True)
    with rasterio.open(path) as ds:
        return {
            "cog_valid": valid,
            "cog_errors": errors,
            "cog_warnings": warnings,
            "width": ds.width,
            "height": ds.height,
            "count": ds.count,
            "dtypes": list(ds.dtypes),
            "crs": ds.crs.to_string() if ds.crs else None,
            "nodata": None if ds.nodata is None else repr(ds.nodata),
            "colorinterp": [ci.name for ci in ds.colorinterp],
            "compression": ds.compression.name if ds.compression else None,
            "predictor": ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR"),
            "block_shapes": [list(s) for s in ds.block_shapes[:1]],
            "overviews": ds.overviews(1),
            "bytes": path.stat().st_size,
            "transform": list(ds.transform)[:6],
        }


def pixel_diff(a: Path, b: Path) -> dict[str, Any]:
    """Full-resolution comparison, row band by row band.

    ``nodata_mismatch_fraction``: pixels NaN in one file only; the other numbers are over
    pixels valid in both.
    """
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(a) as da, rasterio.open(b) as db:
        if (da.width, da.height, da.count) != (db.width, db.height, db.count):
            return {"comparable": False}
        max_abs, differing, nan_mismatch, total = 0.0, 0, 0, 0
        for row in range(0, da.height, BLOCK):
            window = Window(0, row, da.width, min(BLOCK, da.height - row))
            xa = da.read(window=window).astype("float64")
            xb = db.read(window=window).astype("float64")
            na, nb = np.isnan(xa), np.isnan(xb)
            nan_mismatch += int((na != nb).sum())
            valid = ~na & ~nb
            diff = np.abs(xa[valid] - xb[valid])
            if diff.size:
                max_abs = max(max_abs, float(diff.max()))
            differing += int((diff > 0).sum())
            total += xa.size
    return {
        "comparable": True,
        "max_abs_diff": max_abs,
        "differing_fraction": differing / total,
        "nodata_mismatch_fraction": nan_mismatch / total,
    }


def verify(case: Case, outputs: dict[str, Path]) -> dict[str, Any]:
    from rasterio.crs import CRS

    described = {tool: describe_output(path) for tool, path in outputs.items()}
    ref = described["geoetl"]
    problems = []
    for tool, d in described.items():
        if not d["cog_valid"]:
            problems.append(f"{tool}: not a valid COG: {d['cog_errors']}")
        if tool == "geoetl":
            continue
        for key in ("width", "height", "count", "dtypes", "nodata", "compression", "predictor"):
            if d[key] != ref[key]:
                problems.append(f"{tool}: {key} {d[key]} != geoetl's {ref[key]}")
        if len(d["overviews"]) != len(ref["overviews"]):
            problems.append(f"{tool}: overviews {d['overviews']} != geoetl's {ref['overviews']}")
        if (d["crs"] is None) != (ref["crs"] is None) or (
            d["crs"] and CRS.from_user_input(d["crs"]) != CRS.from_user_input(ref["crs"])
        ):
            problems.append(f"{tool}: CRS {d['crs']} != geoetl's {ref['crs']}")
    expected_crs = TARGET_CRS if case.reproject else None
    if expected_crs and CRS.from_user_input(ref["crs"]) != CRS.from_user_input(expected_crs):
        problems.append(f"geoetl: CRS {ref['crs']} is not {expected_crs}")
    diffs = {
        tool: pixel_diff(outputs["geoetl"], path)
        for tool, path in outputs.items()
        if tool != "geoetl"
    }
    return {"outputs": described, "pixel_diff_vs_geoetl": diffs, "problems": problems}


# -- in-process phase timing -------------------------------------------------------------------


class Timers:
    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def wrap(self, label: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                name = label(*args, **kwargs) if callable(label) else label
                with self.lock:
                    self.totals[name] += time.perf_counter() - t0
                    self.calls[name] += 1

        return timed


def phase_child(input_path: str, reproject: bool, home: str, out: str) -> None:
    """One ``geoetl ingest`` in this process with timers around each step (``--phase-child``)."""
    t0 = time.perf_counter()
    import rasterio.shutil
    import rio_cogeo.cogeo as rio_cogeo_cogeo

    import geoetl.cli.ingest as cli_ingest
    import geoetl.platform as geoetl_platform
    import geoetl.raster.cog as cog
    import geoetl.raster.stac as stac
    from geoetl.cli import main as cli_main
    from geoetl.storage.objectstore import ObjectStore

    pr = importlib.import_module("geoetl.workflows.process_raster")
    imports_s = time.perf_counter() - t0
    timers = Timers()

    def put_label(_self: Any, _local: Any, key: str) -> str:
        return "bronze copy (put_file)" if key.startswith("bronze/") else "stage COG (put_file)"

    def sha_label(path: Any) -> str:
        return "checksum COG for STAC (sha256)"

    patches: list[tuple[Any, str, str | Callable[..., str]]] = [
        (geoetl_platform.Platform, "from_settings", "platform: from_settings total"),
        (geoetl_platform, "ensure_schema", "platform: ensure_schema (migrations)"),
        (cli_main, "run_in_process", "run job in process total"),
        (cli_ingest, "detect_kind", "detect_kind (open)"),
        (cli_ingest, "store_in_bronze", "bronze: store_in_bronze total"),
        (cli_ingest, "sha256_file", "bronze: sha256 of input"),
        (ObjectStore, "put_content_addressed", "bronze: hash while copying"),
        (ObjectStore, "put_file", put_label),
        (ObjectStore, "move_file", "stage COG (move_file)"),
        (ObjectStore, "move", "publish (move)"),
        (pr, "inspect_raster", "validate: inspect_raster"),
        (pr, "write_cog", "cog: write_cog total"),
        (rasterio.shutil, "copy", "cog: GDAL COG write (rasterio.shutil.copy)"),
        (cog, "verify_cog", "cog: verify_cog (incl. cog_validate)"),
        (rio_cogeo_cogeo, "cog_validate", "cog: rio-cogeo cog_validate"),
        (stac, "build_item", "catalog: build_item total"),
        (stac, "create_stac_item", "catalog: rio-stac create_stac_item"),
        (stac, "sha256_file", sha_label),
    ]
    skipped = []  # geoetl changes: time what exists
    for owner, attr, label in patches:
        if hasattr(owner, attr):
            setattr(owner, attr, timers.wrap(label, getattr(owner, attr)))
        else:
            skipped.append(f"{getattr(owner, '__name__', owner)}.{attr}")
    os.environ["GEOETL_HOME"] = home
    args = ["ingest", input_path, "--tier", "analysis", "--json"]
    if not reproject:
        args += ["--target-crs", "native"]
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        try:
            cli_main.app(args, standalone_mode=False)
        except SystemExit as exc:  # finish() exits non-zero when the job failed
            if exc.code:
                raise
    ingest_s = time.perf_counter() - t1
    job = json.loads(captured.getvalue())
    Path(out).write_text(
        json.dumps(
            {
                "imports_s": imports_s,
                "ingest_s": ingest_s,
                "status": job.get("status"),
                "phases_s": dict(timers.totals),
                "calls": dict(timers.calls),
                "not_timed": skipped,
            }
        )
    )


def run_phases(case: Case, run_dir: Path) -> dict[str, Any]:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    out = run_dir / "phases.json"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase-child",
        str(case.input.path),
        "1" if case.reproject else "0",
        str(run_dir / "home"),
        str(out),
    ]
    usage = launch(argv, run_dir, clean_env())
    result: dict[str, Any] = json.loads(out.read_text())
    result["process_wall_s"] = usage["wall_s"]
    result["peak_rss_mib"] = usage["maxrss_kib"] / 1024.0
    result["other_cpu_s"] = usage["other_cpu_s"]
    shutil.rmtree(run_dir / "home", ignore_errors=True)
    return result


def run_py_spy(case: Case, run_dir: Path, svg: Path) -> None:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    env = clean_env()
    env["GEOETL_HOME"] = str(run_dir / "home")
    argv = [str(BIN / "py-spy"), "record", "--native", "--threads", "-r", "200", "-o", str(svg)]
    subprocess.run([*argv, "--", *geoetl_argv(case)], env=env, check=True, capture_output=True)
    shutil.rmtree(run_dir / "home", ignore_errors=True)


def run_baselines(args: argparse.Namespace, runs_dir: Path, console: Any) -> dict[str, Any]:
    """Start-up cost of each tool with no raster work: time and peak RSS."""
    commands = {
        "python -c 'import geoetl.cli.main'": [sys.executable, "-c", "import geoetl.cli.main"],
        "geoetl --help": [str(BIN / "geoetl"), "--help"],
        "python -c 'import rasterio'": [sys.executable, "-c", "import rasterio"],
        "gdal_translate --version": ["gdal_translate", "--version"],
    }
    if "gdal_translate" not in args.tools:
        del commands["gdal_translate --version"]
    return time_baselines(commands, runs_dir, args.quiet_wait, console)


# -- the ~27 MB input through a running service -------------------------------------------------

SERVICE_POLL_S = 0.05


def _upload_and_wait(base: str, path: Path, params: dict[str, str]) -> dict[str, Any]:
    """POST the file to /ingest and poll its job until it ends; times and the job."""
    import httpx

    t0 = time.perf_counter()
    with path.open("rb") as body:
        response = httpx.post(
            f"{base}/ingest",
            params={"filename": path.name, **params},
            content=body,
            timeout=120,
        )
    if response.status_code != 202:
        raise BenchmarkError(f"POST /ingest answered {response.status_code}: {response.text}")
    submitted = time.perf_counter()
    location = response.headers["location"]
    while True:
        job: dict[str, Any] = httpx.get(location, timeout=30).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(SERVICE_POLL_S)
    done = time.perf_counter()
    if job["status"] != "succeeded":
        raise BenchmarkError(f"service job {job['job_id']} ended {job['status']}: {job['error']}")
    return {
        "wall_s": done - t0,
        "upload_and_submit_s": submitted - t0,
        "job_s": job["duration_seconds"],
        "job": job,
    }


def run_service(
    small: InputFile, args: argparse.Namespace, runs_dir: Path, console: Any
) -> dict[str, Any]:
    """The ~27 MB input published through a running ``geoetl serve`` (one worker).

    This is how the replaced platform's 22-37 s were measured: a file handed to a
    running service until its item is published. Timed from the first byte of
    ``POST /ingest?filename=…`` (the file streamed from disk) to the moment a poll of
    ``GET /jobs/{id}`` (every 50 ms) sees the job succeeded. One untimed warm-up
    ingest of a small sample first, so the worker has loaded the raster libraries as a
    running service has. Each repeat uses a new item id (else the same upload returns
    the finished job).
    """
    console.rule(f"service: POST /ingest {small.path.name} ({small.bytes / 1e6:.0f} MB)")
    run_dir = runs_dir / "service"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    env = clean_env()
    home = run_dir / "home"
    env["GEOETL_HOME"] = str(home)
    subprocess.run([str(BIN / "geoetl"), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "geoetl"), "serve", "--port", str(port), "--workers", "1"]
    results: dict[str, Any] = {"command": shlex.join(argv), "modes": {}}
    with (run_dir / "serve.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            import httpx

            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise BenchmarkError(f"geoetl serve did not start: see {run_dir}/serve.log")
                time.sleep(0.2)
            _upload_and_wait(base, DATA / "elev.tif", {"item_id": "warm-up"})
            for mode in ("native", TARGET_CRS):
                runs = []
                for rep in range(args.repeats):
                    wait_quiet(args.quiet_wait)
                    busy0 = busy_cpu_s()
                    run = _upload_and_wait(
                        base,
                        small.path,
                        {"target_crs": mode, "output_tier": "analysis", "item_id": f"r{rep}"},
                    )
                    cog = home / "storage" / run["job"]["result"]["cog"]
                    run["output"] = describe_output(cog)
                    run["machine_busy_cpu_s"] = busy_cpu_s() - busy0
                    del run["job"]
                    runs.append(run)
                    console.print(
                        f"  {mode:<10} #{rep + 1} {run['wall_s']:5.2f} s (upload + submit "
                        f"{run['upload_and_submit_s']:.2f}, job {run['job_s']:.2f}); COG valid "
                        f"{run['output']['cog_valid']}",
                        highlight=False,
                    )
                wall = median([r["wall_s"] for r in runs])
                results["modes"][mode] = {
                    "wall_s_median": wall,
                    "wall_s_min": min(r["wall_s"] for r in runs),
                    "job_s_median": median([r["job_s"] for r in runs]),
                    "floor": {
                        "floor": FLOOR_SMALL_WALL_S,
                        "value": wall,
                        "met": wall < FLOOR_SMALL_WALL_S,
                    },
                    "runs": runs,
                }
        finally:
            proc.send_signal(2)  # SIGINT: the server stops its worker and exits
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return results


# -- one case ----------------------------------------------------------------------------------


def print_run(console: Any, rep: int, run: Run, *, noisy: bool) -> None:
    extra = ""
    if run.geoetl:
        g = run.geoetl
        stages = ", ".join(f"{name} {s:.2f}" for name, s in g["stages_s"].items())
        extra = f"  [before job {g['before_job_s']:.2f}, {stages}, after {g['after_job_s']:.2f}]"
    console.print(
        f"  #{rep + 1} {run.tool:<15} {run.wall_s:7.2f} s  {run.rss_mib:7.0f} MiB  "
        f"cpu {run.utime_s + run.stime_s:6.2f} s (others {run.other_cpu_s:5.2f})  "
        f"out {run.output_bytes / 1e6:7.1f} MB{extra}" + ("  NOISY, again" if noisy else ""),
        highlight=False,
        markup=False,
    )


def run_case(case: Case, args: argparse.Namespace, runs_dir: Path, console: Any) -> dict[str, Any]:
    console.rule(f"{case.name}: {case.input.path.name} ({case.input.bytes / 1e6:.0f} MB)")
    load_before = os.getloadavg()
    warm_cache(case.input.path)
    tools = list(args.tools)
    runs: list[Run] = []
    discarded: list[Run] = []  # runs the rest of the machine disturbed, made again
    for rep in range(args.repeats):
        k = rep % len(tools)
        order = tools[k:] + tools[:k]
        for position, tool in enumerate(order):
            run_dir = runs_dir / case.name / f"{tool}-{rep}"
            for attempt in range(args.retries + 1):
                busy_before = wait_quiet(args.quiet_wait)
                run = run_tool(case, tool, rep, position, run_dir, init_home=args.init_home)
                run.busy_before = busy_before
                noisy = run.other_cpu_s / run.wall_s > args.noise_limit
                run.noisy = noisy
                print_run(console, rep, run, noisy=noisy)
                if not noisy or attempt == args.retries:
                    break
                discarded.append(run)
                cleanup_run(run)
            runs.append(run)
            if rep < args.repeats - 1:  # keep the last repeat's outputs for verification
                cleanup_run(run)
    last = {r.tool: r.output for r in runs if r.rep == args.repeats - 1}
    verification = verify(case, last)
    for problem in verification["problems"]:
        console.print(f"  [red]verification:[/] {problem}")
    for run in runs:
        if run.rep == args.repeats - 1 and not args.keep:
            cleanup_run(run)

    summary: dict[str, Any] = {}
    for tool in tools:
        everything = [r for r in runs if r.tool == tool]
        # Still disturbed after the retries: left out of the statistics unless all were.
        mine = [r for r in everything if not r.noisy] or everything
        summary[tool] = {
            "runs_used": len(mine),
            "runs_noisy_kept_out": len(everything) - len(mine),
            "wall_s_median": median([r.wall_s for r in mine]),
            "wall_s_min": min(r.wall_s for r in mine),
            "wall_s_max": max(r.wall_s for r in mine),
            "peak_rss_mib_median": median([r.rss_mib for r in mine]),
            "peak_rss_mib_min": min(r.rss_mib for r in mine),
            "peak_rss_mib_max": max(r.rss_mib for r in mine),
            "cpu_s_median": median([r.utime_s + r.stime_s for r in mine]),
            "other_cpu_s_median": median([r.other_cpu_s for r in mine]),
            "output_bytes": mine[-1].output_bytes,
        }
    geo_runs = [r for r in runs if r.tool == "geoetl" and not r.noisy] or [
        r for r in runs if r.tool == "geoetl"
    ]
    stage_names = sorted({s for r in geo_runs for s in r.geoetl["stages_s"]})
    summary["geoetl"]["split_median_s"] = {
        "before_job": median([r.geoetl["before_job_s"] for r in geo_runs]),
        **{s: median([r.geoetl["stages_s"].get(s, 0.0) for r in geo_runs]) for s in stage_names},
        "job_overhead": median([r.geoetl["job_overhead_s"] for r in geo_runs]),
        "after_job": median([r.geoetl["after_job_s"] for r in geo_runs]),
    }
    ratios: dict[str, Any] = {}
    for other in tools[1:]:
        ratios[other] = {
            "wall": summary["geoetl"]["wall_s_median"] / summary[other]["wall_s_median"],
            "wall_of_mins": summary["geoetl"]["wall_s_min"] / summary[other]["wall_s_min"],
            "peak_rss": summary["geoetl"]["peak_rss_mib_median"]
            / summary[other]["peak_rss_mib_median"],
            "output_size": summary["geoetl"]["output_bytes"] / summary[other]["output_bytes"],
        }
    floors: dict[str, Any] = {}
    if case.ratio_floors and "gdal_translate" in ratios:
        floors["wall_ratio"] = {
            "floor": FLOOR_WALL_RATIO,
            "value": ratios["gdal_translate"]["wall"],
            "met": ratios["gdal_translate"]["wall"] <= FLOOR_WALL_RATIO,
        }
        floors["peak_rss_ratio"] = {
            "floor": FLOOR_RSS_RATIO,
            "value": ratios["gdal_translate"]["peak_rss"],
            "met": ratios["gdal_translate"]["peak_rss"] <= FLOOR_RSS_RATIO,
        }
    if case.absolute_floor_s is not None:
        value = summary["geoetl"]["wall_s_median"]
        floors["wall_s"] = {
            "floor": case.absolute_floor_s,
            "value": value,
            "met": value < case.absolute_floor_s,
        }
    phases = None
    if args.phases:
        for _attempt in range(args.retries + 1):
            wait_quiet(args.quiet_wait)
            phases = run_phases(case, runs_dir / case.name / "phases")
            if phases["other_cpu_s"] / phases["process_wall_s"] <= args.noise_limit:
                break
            console.print(f"  phases run disturbed (others {phases['other_cpu_s']:.2f}), again")
        assert phases is not None
        console.print(
            f"  phases (in-process, 1 run): imports {phases['imports_s']:.2f} s, "
            f"ingest {phases['ingest_s']:.2f} s: "
            + ", ".join(f"{k} {v:.2f}" for k, v in phases["phases_s"].items()),
            highlight=False,
        )
    if args.py_spy:
        svg = args.out.parent / f"raster-{case.name}.svg"
        run_py_spy(case, runs_dir / case.name / "py-spy", svg)
        console.print(f"  py-spy flame graph: {svg}")
    return {
        "name": case.name,
        "input": case.input.name,
        "reproject": case.reproject,
        "target_crs": TARGET_CRS if case.reproject else "native",
        "creation_options": case.options,
        "commands": {
            "geoetl": "GEOETL_HOME=<fresh dir> " + shlex.join(geoetl_argv(case)),
            "gdal_translate": shlex.join(gdal_argv(case, Path("out.tif"))),
            "rasterio-cog": shlex.join(rasterio_argv(case, Path("out.tif"))),
        },
        "summary": summary,
        "ratios_geoetl_over": ratios,
        "floors": floors,
        "verification": verification,
        "phases": phases,
        "runs": [r.as_dict() for r in runs],
        "discarded_noisy_runs": [r.as_dict() for r in discarded],
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
    }


def cleanup_run(run: Run) -> None:
    """Remove a run's outputs (and geoetl's home), keeping its logs."""
    run_dir = run.output.parent if run.tool != "geoetl" else _geoetl_run_dir(run.output)
    for item in run_dir.iterdir():
        if item.name not in ("stdout", "stderr", "rusage.json"):
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)


def _geoetl_run_dir(output: Path) -> Path:
    for parent in output.parents:
        if parent.name == "home":
            return parent.parent
    raise BenchmarkError(f"cannot find the run folder of {output}")


# -- report ------------------------------------------------------------------------------------


def tool_versions() -> dict[str, Any]:
    import rasterio
    import rio_cogeo
    import rio_stac

    gdal_cli = subprocess.run(
        ["gdal_translate", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    from importlib.metadata import version

    info = {
        "gdal_translate": gdal_cli,
        "rasterio": rasterio.__version__,
        "rasterio_gdal": rasterio.__gdal_version__,
        "rio_cogeo": rio_cogeo.__version__,
        "rio_stac": rio_stac.__version__,
        "geoetl": version("geoetl"),
    }
    cli_version = gdal_cli.split(",")[0].removeprefix("GDAL ").strip()
    info["same_gdal"] = cli_version == rasterio.__gdal_version__
    return info


def verdict(floor: dict[str, Any] | None) -> str:
    if not floor:
        return ""
    return " ✓" if floor["met"] else " ✗"


def print_table(cases: list[dict[str, Any]], tools: list[str], console: Any) -> None:
    from rich.table import Table

    table = Table(title="geoetl ingest vs gdal_translate -of COG (medians)")
    table.add_column("case")
    table.add_column("input MB", justify="right")
    table.add_column("geoetl s", justify="right")
    table.add_column("gdal_tr s", justify="right")
    table.add_column(f"wall ratio (≤{FLOOR_WALL_RATIO})", justify="right")
    table.add_column("ratio of mins", justify="right")
    table.add_column("geoetl MiB", justify="right")
    table.add_column("gdal_tr MiB", justify="right")
    table.add_column(f"RSS ratio (≤{FLOOR_RSS_RATIO})", justify="right")
    if "rasterio-cog" in tools:
        table.add_column("rio-cog s / MiB", justify="right")
    table.add_column("out MB geoetl/gdal", justify="right")
    table.add_column("verified")
    for c in cases:
        s, r, f = c["summary"], c["ratios_geoetl_over"], c["floors"]
        g, t = s["geoetl"], s.get("gdal_translate")
        gt = r.get("gdal_translate", {})
        wall_note = verdict(f.get("wall_s"))
        row = [
            c["name"],
            f"{c['input_mb']:.0f}",
            f"{g['wall_s_median']:.2f}{wall_note}",
            f"{t['wall_s_median']:.2f}" if t else "-",
            f"{gt['wall']:.2f}{verdict(f.get('wall_ratio'))}" if gt else "-",
            f"{gt['wall_of_mins']:.2f}" if gt else "-",
            f"{g['peak_rss_mib_median']:.0f}",
            f"{t['peak_rss_mib_median']:.0f}" if t else "-",
            f"{gt['peak_rss']:.2f}{verdict(f.get('peak_rss_ratio'))}" if gt else "-",
        ]
        if "rasterio-cog" in tools:
            rc = s["rasterio-cog"]
            row.append(f"{rc['wall_s_median']:.2f} / {rc['peak_rss_mib_median']:.0f}")
        row.append(
            f"{g['output_bytes'] / 1e6:.1f} / {t['output_bytes'] / 1e6:.1f}"
            if t
            else f"{g['output_bytes'] / 1e6:.1f}"
        )
        row.append("yes" if not c["verification"]["problems"] else "NO")
        table.add_row(*row)
    console.print(table)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="big inputs are SIZE x SIZE")
    parser.add_argument("--small-size", type=int, default=3000, help="~27 MB input side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / "out" / "work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "raster.json")
    parser.add_argument("--cases", default="", help="comma-separated case names (default all)")
    parser.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help="geoetl first; gdal_translate and/or rasterio-cog",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the inputs")
    parser.add_argument("--keep", action="store_true", help="keep the last repeat's outputs")
    parser.add_argument(
        "--init-home",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create each fresh GEOETL_HOME's database (geoetl db upgrade) before the timed "
        "run, as on an installed platform; --no-init-home times first use as well",
    )
    parser.add_argument(
        "--service",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also publish the ~27 MB input through a running `geoetl serve` (POST /ingest)",
    )
    parser.add_argument(
        "--phases",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one more in-process geoetl run per case with per-step timers",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for the machine to be idle",
    )
    parser.add_argument(
        "--noise-limit",
        type=float,
        default=0.2,
        help="a run is made again when other processes used more than this many CPUs",
    )
    parser.add_argument("--retries", type=int, default=2, help="re-runs of a noisy run")
    parser.add_argument("--py-spy", action="store_true", help="flame graph per case (svg)")
    parser.add_argument("--phase-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.tools = [t for t in args.tools.split(",") if t]
    if args.tools[0] != "geoetl" or any(t not in TOOLS for t in args.tools):
        parser.error(f"--tools: geoetl first, then any of {TOOLS[1:]}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase_child:
        path, reproject, home, out = args.phase_child
        phase_child(path, reproject == "1", home, out)
        return 0
    console = console_factory()
    if "gdal_translate" in args.tools and shutil.which("gdal_translate") is None:
        console.print(
            "[red]gdal_translate is not installed[/]: install GDAL's command-line tools "
            "(Debian/Ubuntu: apt-get install -y gdal-bin) or pass --tools geoetl,rasterio-cog"
        )
        return 2
    if not (BIN / "geoetl").exists():
        console.print(f"[red]{BIN / 'geoetl'} not found[/]: run with the project venv's python")
        return 2
    mismatches = check_profiles_match()
    for problem in mismatches:
        console.print(f"[yellow]profile mismatch:[/] {problem}")

    versions = tool_versions()
    machine = machine_info()
    console.print(f"machine: {machine}", highlight=False)
    console.print(f"versions: {versions}", highlight=False)
    if not versions["same_gdal"]:
        console.print(
            f"[yellow]note:[/] gdal_translate is {versions['gdal_translate']!r}, geoetl runs "
            f"rasterio's bundled GDAL {versions['rasterio_gdal']}; 'rasterio-cog' is the "
            "same-GDAL control"
        )
    load_start = os.getloadavg()
    console.print(f"load average at start: {load_start}")

    t0 = time.perf_counter()
    inputs = build_inputs(args.work_dir, args.size, args.small_size, args.rebuild)
    console.print(f"inputs ready in {time.perf_counter() - t0:.1f} s:")
    for spec in inputs.values():
        console.print(f"  {spec.path} {spec.bytes / 1e6:.1f} MB sha256 {spec.sha256[:16]}…")

    cases = make_cases(inputs, args.size, args.small_size)
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.name in wanted]
        if not cases:
            console.print(f"[red]no case matches {args.cases}[/]")
            return 2
    runs_dir = args.work_dir / "runs"
    baselines = run_baselines(args, runs_dir, console)
    results = []
    for case in cases:
        result = run_case(case, args, runs_dir, console)
        result["input_mb"] = case.input.bytes / 1e6
        results.append(result)
    service = (
        run_service(inputs[f"rgb_{args.small_size}"], args, runs_dir, console)
        if args.service
        else None
    )
    if not args.keep:
        shutil.rmtree(runs_dir, ignore_errors=True)

    print_table(results, args.tools, console)
    floors_met = all(f["met"] for c in results for f in c["floors"].values())
    if service:
        for mode, m in service["modes"].items():
            f = m["floor"]
            mark = "[green]met[/]" if f["met"] else "[red]NOT met[/]"
            console.print(
                f"service POST /ingest {args.small_size}² {mode}: {f['value']:.2f} s "
                f"(floor < {f['floor']} s) {mark}"
            )
    verified = all(not c["verification"]["problems"] for c in results)
    for c in results:
        for name, f in c["floors"].items():
            mark = "[green]met[/]" if f["met"] else "[red]NOT met[/]"
            console.print(f"{c['name']}: {name} {f['value']:.3f} (floor {f['floor']}) {mark}")
    report = {
        "benchmark": "raster (issue 3)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "versions": versions,
        "profile_mismatches": mismatches,
        "floors": {
            "wall_ratio": FLOOR_WALL_RATIO,
            "peak_rss_ratio": FLOOR_RSS_RATIO,
            "small_input_wall_s": FLOOR_SMALL_WALL_S,
            "old_platform_small_input_s": list(OLD_PLATFORM_SMALL_S),
        },
        "method": {
            "repeats": args.repeats,
            "statistic": "median over runs not disturbed by other processes (ratio of "
            "minimums also given)",
            "order": "tools rotated every repeat",
            "peak_rss": "ru_maxrss of the child from os.wait4 in a python -S launcher (MiB)",
            "page_cache": "input read once before each case",
            "other_cpu_s": "busy CPU time of the rest of the machine during a run (/proc/stat "
            "minus the child's own), a noise indicator; 2 CPUs = 2 CPU-s per second",
            "geoetl_home": "fresh per run"
            + (", database created before the timed run" if args.init_home else ""),
            "quiet_wait_s": args.quiet_wait,
        },
        "inputs": {name: spec.as_dict() for name, spec in inputs.items()},
        "startup_baselines": baselines,
        "cases": results,
        "service_small_input": service,
        "all_floors_met": floors_met,
        "all_verified": verified,
        "loadavg_start": list(load_start),
        "loadavg_end": list(os.getloadavg()),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {args.out}; load average at end {os.getloadavg()}")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
