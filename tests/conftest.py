"""Shared fixtures: every engine test runs on SQLite and on the PostgreSQL ``test`` database."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from geoetl.platform import Platform
from geoetl.settings import Settings

PG_DSN = os.environ.get("GEOETL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The PostgreSQL test database; fails (never skips) in CI when it is unreachable."""
    problem = _pg_available()
    if problem:
        message = f"PostgreSQL test database {PG_DSN} unreachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return PG_DSN


@pytest.fixture
def pg_schema_url(pg_dsn: str) -> Iterator[str]:
    """A database URL whose tables live in a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{pg_dsn}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


TEMPLATE_DB = "geoetl_test_template"


def _admin_dsn(dsn: str, database: str) -> str:
    base, _, _query = dsn.partition("?")
    return base.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def pg_template(pg_dsn: str) -> str:
    """A database with PostGIS and pgSTAC installed by geoetl, cloned for each test.

    Built once per session through geoetl's own installer (``geoetl db upgrade``'s
    code), so every PostgreSQL test runs on the real pgSTAC and PostGIS.
    """
    from geoetl.catalog.pgstac_install import PGSTAC_MINOR, install
    from geoetl.engine.db import make_engine

    admin = _admin_dsn(pg_dsn, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_advisory_lock(hashtext('geoetl_test_template'))"  # parallel sessions
        )
        try:
            # Built once and kept: other test sessions may be cloning it right now.
            ready = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (TEMPLATE_DB,),
            ).fetchone()
            if ready is None or ready[0] != f"geoetl template pgstac {PGSTAC_MINOR}":
                conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
                engine = make_engine(_admin_dsn(pg_dsn, TEMPLATE_DB))
                try:
                    install(engine)
                finally:
                    engine.dispose()
                conn.execute(
                    f"COMMENT ON DATABASE {TEMPLATE_DB} IS 'geoetl template pgstac {PGSTAC_MINOR}'"
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('geoetl_test_template'))")
    return TEMPLATE_DB


@pytest.fixture
def pg_database_url(pg_dsn: str, pg_template: str) -> Iterator[str]:
    """A fresh database cloned from the template (PostGIS + pgSTAC), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_dsn(pg_dsn, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield _admin_dsn(pg_dsn, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The job store backend under test."""
    return str(request.param)


REPO = Path(__file__).resolve().parents[1]


def homes_outside_tmp() -> Path:
    """Where test homes live: under the repository, never in the temporary folder.

    The default home (``./geoetl-data``) is not under /tmp either, and paths there
    behave differently (a bug once hid behind /tmp). If the checkout itself is in the
    temporary folder, under the user's cache instead.
    """
    base = REPO / ".pytest-homes"
    tmp = Path(tempfile.gettempdir()).resolve()
    if base.is_relative_to(tmp) or base.is_relative_to("/tmp"):
        base = Path.home() / ".cache" / "geoetl-test-homes"
    return base


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh data home outside /tmp, removed afterwards."""
    path = homes_outside_tmp() / f"h-{uuid.uuid4().hex[:12]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(backend: str, home: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a fresh home on ``backend``, with short leases and retries for tests."""
    url = None
    if backend == "postgres":
        url = request.getfixturevalue("pg_database_url")
    return Settings(
        home=home,
        database_url=url,
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        redispatch_after_seconds=0.5,
        janitor_interval_seconds=0.5,
    )


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    """A platform on ``settings``, closed afterwards."""
    p = Platform.from_settings(settings)
    yield p
    p.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a ``geoetl`` subprocess use ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOETL_")}
    for name, value in settings.model_dump(exclude_none=True, mode="json").items():
        # Complex settings (dicts, lists) are read back from JSON.
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"GEOETL_{name.upper()}"] = text
    return env


def geoetl_cmd(*args: str) -> list[str]:
    """The command line that runs ``geoetl`` with this interpreter."""
    return [sys.executable, "-m", "geoetl", *args]


def start_geoetl(settings: Settings, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``geoetl ARGS`` in the background with its output in ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(
        geoetl_cmd(*args), env=settings_env(settings), stdout=handle, stderr=subprocess.STDOUT
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(settings: Settings, log: Path, *extra: str) -> Iterator[str]:
    """``geoetl serve`` on a free port until the block ends; yields its base URL."""
    port = free_port()
    proc = start_geoetl(settings, "serve", "--port", str(port), *extra, log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"geoetl serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bearer(
    settings: Settings, role: str = "admin", clearance: str = "restricted"
) -> dict[str, str]:
    """Headers carrying a new API token of ``role`` for the home of ``settings``."""
    platform = Platform.from_settings(settings)
    try:
        secret = platform.tokens.create(f"t-{uuid.uuid4().hex[:10]}", role, clearance)
    finally:
        platform.close()
    return {"Authorization": f"Bearer {secret}"}


def serve_pid(base: str) -> int:
    """The pid of the ``geoetl serve`` child of this process listening at ``base`` (``serving``)."""
    import psutil

    port = base.rsplit(":", 1)[1]
    [proc] = [p for p in psutil.Process().children() if {"serve", port} <= set(p.cmdline())]
    return int(proc.pid)
