"""NetCDF benchmark (issue 16): ``geoetl ingest FILE.nc --variable`` against ``gdal_translate``.

The input is built deterministically into ``--work-dir``: ``climate_<N>_<T>.nc``, a
NetCDF-4 file (zlib level 4, 512 x 512 x 1 chunks) with one int16 variable ``tas``
(``scale_factor``/``add_offset``, ``_FillValue``), ``T`` time steps of ``N x N`` on a
bottom-up latitude/longitude grid, and a second variable ``pr`` it is chosen from.

Cases, each run as separate processes through harness.launch (wall time, peak RSS of
the child alone), alternating the order every repeat:

* ``geoetl ingest climate.nc --variable tas --target-crs native --json`` (time steps as
  the bands of one COG) with a fresh ``GEOETL_HOME`` (database created untimed): the
  whole job, including the GeoTIFF copy of the variable, validation, COG, STAC;
* ``gdal_translate -of COG NETCDF:"climate.nc":tas`` with geoetl's creation options for
  the type geoetl detects (multispectral int16, analysis tier) — the system GDAL;
* ``rasterio-cog``: ``rasterio.shutil.copy`` of the same subdataset to COG in a fresh
  Python process (geoetl's own GDAL, no copy, no checks): what the COG write alone costs;
* ``--time-as items`` (one COG and item per time step) against ``T`` runs of
  ``gdal_translate -b i`` (summed), when ``--items``.

Run from the repository root::

    .venv/bin/python benchmarks/netcdf.py --size 4000 --steps 12 --repeats 3 \\
        --out benchmarks/out/netcdf.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import harness

BIN = Path(sys.executable).parent


def build(work: Path, size: int, steps: int) -> Path:
    import netCDF4

    path = work / f"climate_{size}_{steps}.nc"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype("float32") / size
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.createDimension("time", steps)
        ds.createDimension("lat", size)
        ds.createDimension("lon", size)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "days since 2020-01-01"
        time.calendar = "standard"
        time[:] = np.arange(steps) * 30.0
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-60, 60, size)
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(-120, 120, size)
        chunks = (1, min(512, size), min(512, size))
        for name in ("tas", "pr"):
            var = ds.createVariable(
                name,
                "i2",
                ("time", "lat", "lon"),
                zlib=True,
                complevel=4,
                chunksizes=chunks,
                fill_value=-32768,
            )
            var.units = "K" if name == "tas" else "kg m-2 s-1"
            var.scale_factor = 0.01
            var.add_offset = 273.15 if name == "tas" else 0.0
            var.set_auto_maskandscale(False)
            for t in range(steps):
                field = 1000 * np.sin(6 * x + t / 3) * np.cos(4 * y) + rng.normal(0, 20, x.shape)
                var[t] = field.astype("int16")
    tmp.rename(path)
    return path


def creation_options() -> list[str]:
    from geoetl.raster.profiles import cog_profile

    options = cog_profile("multispectral", "analysis", "int16", 85).creation_options()
    return [arg for k, v in options.items() for arg in ("-co", f"{k}={v}")]


def geoetl_run(nc: Path, run_dir: Path, items: bool) -> dict[str, Any]:
    home = run_dir / "home"
    env = {**harness.clean_env(), "GEOETL_HOME": str(home)}
    subprocess.run([str(BIN / "geoetl"), "db", "upgrade"], env=env, check=True, capture_output=True)
    argv = [str(BIN / "geoetl"), "ingest", str(nc), "--variable", "tas"]
    argv += ["--target-crs", "native", "--json"]
    if items:
        argv += ["--time-as", "items"]
    usage = harness.launch(argv, run_dir, env)
    view = json.loads((run_dir / "stdout").read_text())
    if view["status"] != "succeeded":
        raise harness.BenchmarkError(f"geoetl failed: {view.get('error')}")
    return usage


def gdal_run(nc: Path, run_dir: Path, bands: list[int] | None) -> dict[str, Any]:
    argv = ["gdal_translate", "-q", "-of", "COG", *creation_options()]
    argv += ["--config", "GDAL_NUM_THREADS", "ALL_CPUS"]
    src = f'NETCDF:"{nc}":tas'
    if bands is None:
        return harness.launch([*argv, src, str(run_dir / "out.tif")], run_dir, os.environ.copy())
    total: dict[str, Any] = {"wall_s": 0.0, "maxrss_kib": 0, "other_cpu_s": 0.0}
    for band in bands:
        one = harness.launch(
            [*argv, "-b", str(band), src, str(run_dir / f"out_{band}.tif")],
            run_dir,
            os.environ.copy(),
        )
        total["wall_s"] += one["wall_s"]
        total["other_cpu_s"] += one["other_cpu_s"]
        total["maxrss_kib"] = max(total["maxrss_kib"], one["maxrss_kib"])
    return total


RASTERIO_COG = """
import sys, rasterio, rasterio.shutil
opts = dict(a.split("=", 1) for a in sys.argv[3:])
with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
    rasterio.shutil.copy(sys.argv[1], sys.argv[2], driver="COG", **opts)
"""


def rasterio_run(nc: Path, run_dir: Path) -> dict[str, Any]:
    options = creation_options()[1::2]
    argv = [sys.executable, "-c", RASTERIO_COG, f'NETCDF:"{nc}":tas', str(run_dir / "o.tif")]
    return harness.launch([*argv, *options], run_dir, os.environ.copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", action="store_true", help="also time --time-as items")
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/work/netcdf"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    nc = build(args.work_dir, args.size, args.steps)
    harness.warm_cache(nc)
    runners: dict[str, Any] = {
        "geoetl-bands": lambda d: geoetl_run(nc, d, items=False),
        "gdal_translate": lambda d: gdal_run(nc, d, None),
        "rasterio-cog": lambda d: rasterio_run(nc, d),
    }
    if args.items:
        runners["geoetl-items"] = lambda d: geoetl_run(nc, d, items=True)
        runners["gdal_translate-per-step"] = lambda d: gdal_run(
            nc, d, list(range(1, args.steps + 1))
        )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    load: list[list[float]] = []
    for repeat in range(args.repeats):
        order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
        for name in order:
            run_dir = args.work_dir / "runs" / f"{name}-{repeat}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            load.append(list(os.getloadavg()))
            results[name].append(runners[name](run_dir))
            shutil.rmtree(run_dir, ignore_errors=True)
    summary = {
        name: {
            "wall_s_median": round(harness.median([r["wall_s"] for r in runs]), 2),
            "wall_s": [round(r["wall_s"], 2) for r in runs],
            "peak_rss_mib_max": round(max(r["maxrss_kib"] for r in runs) / 1024, 1),
            "other_cpu_s_median": round(harness.median([r["other_cpu_s"] for r in runs]), 2),
        }
        for name, runs in results.items()
    }
    reference = summary["gdal_translate"]["wall_s_median"]
    for name in summary:
        summary[name]["ratio_to_gdal_translate"] = round(
            summary[name]["wall_s_median"] / reference, 2
        )
    report = {
        "input": {
            "file": nc.name,
            "bytes": nc.stat().st_size,
            "size": args.size,
            "steps": args.steps,
        },
        "machine": harness.machine_info(),
        "loadavg_before_runs": load,
        "results": summary,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
