"""Batch benchmark (issue 16): a batch of small rasters through the landing zone.

``geoetl batch submit DIR --no-wait`` uploads every file of a folder to the landing zone,
commits it with a manifest and submits one job per file; two ``geoetl worker`` processes
(started before the batch, so their start-up is not counted against the batch, as a
deployment's workers are already running) run the jobs. The batch's wall time runs from
the submit command's start until ``geoetl batch show`` reports every file ended, and the
figure is files per second.

Side by side, in the same run, on the same files:

* ``gdal_translate -of COG`` called once per file in a shell-style loop, with the creation
  options geoetl's analysis tier uses (``geoetl.raster.profiles``);
* the same calls two at a time (``--jobs 2``), the fair match for two workers.

geoetl does more per file than the loop: it validates the file, copies it into bronze
under its SHA-256, checks the COG it wrote, records a STAC item with lineage and
publishes it. The inputs are EPSG:4326, so geoetl's default target CRS writes no warp.

Run from the repository root::

    .venv/bin/python benchmarks/batch.py --files 200 --size 1024 --out benchmarks/out/batch.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    BenchmarkError,
    busy_cpu_s,
    clean_env,
    console_factory,
    machine_info,
    wait_quiet,
)

GEOETL = str(Path(sys.executable).with_name("geoetl"))


def make_inputs(folder: Path, files: int, size: int) -> list[Path]:
    """``files`` striped RGB GeoTIFFs of ``size``², adjacent tiles in EPSG:4326."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    yy, xx = np.mgrid[0:size, 0:size]
    base = ((xx // 8 + yy // 8) % 64).astype("uint8")
    out = []
    for i in range(files):
        noise = rng.integers(0, 24, size=(3, size, size), dtype="uint8")
        data = np.stack([base * 2, base + i % 100, 255 - base]).astype("uint8") + noise
        path = folder / f"tile_{i:04d}.tif"
        col, row = i % 20, i // 20
        transform = from_origin(10 + col * 0.01, 50 - row * 0.01, 0.01 / size, 0.01 / size)
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": 3,
            "dtype": "uint8",
            "crs": "EPSG:4326",
            "transform": transform,
            "compress": "deflate",
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        out.append(path)
    return out


def gdal_argv(src: Path, dst: Path) -> list[str]:
    from geoetl.raster.profiles import cog_profile

    options = cog_profile("rgb", "analysis", "uint8", 85).creation_options()  # type: ignore[arg-type]
    argv = ["gdal_translate", "-q", "-of", "COG", "--config", "GDAL_NUM_THREADS", "ALL_CPUS"]
    for key, value in options.items():
        argv += ["-co", f"{key}={value}"]
    return [*argv, str(src), str(dst)]


def run_gdal(inputs: list[Path], out_dir: Path, jobs: int) -> dict[str, Any]:
    """The loop of gdal_translate calls (``jobs`` at a time)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    busy0, t0 = busy_cpu_s(), time.perf_counter()

    def one(src: Path) -> None:
        subprocess.run(gdal_argv(src, out_dir / src.name), check=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, inputs))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "files_per_s": len(inputs) / wall, "busy_cpu_s": busy_cpu_s() - busy0}


def run_geoetl(inputs: Path, files: int, home: Path, workers: int) -> dict[str, Any]:
    """A batch through the landing zone with ``workers`` worker processes."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = clean_env() | {"GEOETL_HOME": str(home)}
    subprocess.run([GEOETL, "db", "upgrade"], env=env, check=True, capture_output=True)
    logs = [(home / f"worker-{i}.log").open("wb") for i in range(workers)]
    procs = [
        subprocess.Popen([GEOETL, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        for log in logs
    ]
    try:
        time.sleep(3)  # the workers are up, as a deployment's are
        busy0, t0 = busy_cpu_s(), time.perf_counter()
        options = ["--batch-id", "bench", "--collection", "bench", "--access-level", "public"]
        submitted = subprocess.run(
            [GEOETL, "batch", "submit", str(inputs), "--no-wait", "--json", *options],
            env=env,
            capture_output=True,
            text=True,
        )
        if submitted.returncode != 0:
            raise BenchmarkError(f"batch submit failed: {submitted.stderr[-2000:]}")
        submit_s = time.perf_counter() - t0
        batch = json.loads(submitted.stdout)
        while True:
            shown = subprocess.run(
                [GEOETL, "batch", "show", batch.get("batch_id", "bench"), "--json"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            state = json.loads(shown.stdout)
            statuses = [f.get("status") for f in state.get("files", [])]
            if len(statuses) == files and all(
                s in ("succeeded", "failed", "cancelled", "refused") for s in statuses
            ):
                break
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        busy = busy_cpu_s() - busy0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        for log in logs:
            log.close()
    failed = [f for f in state["files"] if f.get("status") != "succeeded"]
    if failed:
        raise BenchmarkError(f"{len(failed)} file(s) did not succeed: {failed[:3]}")
    return {
        "wall_s": wall,
        "submit_s": submit_s,
        "files_per_s": files / wall,
        "busy_cpu_s": busy,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024, help="pixels per side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "batch-work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "batch.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = console_factory()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    inputs_dir = work / "inputs"
    inputs = make_inputs(inputs_dir, args.files, args.size)
    input_mb = sum(p.stat().st_size for p in inputs) / 1e6
    console.print(f"{args.files} rasters of {args.size}² RGB, {input_mb:.1f} MB in all")
    runs: dict[str, list[dict[str, Any]]] = {"geoetl": [], "gdal_loop": [], "gdal_loop_2": []}
    for repeat in range(args.repeats):
        for tool in runs:
            noise = wait_quiet(args.quiet_wait)
            if tool == "geoetl":
                result = run_geoetl(inputs_dir, args.files, work / "home", args.workers)
            else:
                jobs = 2 if tool == "gdal_loop_2" else 1
                result = run_gdal(inputs, work / f"out-{tool}", jobs)
            result["busy_cpus_before"] = noise
            runs[tool].append(result)
            console.print(
                f"repeat {repeat + 1} {tool:12s} {result['wall_s']:7.2f} s "
                f"{result['files_per_s']:6.1f} files/s (machine busy before: {noise:.2f} CPUs)"
            )
    medians = {
        tool: sorted(r["files_per_s"] for r in results)[len(results) // 2]
        for tool, results in runs.items()
    }
    report = {
        "machine": machine_info(),
        "files": args.files,
        "size": args.size,
        "input_mb": input_mb,
        "workers": args.workers,
        "runs": runs,
        "median_files_per_s": medians,
        "ratio_vs_loop": medians["geoetl"] / medians["gdal_loop"],
        "ratio_vs_loop_2": medians["geoetl"] / medians["gdal_loop_2"],
        "cpus": os.cpu_count(),
    }
    for tool, value in medians.items():
        console.print(f"{tool:12s} median {value:6.1f} files/s")
    console.print(
        f"geoetl / gdal_translate loop: {report['ratio_vs_loop']:.2f}x files/s; "
        f"/ 2 at a time: {report['ratio_vs_loop_2']:.2f}x"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    tempfile.tempdir = None
    raise SystemExit(main())
