"""STAC search benchmark (issue 5): 100,000 items, ``/stac/search`` latency over HTTP.

Items are synthetic and deterministic (seeded): footprints of 0.2 to 2 degrees over the
globe, spread over 10 collections and 5 years (2019 to 2023), with a numeric ``cloud``
property and a string ``platform``. They are loaded through the catalog store's
``upsert_items`` into a fresh home (SQLite by default, or the PostgreSQL ``test``
database in a fresh schema), then ``geoetl serve --workers 0`` serves it and one
keep-alive httpx client sends ``--requests`` searches of each kind, limit=10:

* ``bbox``: a random 10 by 10 degree box;
* ``datetime``: a random 30-day interval;
* ``filter``: CQL2 text ``cloud < N AND platform = 'P'`` with random N and P;
* ``bbox+datetime+filter``: all three together.

Reported: p50, p95 and mean latency per kind, and the same searches run in-process
through ``SqlCatalog.search`` (no HTTP) to show what the web layer adds. The floor is
p50 ≤ 10 ms for limit=10 queries (pgSTAC's published mean is 7.7 ms).

Run from the repository root::

    .venv/bin/python benchmarks/stac.py --items 100000 --out benchmarks/out/stac.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from geoetl.catalog.models import SearchRequest
from geoetl.platform import Platform
from geoetl.settings import Settings
from harness import free_port, summary

FLOOR_P50_MS = 10.0
PLATFORMS = ("landsat-8", "landsat-9", "sentinel-2a", "sentinel-2b")
START = datetime(2019, 1, 1, tzinfo=UTC)
SPAN_S = 5 * 365 * 86400


def make_items(n: int, seed: int) -> list[tuple[dict[str, Any], str]]:
    """``n`` deterministic items over 10 collections, each public."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.uniform(0.2, 2.0)
        x = rng.uniform(-180, 180 - size)
        y = rng.uniform(-85, 85 - size)
        when = START + timedelta(seconds=rng.uniform(0, SPAN_S))
        ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
        item = {
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": [],
            "id": f"item-{i:06d}",
            "collection": f"bench-{i % 10}",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "bbox": [x, y, x + size, y + size],
            "properties": {
                "datetime": when.isoformat().replace("+00:00", "Z"),
                "cloud": rng.randint(0, 100),
                "platform": rng.choice(PLATFORMS),
            },
            "assets": {},
            "links": [],
        }
        out.append((item, "public"))
    return out


def queries(kind: str, count: int, seed: int) -> list[dict[str, str]]:
    """``count`` GET parameter sets of one kind."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        x, y = rng.uniform(-180, 170), rng.uniform(-85, 75)
        start = START + timedelta(seconds=rng.uniform(0, SPAN_S - 30 * 86400))
        end = start + timedelta(days=30)
        interval = (
            f"{start.isoformat().replace('+00:00', 'Z')}/{end.isoformat().replace('+00:00', 'Z')}"
        )
        cql = f"cloud < {rng.randint(5, 60)} AND platform = '{rng.choice(PLATFORMS)}'"
        params = {"limit": "10"}
        if kind in ("bbox", "bbox+datetime+filter"):
            params["bbox"] = f"{x},{y},{x + 10},{y + 10}"
        if kind in ("datetime", "bbox+datetime+filter"):
            params["datetime"] = interval
        if kind in ("filter", "bbox+datetime+filter"):
            params["filter"] = cql
            params["filter-lang"] = "cql2-text"
        out.append(params)
    return out


def to_request(params: dict[str, str]) -> SearchRequest:
    """The in-process equivalent of a GET search (what the API hands the catalog)."""
    from geoetl.api.stac import body_from_query_params

    request = body_from_query_params(params).to_request(["public"])
    return request.model_copy(update={"limit": request.limit + 1, "count": False})


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="geoetl-stac-bench-"))
    schema = None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOETL_")}
    env["GEOETL_HOME"] = str(home)
    env["GEOETL_AUDIENCE"] = "public"
    if backend == "postgres":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        env["GEOETL_DATABASE_URL"] = f"{args.pg}?options=-csearch_path%3D{schema},public"
    settings = Settings(home=home, database_url=env.get("GEOETL_DATABASE_URL"), audience="public")
    proc = None
    try:
        platform = Platform.from_settings(settings)
        for i in range(10):
            platform.catalog.ensure_collection(f"bench-{i}", "public")
        items = make_items(args.items, args.seed)
        t0 = time.perf_counter()
        for start in range(0, len(items), 5000):
            platform.catalog.upsert_items(items[start : start + 5000])
        load_s = time.perf_counter() - t0
        print(f"[{backend}] loaded {len(items):,} items in {load_s:.1f} s", flush=True)

        kinds = ["bbox", "datetime", "filter", "bbox+datetime+filter"]
        in_process: dict[str, Any] = {}
        for n, kind in enumerate(kinds):
            reqs = [to_request(p) for p in queries(kind, args.requests, args.seed + n)]
            for r in reqs[:10]:
                platform.catalog.search(r)
            ms = []
            for r in reqs:
                t = time.perf_counter()
                platform.catalog.search(r)
                ms.append((time.perf_counter() - t) * 1000)
            in_process[kind] = summary(ms)
        platform.close()

        port = free_port()
        log = (home / "serve.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "geoetl", "serve", "--port", str(port), "--workers", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"geoetl serve did not start: {(home / 'serve.log').read_text()}")
            time.sleep(0.2)

        over_http: dict[str, Any] = {}
        with httpx.Client(base_url=base, timeout=30) as client:
            for n, kind in enumerate(kinds):
                params_list = queries(kind, args.requests, args.seed + n)
                for p in params_list[:10]:
                    client.get("/stac/search", params=p).raise_for_status()
                ms, returned = [], 0
                for p in params_list:
                    t = time.perf_counter()
                    r = client.get("/stac/search", params=p)
                    ms.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                    returned += r.json()["numberReturned"]
                over_http[kind] = {**summary(ms), "mean_returned": returned / len(params_list)}
                print(
                    f"[{backend}] {kind:>22}: p50 {over_http[kind]['p50_ms']:.1f} ms, "
                    f"p95 {over_http[kind]['p95_ms']:.1f} ms (in-process p50 "
                    f"{in_process[kind]['p50_ms']:.1f} ms)",
                    flush=True,
                )
        return {"load_s": load_s, "http": over_http, "in_process": in_process}
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if schema is not None:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument(
        "--pg", default=os.environ.get("GEOETL_BENCH_PG", "postgresql://postgres@127.0.0.1/test")
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/stac.json"))
    args = parser.parse_args(argv)
    results = {b: run_backend(b, args) for b in args.backends.split(",")}
    worst = max(kind["p50_ms"] for backend in results.values() for kind in backend["http"].values())
    report = {
        "items": args.items,
        "requests": args.requests,
        "floor_p50_ms": FLOOR_P50_MS,
        "worst_p50_ms": worst,
        "results": results,
        "when": datetime.now(UTC).isoformat(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"worst p50 {worst:.1f} ms (floor {FLOOR_P50_MS} ms); wrote {args.out}")
    return 0 if worst <= FLOOR_P50_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
