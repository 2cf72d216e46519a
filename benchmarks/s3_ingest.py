"""S3 benchmark (issue 13): the 8000 x 8000 RGB ingest on S3 against the local folder.

The input is ``rgb_<N>.tif`` of ``benchmarks/raster.py`` (L7_ETMs bands 3,2,1
upsampled bilinear to N x N, uint8 RGB, 512x512 tiles, uncompressed, ~201 MB at 8000),
built into ``--work-dir`` if missing. The S3 server is moto's (``moto_server``, a process
of its own on loopback, one bucket). Each run has a fresh ``GEOETL_HOME`` whose database
``geoetl db upgrade`` made beforehand, untimed; stores are alternated every repeat.

Two modes, both for the default target CRS (EPSG:4326) and ``native``:

* ``job`` ("from S3 to S3", the issue's figure): the source is already in the store's
  bronze zone (put there untimed), and ``geoetl submit process_raster --wait --json``
  runs the job: validate, COG, catalog. On S3 the source is downloaded to scratch,
  the COG written there and uploaded (multipart), the catalog stage reads it in place.
* ``cli``: ``geoetl ingest rgb_N.tif --json``, the bronze copy and hash included (an
  upload to S3).

Wall time and peak RSS are the child's alone (``harness.launch``); the stages come from
the job's own timestamps. Run from the repository root::

    flock /tmp/geoetl-bench.lock .venv/bin/python benchmarks/s3_ingest.py --size 8000 \\
        --repeats 3 --out benchmarks/out/s3_ingest.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    BenchmarkError,
    clean_env,
    console_factory,
    free_port,
    launch,
    machine_info,
    median,
    wait_quiet,
    warm_cache,
)
from raster import DATA, geoetl_split, upsample

BIN = Path(sys.executable).parent
CEILING = 1.3  # S3 wall / local wall, 8000 x 8000 RGB
ACCESS_KEY, SECRET_KEY, REGION = "bench", "bench-secret", "us-east-1"
BUCKET = "geoetl-bench"


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free loopback port, in a process of its own."""
    port = free_port()
    handle = log.open("wb")
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"moto_server did not start: {log.read_text()}") from None
            time.sleep(0.1)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    ).create_bucket(Bucket=BUCKET)
    return proc, endpoint


def store_env(store: str, endpoint: str, home: Path) -> dict[str, str]:
    env = clean_env()
    env["GEOETL_HOME"] = str(home)
    if store == "s3":
        env.update(
            {
                "GEOETL_STORAGE_URL": f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}",
                "GEOETL_S3_ENDPOINT_URL": endpoint,
                "GEOETL_S3_REGION": REGION,
                "GEOETL_S3_ACCESS_KEY_ID": ACCESS_KEY,
                "GEOETL_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            }
        )
    return env


def settings_of(env: dict[str, str]) -> Any:
    from geoetl.settings import Settings

    fields = {k[len("GEOETL_") :].lower(): v for k, v in env.items() if k.startswith("GEOETL_")}
    return Settings(**fields)


