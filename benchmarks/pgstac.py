"""PostgreSQL data plane, catalog: ``/stac/search`` of geoetl on pgSTAC against
stac-fastapi-pgstac on the same database, side by side in the same run.

A scratch database is made (``CREATE DATABASE``, PostGIS and pgSTAC by geoetl's
installer, geoetl's schema migrated; dropped at the end, also on failure). 100,000
(``--items``) deterministic items shaped like geoetl's raster items (``datetime``,
``created``/``updated``, ``geoetl:job_id``, ``geoetl:workflow``,
``geoetl:access_level`` = public, a COG asset under ``silver/``), plus
``eo:cloud_cover`` (integer 0-100) and ``platform`` (one of 4), with footprints of 0.2
to 2 degrees over the globe and datetimes over 2019-2023, go into 10 collections through
geoetl's ``PgstacCatalog.upsert_items`` in batches of 5,000 (timed), then
``VACUUM ANALYZE``.

``geoetl serve --workers 0`` and ``uvicorn stac_fastapi.pgstac.app:create_app
--factory`` (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE`` = the
scratch database) run at the same time; one keep-alive httpx client per server sends
the same GET searches, alternating between the servers (``--warmup`` untimed rounds
first), limit=10:

* ``bbox``: a random 10 by 10 degree box;
* ``datetime``: a random 30-day interval;
* ``filter``: CQL2 text ``eo:cloud_cover < N AND platform = 'P'``;
* ``bbox+datetime+filter``: all three.

Both servers must return the same item ids for each search. The same searches are also
timed in-process, through ``PgstacCatalog.search`` (which reads pgSTAC's tables itself)
and through pgSTAC's ``search()`` alone with the same search as its JSON body, to show
what the SQL and what the web layer cost.

Targets (exit code 0 only when all are met), for every kind: geoetl's p50 ≤ 10 ms and
≤ 1.0 x stac-fastapi-pgstac's p50.

Run from the repository root::

    flock /tmp/geoetl-bench.lock .venv/bin/python benchmarks/pgstac.py \
        --out benchmarks/out/pgstac.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    BenchmarkError,
    clean_env,
    console_factory,
    exit_on_sigterm,
    free_port,
    http_server,
    interleaved_latency,
    machine_info,
    scratch_database,
    summary,
    wait_quiet,
)

BIN = Path(sys.executable).parent
TARGET_P50_MS = 10.0
TARGET_RATIO = 1.0  # geoetl p50 / stac-fastapi-pgstac p50
PLATFORMS = ("landsat-8", "landsat-9", "sentinel-2a", "sentinel-2b")
COLLECTIONS = 10
START = datetime(2019, 1, 1, tzinfo=UTC)
SPAN_S = 5 * 365 * 86400
KINDS = ("bbox", "datetime", "filter", "bbox+datetime+filter")
BATCH = 5000


def _z(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def make_items(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` deterministic items over ``COLLECTIONS`` collections, shaped like geoetl's."""
    rng = random.Random(seed)
    created = _z(datetime(2026, 11, 1, tzinfo=UTC))
    out = []
    for i in range(n):
        size = rng.uniform(0.2, 2.0)
        x = rng.uniform(-180, 180 - size)
        y = rng.uniform(-85, 85 - size)
        when = START + timedelta(seconds=rng.randrange(SPAN_S))
        collection = f"bench-{i % COLLECTIONS}"
        item_id = f"item-{i:06d}"
        ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
        out.append(
            {
                "type": "Feature",
                "stac_version": "1.1.0",
                "stac_extensions": [],
                "id": item_id,
                "collection": collection,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "bbox": [x, y, x + size, y + size],
                "properties": {
                    "datetime": _z(when),
                    "created": created,
                    "updated": created,
                    "geoetl:job_id": f"{rng.getrandbits(128):032x}",
                    "geoetl:workflow": "process_raster",
                    "geoetl:access_level": "public",
                    "eo:cloud_cover": rng.randint(0, 100),
                    "platform": rng.choice(PLATFORMS),
                    "gsd": rng.choice((10, 30)),
                },
                "assets": {
                    "visual": {
                        "href": f"silver/raster/{collection}/{item_id}/visual.tif",
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data", "visual"],
                        "title": "Cloud-optimized GeoTIFF",
                    }
                },
                "links": [],
            }
        )
    return out


