"""Big-raster benchmark (issue 16 part 4): a split COG conversion on 2 workers.

A generated RGB GeoTIFF of ``--size`` x ``--size`` (uint8, 512 px tiles, uncompressed,
UTM 33N; 48000 -> 6.9 GB) is converted, side by side in the same run:

* native CRS: ``process_raster`` (``target_crs: null``) run by ``--workers`` local
  ``geoetl worker`` processes, against ``gdal_translate -of COG``;
* reprojected to EPSG:4326: ``process_raster`` against ``gdalwarp -of COG -t_srs
  EPSG:4326 -r bilinear``,

with the analysis tier's creation options (read from ``geoetl.raster.profiles``:
DEFLATE level 5, predictor 2, 512 px blocks, AVERAGE overviews, NUM_THREADS=ALL_CPUS)
and ``GDAL_NUM_THREADS=ALL_CPUS`` on both sides (gdalwarp also ``-multi -wo
NUM_THREADS=ALL_CPUS``).

geoetl's wall time runs from the job's submission (workers already running and idle)
to its end (``succeeded``), read from the job store. Peak RSS: every geoetl worker's
``VmHWM`` (the kernel's high-water mark of the process) read before it is stopped,
and its child processes' too; the reference tools' from ``wait4``. The job's task
timeline (stage, item, worker, start, end) shows how the windows spread.

Run from the repository root (needs about 3x the input size of free disk)::

    PYTHONPATH=src:. .venv/bin/python benchmarks/bigraster.py --size 48000 \\
        --out benchmarks/out/bigraster.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from harness import busy_cpu_s, clean_env, launch, machine_info

GEOETL = Path(sys.executable).with_name("geoetl")


def generate(path: Path, size: int) -> None:
    """An RGB image: smooth colour fields with texture, written by rows of tiles."""
    rng = np.random.default_rng(16)
    texture = rng.integers(-24, 24, (3, 512, 4096), dtype=np.int16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(300000, 5500000, 10, 10),
        photometric="RGB",
        tiled=True,
        blockxsize=512,
        blockysize=512,
        BIGTIFF="YES",
    ) as ds:
        x = np.arange(size, dtype=np.float32)
        for top in range(0, size, 512):
            rows = min(512, size - top)
            y = np.arange(top, top + rows, dtype=np.float32)[:, None]
            r = 128 + 90 * np.sin(x / 2900.0) * np.cos(y / 3700.0)
            g = 128 + 90 * np.cos((x + y) / 5100.0)
            b = 128 + 60 * np.sin(x / 900.0 + y / 1300.0)
            block = np.stack(np.broadcast_arrays(r, g, b)).astype(np.int16)
            shift = (top // 512 * 977) % 4096
            tex = np.roll(texture, shift, axis=2)[:, :rows]
            reps = -(-size // 4096)
            block += np.tile(tex, (1, 1, reps))[:, :, :size]
            ds.write(np.clip(block, 0, 255).astype(np.uint8), window=Window(0, top, size, rows))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(16 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def creation_options() -> dict[str, str]:
    from geoetl.raster.profiles import cog_profile

    return cog_profile("rgb", "analysis", "uint8", 85).creation_options()


def reference(kind: str, src: Path, out: Path, run_dir: Path) -> dict[str, Any]:
    co = [arg for k, v in creation_options().items() for arg in ("-co", f"{k}={v}")]
    if kind == "native":
        argv = ["gdal_translate", "-q", "-of", "COG", *co, str(src), str(out)]
    else:
        argv = [
            "gdalwarp", "-q", "-of", "COG", "-t_srs", "EPSG:4326", "-r", "bilinear",
            "-multi", "-wo", "NUM_THREADS=ALL_CPUS", *co, str(src), str(out),
        ]  # fmt: skip
    argv += ["--config", "GDAL_NUM_THREADS", "ALL_CPUS"]
    run_dir.mkdir(parents=True, exist_ok=True)
    usage = launch(argv, run_dir, clean_env())
    return {
        "command": " ".join(argv),
        "wall_s": usage["wall_s"],
        "peak_rss_mib": usage["maxrss_kib"] / 1024,
        "other_cpu_s": usage["other_cpu_s"],
        "size_bytes": out.stat().st_size,
    }


def vm_hwm_mib(pid: int, field: str = "VmHWM") -> float | None:
    """A process's high-water mark (``VmHWM``) or current resident size (``VmRSS``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return []


