"""eoAPI side by side: geoetl publishes into PostgreSQL, eoAPI's servers read the same data.

One database for the package's tests, cloned from the PostGIS + pgSTAC template, holds what
``geoetl ingest`` published: a public and an ouo raster (each in its own collection),
and public and ouo vector datasets. stac-fastapi-pgstac, titiler-pgstac and TiPG run
as subprocesses (``uvicorn``, loopback, free ports) configured by environment
variables as deployed, once as ``postgres`` and once as a reader role made by
``geoetl db create-reader-role --clearance public``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from geoetl.settings import Settings
from tests.cli.helpers import DATA, geoetl
from tests.conftest import IN_CI, _admin_dsn, free_port, homes_outside_tmp

PASSWORD = "reader-pw"
# The servers: module to check, uvicorn target, health path.
TOOLS = {
    "stac": ("stac_fastapi.pgstac", "stac_fastapi.pgstac.app:create_app", "/_mgmt/ping"),
    "titiler": ("titiler.pgstac", "titiler.pgstac.main:app", "/healthz"),
    "tipg": ("tipg", "tipg.main:app", "/healthz"),
}
# What geoetl publishes: (file, collection, dataset or item id, access level).
RASTERS = [("elev.tif", "rasters-pub", "elev", "public"), ("lc.tif", "rasters-ouo", "lc", "ouo")]
VECTORS = [("nc.gpkg", "vectors-pub", "nc", "public"), ("lux.shp", "vectors-ouo", "lux", "ouo")]
# Published after the reader role exists: its grants must follow.
LATER = ("buildings.gpkg", "vectors-pub", "buildings", "public")


def require_tools() -> None:
    """The eoAPI servers must be importable: fail in CI, skip elsewhere."""
    missing = [m for m, _, _ in TOOLS.values() if importlib.util.find_spec(m) is None]
    if importlib.util.find_spec("uvicorn") is None:
        missing.append("uvicorn")
    if missing:
        message = f"eoAPI servers not installed: {', '.join(missing)}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Deployment:
    """The database, geoetl's settings on it, the reader role and the running servers."""

    url: str
    settings: Settings
    reader: str
    storage: Path
    servers: dict[tuple[str, str], str] = field(default_factory=dict)

    def base(self, tool: str, who: str = "postgres") -> str:
        """Base URL of ``tool`` (stac, titiler, tipg) connected as ``who``."""
        return self.servers[(tool, who)]


def _ingest(settings: Settings, name: str, collection: str, ident: str, level: str) -> None:
    option = "--item-id" if name.endswith(".tif") else "--dataset-id"
    done = geoetl(
        settings,
        "ingest",
        str(DATA / name),
        "--collection",
        collection,
        option,
        ident,
        "--access-level",
        level,
    )
    assert done.returncode == 0, f"geoetl ingest {name}: {done.stderr}"


def _env(url: str, user: str, password: str) -> dict[str, str]:
    """Environment configuring every eoAPI server for ``url`` as ``user``."""
    host_db = url.split("@", 1)[1]
    host_port, database = host_db.split("/", 1)
    host, _, port = host_port.partition(":")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GEOETL_", "PG", "POSTGRES_", "TIPG_", "DATABASE_URL"))
    }
    env.update(
        {
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGHOST": host,
            "PGPORT": port or "5432",
            "PGDATABASE": database,
            "DATABASE_URL": f"postgresql://{user}:{password}@{host}:{port or 5432}/{database}",
            "TIPG_DB_SCHEMAS": '["geo"]',
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": "4",
        }
    )
    return env


@contextlib.contextmanager
def eoapi_servers(
    url: str, identities: dict[str, tuple[str, str]], cwd: Path, logs: Path
) -> Iterator[dict[tuple[str, str], str]]:
    """Every tool for every identity (name -> (user, password)), started at once."""
    procs: dict[tuple[str, str], tuple[subprocess.Popen[bytes], str, str, Path]] = {}
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for who, (user, password) in identities.items():
            for tool, (_module, target, health) in TOOLS.items():
                port = free_port()
                log = logs / f"{tool}-{who}.log"
                cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
                cmd += ["--port", str(port), "--log-level", "warning"]
                if target.endswith("create_app"):
                    cmd.append("--factory")
                with log.open("wb") as handle:
                    proc = subprocess.Popen(
                        cmd,
                        env=_env(url, user, password),
                        cwd=cwd,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                    )
                procs[(tool, who)] = (proc, f"http://127.0.0.1:{port}", health, log)
        deadline = time.monotonic() + 60
        for key, (proc, base, health, log) in procs.items():
            while True:
                try:
                    if httpx.get(base + health, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{key[0]} as {key[1]} did not start:\n{log.read_text()[-4000:]}")
                time.sleep(0.2)
        yield {key: base for key, (_p, base, _h, _l) in procs.items()}
    finally:
        for proc, _base, _health, _log in procs.values():
            proc.terminate()
        for proc, _base, _health, _log in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="package")
def deployment(pg_dsn: str, pg_template: str) -> Iterator[Deployment]:
    """geoetl's samples published into a fresh database, and eoAPI's servers on it."""
    require_tools()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_dsn(pg_dsn, "postgres")
    reader = f"reader_pub_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide: unique per run
    home = homes_outside_tmp() / f"h-{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(pg_template)
            )
        )
    url = _admin_dsn(pg_dsn, name)
    try:
        settings = Settings(home=home, database_url=url)
        for raster in RASTERS:
            _ingest(settings, *raster)
        for vector in VECTORS:
            _ingest(settings, *vector)
        made = geoetl(
            settings,
            "db",
            "create-reader-role",
            reader,
            "--clearance",
            "public",
            "--password",
            PASSWORD,
        )
        assert made.returncode == 0, made.stderr
        _ingest(settings, *LATER)
        assert settings.storage_url is not None
        storage = Path(settings.storage_url.removeprefix("file://"))
        deployed = Deployment(url=url, settings=settings, reader=reader, storage=storage)
        identities = {"postgres": ("postgres", "unused"), "reader": (reader, PASSWORD)}
        # The servers run outside the storage: pgSTAC items carry absolute asset hrefs.
        with eoapi_servers(url, identities, home, home / "logs") as servers:
            deployed.servers = servers
            yield deployed
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (reader,)).fetchone():
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))
        shutil.rmtree(home, ignore_errors=True)