def queries(kind: str, count: int, seed: int) -> list[dict[str, str]]:
    """``count`` GET parameter sets of one kind (the same for both servers)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        x, y = rng.uniform(-180, 170), rng.uniform(-85, 75)
        start = START + timedelta(seconds=rng.randrange(SPAN_S - 30 * 86400))
        end = start + timedelta(days=30)
        params = {"limit": "10"}
        if "bbox" in kind:
            params["bbox"] = f"{x:.4f},{y:.4f},{x + 10:.4f},{y + 10:.4f}"
        if "datetime" in kind:
            params["datetime"] = f"{_z(start)}/{_z(end)}"
        if "filter" in kind:
            cloud = rng.randint(5, 60)
            params["filter"] = f"eo:cloud_cover < {cloud} AND platform = '{rng.choice(PLATFORMS)}'"
            params["filter-lang"] = "cql2-text"
        out.append(params)
    return out


# -- loading -----------------------------------------------------------------------------------


def load(url: str, home: Path, items: list[dict[str, Any]], console: Any) -> dict[str, Any]:
    """geoetl's schema, the collections and the items, through geoetl's catalog."""
    import psycopg

    from geoetl.platform import Platform
    from geoetl.settings import Settings

    t0 = time.perf_counter()
    platform = Platform.from_settings(Settings(home=home, database_url=url))
    migrate_s = time.perf_counter() - t0
    try:
        for i in range(COLLECTIONS):
            platform.catalog.ensure_collection(f"bench-{i}", "public")
        batches = []
        t0 = time.perf_counter()
        for start in range(0, len(items), BATCH):
            tb = time.perf_counter()
            platform.catalog.upsert_items(
                [(item, "public") for item in items[start : start + BATCH]]
            )
            batches.append(time.perf_counter() - tb)
        load_s = time.perf_counter() - t0
    finally:
        platform.close()
    console.print(
        f"loaded {len(items):,} items in {load_s:.1f} s ({len(items) / load_s:,.0f} items/s; "
        f"batches of {BATCH}: first {batches[0]:.2f} s, last {batches[-1]:.2f} s)",
        highlight=False,
    )
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        n = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0]  # type: ignore[index]
        partitions = conn.execute("SELECT count(*) FROM pgstac.partitions").fetchone()[0]  # type: ignore[index]
        queryables = [
            r[0] for r in conn.execute("SELECT name FROM pgstac.queryables ORDER BY name")
        ]
        versions = {
            "postgresql": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
            "pgstac": conn.execute("SELECT pgstac.get_version()").fetchone()[0],  # type: ignore[index]
            "postgis": conn.execute("SELECT postgis_lib_version()").fetchone()[0],  # type: ignore[index]
        }
    if n != len(items):
        raise BenchmarkError(f"pgstac.items holds {n} items, {len(items)} were loaded")
    return {
        "migrate_s": migrate_s,
        "load_s": load_s,
        "items_per_s": len(items) / load_s,
        "batch_s": batches,
        "vacuum_analyze_s": time.perf_counter() - t0,
        "items": n,
        "partitions": partitions,
        "queryables": queryables,
        **versions,
    }


# -- in-process --------------------------------------------------------------------------------


def in_process(url: str, home: Path, cases: dict[str, list[dict[str, str]]], warmup: int) -> dict:
    """The same searches through PgstacCatalog.search, and pgSTAC's search() alone.

    pgSTAC's ``search()`` runs on one autocommit connection with the settings geoetl's
    read transactions set (read-only: no ``searches`` statistics; no parallel workers),
    with the body geoetl builds: the database's share of a geoetl search.
    """
    import psycopg

    from geoetl.api.stac import body_from_query_params
    from geoetl.platform import Platform
    from geoetl.settings import Settings

    platform = Platform.from_settings(Settings(home=home, database_url=url), migrate=False)
    catalog: Any = platform.catalog
    out: dict[str, Any] = {}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            # geoetl's read session (PgstacCatalog._read): no statistics kept, no workers.
            conn.execute("SET search_path TO pgstac, public")
            conn.execute("SET pgstac.readonly TO true")
            conn.execute("SET max_parallel_workers_per_gather TO 0")
            for kind, params_list in cases.items():
                requests = []
                for params in params_list:
                    request = body_from_query_params(params).to_request(["public"])
                    # What the API asks: one more than the limit, to know about a next page.
                    requests.append(
                        request.model_copy(update={"limit": request.limit + 1, "count": False})
                    )
                bodies = [json.dumps(pgstac_body(params)) for params in params_list]
                for r, b in zip(requests[:warmup], bodies[:warmup], strict=True):
                    catalog.search(r)
                    conn.execute("SELECT search(%s::jsonb)", (b,)).fetchone()
                search_ms, sql_ms = [], []
                for r, b in zip(requests, bodies, strict=True):
                    t0 = time.perf_counter()
                    catalog.search(r)
                    search_ms.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    conn.execute("SELECT search(%s::jsonb)", (b,)).fetchone()
                    sql_ms.append((time.perf_counter() - t0) * 1000)
                out[kind] = {
                    "catalog_search": summary(search_ms),
                    "pgstac_search_sql": summary(sql_ms),
                    "example_body": json.loads(bodies[0]),
                }
    finally:
        platform.close()
    return out


def pgstac_body(params: dict[str, str]) -> dict[str, Any]:
    """The body stac-fastapi-pgstac hands pgSTAC's ``search()`` for these GET parameters.

    geoetl reads pgSTAC's tables itself (no ``search()`` body of its own any more); this
    times pgSTAC's function on the same search, with the access-level filter and the
    order geoetl applies, as the reference for what the SQL costs.
    """
    import cql2

    parts: list[dict[str, Any]] = [
        {"op": "in", "args": [{"property": "geoetl:access_level"}, ["public"]]}
    ]
    body: dict[str, Any] = {"limit": int(params["limit"]) + 1, "conf": {"context": "off"}}
    if "bbox" in params:
        body["bbox"] = [float(v) for v in params["bbox"].split(",")]
    if "datetime" in params:
        body["datetime"] = params["datetime"]
    if "filter" in params:
        parts.append(cql2.parse_text(params["filter"]).to_json())
    body["filter"] = parts[0] if len(parts) == 1 else {"op": "and", "args": parts}
    body["filter-lang"] = "cql2-json"
    body["sortby"] = [
        {"field": "datetime", "direction": "desc"},
        {"field": "collection", "direction": "asc"},
        {"field": "id", "direction": "asc"},
    ]
    return body


# -- over HTTP ---------------------------------------------------------------------------------


def stac_fastapi_env(url: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    env = clean_env()
    env |= {
        "PGHOST": str(info.get("host") or "127.0.0.1"),
        "PGPORT": str(info.get("port") or 5432),
        "PGUSER": str(info.get("user") or "postgres"),
        "PGPASSWORD": str(info.get("password") or ""),
        "PGDATABASE": str(info["dbname"]),
    }
    return env


def over_http(
    url: str,
    home: Path,
    cases: dict[str, list[dict[str, str]]],
    args: argparse.Namespace,
    log_dir: Path,
    console: Any,
) -> dict[str, Any]:
    import httpx

    geo_port, sfp_port = free_port(), free_port()
    geo_env = clean_env()
    geo_env["GEOETL_HOME"] = str(home)
    geo_env["GEOETL_DATABASE_URL"] = url
    geo_argv = [str(BIN / "geoetl"), "serve", "--host", "127.0.0.1", "--port", str(geo_port)]
    geo_argv += ["--workers", "0"]
    sfp_argv = [str(BIN / "uvicorn"), "stac_fastapi.pgstac.app:create_app", "--factory"]
    sfp_argv += ["--host", "127.0.0.1"]
    sfp_argv += ["--port", str(sfp_port)]

    def ids(label: str, params: dict[str, str], doc: dict[str, Any]) -> list[str]:
        return [f"{f['collection']}/{f['id']}" for f in doc["features"]]

    results: dict[str, Any] = {}
    problems: list[str] = []
    with (
        http_server(
            "geoetl serve",
            geo_argv,
            geo_env,
            log_dir / "geoetl-serve.log",
            "/stac/collections/bench-0",
            geo_port,
        ) as geo_base,
        http_server(
            "stac-fastapi-pgstac",
            sfp_argv,
            stac_fastapi_env(url),
            log_dir / "stac-fastapi-pgstac.log",
            "/collections/bench-0",
            sfp_port,
        ) as sfp_base,
        httpx.Client(base_url=geo_base, timeout=60) as geo_client,
        httpx.Client(base_url=sfp_base, timeout=60) as sfp_client,
    ):
        targets = {
            "geoetl": (geo_client, "/stac/search"),
            "stac-fastapi-pgstac": (sfp_client, "/search"),
        }
        for kind, params_list in cases.items():
            wait_quiet(min(args.quiet_wait, 10.0))
            timed = interleaved_latency(targets, params_list, args.warmup, ids)
            geo_ids = timed["geoetl"].pop("checks")
            sfp_ids = timed["stac-fastapi-pgstac"].pop("checks")
            differ = [
                (p, g, s) for p, g, s in zip(params_list, geo_ids, sfp_ids, strict=True) if g != s
            ]
            if differ:
                p, g, s = differ[0]
                problems.append(
                    f"{kind}: the servers returned different items for {len(differ)} of "
                    f"{len(params_list)} searches; first {p}: geoetl {g}, "
                    f"stac-fastapi-pgstac {s}"
                )
            g, s = timed["geoetl"], timed["stac-fastapi-pgstac"]
            results[kind] = {
                **timed,
                "p50_ratio_geoetl_over_stac_fastapi_pgstac": g["p50_ms"] / s["p50_ms"],
                "mean_returned": sum(map(len, geo_ids)) / len(geo_ids),
                "searches_returning_nothing": sum(1 for x in geo_ids if not x),
                "example_query": params_list[0],
            }
            console.print(
                f"  {kind:<22} geoetl p50 {g['p50_ms']:6.1f} ms p95 {g['p95_ms']:6.1f} | "
                f"stac-fastapi-pgstac p50 {s['p50_ms']:6.1f} ms p95 {s['p95_ms']:6.1f} | "
                f"ratio {g['p50_ms'] / s['p50_ms']:.2f} | mean returned "
                f"{results[kind]['mean_returned']:.1f}",
                highlight=False,
            )
    return {
        "commands": {
            "geoetl": "GEOETL_HOME=<dir> GEOETL_DATABASE_URL=<db> " + shlex.join(geo_argv),
            "stac-fastapi-pgstac": "PGHOST=… PGPORT=… PGUSER=… PGPASSWORD=… PGDATABASE=<db> "
            + shlex.join(sfp_argv),
        },
        "client": "httpx, one keep-alive Client per server, sequential, servers alternating",
        "requests_per_kind": args.requests,
        "warmup_rounds": args.warmup,
        "cases": results,
        "problems": problems,
    }


# -- report ------------------------------------------------------------------------------------


def print_table(http: dict[str, Any], local: dict[str, Any], goals: dict, console: Any) -> None:
    from rich.table import Table

    table = Table(title="STAC search, limit=10 (ms; ratio = geoetl / stac-fastapi-pgstac)")
    for col in (
        "query",
        "geoetl p50",
        "p95",
        "sfp p50",
        "p95 ",
        "p50 ratio",
        "catalog.search p50",
        "pgstac search() p50",
    ):
        table.add_column(col, justify="left" if col == "query" else "right")
    for kind, case in http["cases"].items():
        g, s = case["geoetl"], case["stac-fastapi-pgstac"]
        table.add_row(
            kind,
            f"{g['p50_ms']:.1f}",
            f"{g['p95_ms']:.1f}",
            f"{s['p50_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
            f"{case['p50_ratio_geoetl_over_stac_fastapi_pgstac']:.2f}x",
            f"{local[kind]['catalog_search']['p50_ms']:.1f}" if kind in local else "",
            f"{local[kind]['pgstac_search_sql']['p50_ms']:.1f}" if kind in local else "",
        )
    console.print(table)
    for name, goal in goals.items():
        mark = "[green]met[/]" if goal["met"] else "[red]NOT met[/]"
        console.print(
            f"  {name}: {goal['value']:.2f} (target {goal['target']}) {mark}", highlight=False
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="per kind of search")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "pgstac.json")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "GEOETL_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database to run CREATE/DROP DATABASE from",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import tempfile
    from importlib.metadata import version

    args = parse_args(argv)
    exit_on_sigterm()
    console = console_factory()
    machine = machine_info()
    import geoetl

    versions = {
        p: version(p) for p in ("geoetl", "pypgstac", "stac-fastapi-pgstac", "psycopg", "uvicorn")
    }
    versions["geoetl_source"] = str(Path(geoetl.__file__).parent)
    console.print(f"machine: {machine}", highlight=False)
    console.print(f"versions: {versions}", highlight=False)
    load_start = os.getloadavg()
    out_dir = ROOT / "benchmarks" / "out"  # git-ignored; homes stay outside /tmp
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pgstac-work-", dir=out_dir))
    home = work / "home"
    cases = {kind: queries(kind, args.requests, args.seed + n) for n, kind in enumerate(KINDS)}
    problems: list[str] = []
    http: dict[str, Any] | None = None
    local: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    try:
        with scratch_database(args.pg, "geoetl_bench_pgstac", keep=args.keep) as url:
            loaded = {"database": url.rsplit("/", 1)[1]}
            items = make_items(args.items, args.seed)
            loaded |= load(url, home, items, console)
            del items
            wait_quiet(min(args.quiet_wait, 10.0))
            local = in_process(url, home, cases, args.warmup)
            try:
                http = over_http(url, home, cases, args, work / "logs", console)
                problems += http["problems"]
            except BenchmarkError as exc:
                problems.append(f"over HTTP: {exc}")
                console.print(f"[red]over HTTP failed:[/] {exc}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    goals: dict[str, Any] = {}
    if http is not None:
        for kind, case in http["cases"].items():
            p50 = case["geoetl"]["p50_ms"]
            ratio = case["p50_ratio_geoetl_over_stac_fastapi_pgstac"]
            goals[f"{kind} geoetl p50 ms"] = {
                "value": p50,
                "target": f"<= {TARGET_P50_MS}",
                "met": p50 <= TARGET_P50_MS,
            }
            goals[f"{kind} p50 geoetl/stac-fastapi-pgstac"] = {
                "value": ratio,
                "target": f"<= {TARGET_RATIO}",
                "met": ratio <= TARGET_RATIO,
            }
        print_table(http, local, goals, console)
    for problem in problems:
        console.print(f"  [red]problem:[/] {problem}", highlight=False)
    report = {
        "benchmark": "PostgreSQL data plane, catalog (pgSTAC search)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "versions": versions,
        "items": args.items,
        "collections": COLLECTIONS,
        "seed": args.seed,
        "load": loaded,
        "in_process": local,
        "http": http,
        "targets": goals,
        "problems": problems,
        "loadavg_start": list(load_start),
        "loadavg_end": list(os.getloadavg()),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {args.out}")
    met = bool(goals) and all(g["met"] for g in goals.values())
    return 0 if met and not problems else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