def run_geoetl(
    kind: str, src: Path, home: Path, workers: int, split_bytes: int | None
) -> dict[str, Any]:
    """process_raster of ``src`` on ``workers`` worker processes; timeline and peaks."""
    from geoetl.platform import Platform
    from geoetl.settings import Settings

    if home.exists():
        shutil.rmtree(home)
    env = {**clean_env(), "GEOETL_HOME": str(home)}
    if split_bytes is not None:
        env["GEOETL_RASTER_SPLIT_BYTES"] = str(split_bytes)
    settings = Settings(home=home)
    platform = Platform.from_settings(settings)
    key = f"bronze/{sha256(src)}/{src.name}"
    stored = Path(platform.objects.gdal_path(key))
    stored.parent.mkdir(parents=True, exist_ok=True)
    os.link(src, stored)  # the bronze copy, without copying 7 GB
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [str(GEOETL), "worker", "--concurrency", "1"],
            env=env,
            stdout=(logs / f"worker-{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    try:
        time.sleep(5)  # the workers are up and idle
        busy0 = busy_cpu_s()
        started = time.monotonic()
        params = {"source": key, "target_crs": None if kind == "native" else "EPSG:4326"}
        job_id, _ = platform.store.submit("process_raster", params)
        # When each worker's resident size peaked (sampled every 0.2 s): the task then
        # running is the one that set its high-water mark.
        sampled: dict[str, tuple[float, float]] = {}
        while True:
            view = platform.queries.job(job_id)
            if view.status in {"succeeded", "failed", "cancelled"}:
                break
            for i, proc in enumerate(procs):
                rss = vm_hwm_mib(proc.pid, "VmRSS") or 0.0
                if rss > sampled.get(f"worker-{i}", (0.0, 0.0))[0]:
                    sampled[f"worker-{i}"] = (rss, time.monotonic() - started)
            time.sleep(0.2)
        wall = time.monotonic() - started
        busy = busy_cpu_s() - busy0
        if view.status != "succeeded":
            raise RuntimeError(f"job {view.status}: {view.error}")
        peaks = {}
        for i, proc in enumerate(procs):
            peaks[f"worker-{i}"] = vm_hwm_mib(proc.pid)
            for child in children(proc.pid):
                peaks[f"worker-{i}-child-{child}"] = vm_hwm_mib(child)
        timeline = []
        for stage in ("validate", "cog", "assemble", "catalog", "publish"):
            for t in platform.queries.tasks(job_id, stage=stage, limit=500).items:
                timeline.append(
                    {
                        "stage": stage,
                        "item": t.item,
                        "worker": t.worker_id,
                        "attempt": t.attempt,
                        "start_s": (t.started_at - view.created_at).total_seconds()
                        if t.started_at
                        else None,
                        "end_s": (t.finished_at - view.created_at).total_seconds()
                        if t.finished_at
                        else None,
                    }
                )
        result = view.result
        cog = Path(platform.objects.gdal_path(result["cog"]))
        per_worker: dict[str, int] = {}
        for row in timeline:
            if row["stage"] == "cog":
                per_worker[str(row["worker"])] = per_worker.get(str(row["worker"]), 0) + 1
        return {
            "wall_s": wall,
            "machine_busy_cpu_s": busy,
            "peak_rss_mib": peaks,
            "sampled_rss_peak": {k: {"mib": v[0], "at_s": v[1]} for k, v in sampled.items()},
            "windows": sum(per_worker.values()),
            "windows_per_worker": per_worker,
            "timeline": timeline,
            "size_bytes": cog.stat().st_size,
            "cog": str(cog),
        }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        platform.close()


def compare(a: Path, b: Path) -> dict[str, Any]:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        return {
            "same_grid": (x.width, x.height, x.count) == (y.width, y.height, y.count),
            "geoetl": [x.width, x.height, x.count, len(x.overviews(1))],
            "reference": [y.width, y.height, y.count, len(y.overviews(1))],
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=48000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--split-bytes", type=int, help="GEOETL_RASTER_SPLIT_BYTES (default 1 GiB)")
    ap.add_argument("--modes", default="native,reprojected")
    ap.add_argument("--work-dir", type=Path, default=Path("/work/bigraster-bench"))
    ap.add_argument("--keep-input", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--skip-reference", action="store_true", help="geoetl only (to study its memory)"
    )
    args = ap.parse_args()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"rgb_{args.size}.tif"
    report: dict[str, Any] = {"machine": machine_info(), "size": args.size}
    if not src.exists():
        t0 = time.monotonic()
        generate(src, args.size)
        report["generate_s"] = time.monotonic() - t0
    report["input_bytes_uncompressed"] = args.size * args.size * 3
    report["input_file_bytes"] = src.stat().st_size
    report["load_before"] = os.getloadavg()
    for kind in args.modes.split(","):
        ref_out = work / f"ref_{kind}.tif"
        ours: dict[str, Any]
        if args.skip_reference:
            ours = run_geoetl(kind, src, work / f"home-{kind}", args.workers, args.split_bytes)
            print(kind, "geoetl", ours["wall_s"], ours["peak_rss_mib"], ours["sampled_rss_peak"])
            report[kind] = {"geoetl": ours}
            shutil.rmtree(work / f"home-{kind}", ignore_errors=True)
            continue
        ref = reference(kind, src, ref_out, work / f"run-ref-{kind}")
        print(kind, "reference", json.dumps({k: ref[k] for k in ("wall_s", "peak_rss_mib")}))
        ours = run_geoetl(kind, src, work / f"home-{kind}", args.workers, args.split_bytes)
        print(kind, "geoetl", ours["wall_s"], ours["peak_rss_mib"], ours["sampled_rss_peak"])
        report[kind] = {
            "reference": ref,
            "geoetl": ours,
            "wall_ratio": ours["wall_s"] / ref["wall_s"],
            "compare": compare(Path(ours["cog"]), ref_out),
            "load_after": os.getloadavg(),
        }
        ref_out.unlink(missing_ok=True)
        shutil.rmtree(work / f"home-{kind}", ignore_errors=True)
    if not args.keep_input:
        src.unlink(missing_ok=True)
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps({k: v for k, v in report.items() if k not in ("native", "reprojected")}))
    for kind in args.modes.split(","):
        r = report[kind]
        if "reference" not in r:
            continue
        print(
            kind,
            f"ratio {r['wall_ratio']:.2f}",
            f"geoetl {r['geoetl']['wall_s']:.1f}s ref {r['reference']['wall_s']:.1f}s",
            f"rss {r['geoetl']['peak_rss_mib']} ref {r['reference']['peak_rss_mib']:.0f}",
            f"windows {r['geoetl']['windows_per_worker']}",
        )


if __name__ == "__main__":
    main()