def one_run(
    store: str, mode: str, native: bool, source: Path, endpoint: str, run_dir: Path
) -> dict[str, Any]:
    from geoetl.storage.objectstore import open_object_store

    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    home = run_dir / "home"
    env = store_env(store, endpoint, home)
    subprocess.run([str(BIN / "geoetl"), "db", "upgrade"], env=env, check=True, capture_output=True)
    objects = open_object_store(settings_of(env))
    if mode == "job":
        key, _ = objects.put_content_addressed(source)  # untimed: the source is in bronze
        params: dict[str, Any] = {"source": key, "output_tier": "analysis"}
        if native:
            params["target_crs"] = None
        argv = [str(BIN / "geoetl"), "submit", "process_raster", "--params", json.dumps(params)]
        argv += ["--wait", "--json"]
    else:
        argv = [str(BIN / "geoetl"), "ingest", str(source), "--tier", "analysis", "--json"]
        argv += ["--target-crs", "native"] if native else []
    warm_cache(source)
    usage = launch(argv, run_dir, env)
    job = json.loads((run_dir / "stdout").read_text())
    if job.get("status") != "succeeded":
        raise BenchmarkError(f"job {job.get('job_id')} ended {job.get('status')}: {job}")
    split = geoetl_split(home, job, usage["start_epoch"], usage["wall_s"])
    cog = job["result"]["cog"]
    out = {
        "store": store,
        "mode": mode,
        "native": native,
        "wall_s": usage["wall_s"],
        "peak_rss_mib": usage["maxrss_kib"] / 1024,
        "cpu_s": usage["utime_s"] + usage["stime_s"],
        "other_cpu_s": usage["other_cpu_s"],
        "stages_s": split["stages_s"],
        "before_job_s": split["before_job_s"],
        "cog_bytes": objects.size(cog),
        "cog": objects.gdal_path(cog),
    }
    if store == "s3":
        objects.delete_prefix("bronze")
        objects.delete_prefix("silver")
        objects.delete_prefix("tmp")
    shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="job,cli")
    parser.add_argument("--crs", default="native,4326", help="native and/or 4326")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / "out" / "work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "s3_ingest.json")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    args = parser.parse_args()
    console = console_factory()
    source = args.work_dir / f"rgb_{args.size}.tif"
    if not source.exists():
        args.work_dir.mkdir(parents=True, exist_ok=True)
        console.print(f"building {source.name} …")
        upsample(DATA / "L7_ETMs.tif", source, args.size, [3, 2, 1], rgb=True)
    runs_dir = args.out.parent / "s3_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    moto, endpoint = start_moto(runs_dir / "moto.log")
    results: list[dict[str, Any]] = []
    try:
        for rep in range(args.repeats):
            for mode in args.modes.split(","):
                for crs in args.crs.split(","):
                    stores = ["local", "s3"] if rep % 2 == 0 else ["s3", "local"]
                    for store in stores:
                        wait_quiet(args.quiet_wait)
                        run = one_run(
                            store, mode, crs == "native", source, endpoint,
                            runs_dir / f"{rep}-{mode}-{crs}-{store}",
                        )  # fmt: skip
                        run["rep"] = rep
                        results.append(run)
                        console.print(
                            f"rep {rep} {mode:<3} {crs:<6} {store:<5} {run['wall_s']:6.2f} s  "
                            f"{run['peak_rss_mib']:5.0f} MiB  stages "
                            + ", ".join(f"{k} {v:.2f}" for k, v in run["stages_s"].items())
                        )
    finally:
        moto.terminate()
        moto.wait(10)
    summary = {}
    for mode in args.modes.split(","):
        for crs in args.crs.split(","):
            case = [r for r in results if r["mode"] == mode and r["native"] == (crs == "native")]
            walls = {s: [r["wall_s"] for r in case if r["store"] == s] for s in ("local", "s3")}
            local, s3 = median(walls["local"]), median(walls["s3"])
            summary[f"{mode}-{crs}"] = {
                "local_median_s": local,
                "s3_median_s": s3,
                "ratio": s3 / local,
                "ratio_of_minimums": min(walls["s3"]) / min(walls["local"]),
                "meets_ceiling": s3 / local <= CEILING,
                "local_s": walls["local"],
                "s3_s": walls["s3"],
            }
            console.print(
                f"{mode:<3} {crs:<6} local {local:6.2f} s  s3 {s3:6.2f} s  "
                f"ratio {s3 / local:.2f} (ceiling {CEILING})"
            )
    report = {
        "benchmark": "s3_ingest",
        "machine": machine_info(),
        "input": {"path": str(source), "bytes": source.stat().st_size, "size": args.size},
        "ceiling": CEILING,
        "summary": summary,
        "runs": results,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
