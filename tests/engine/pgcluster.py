"""A PostgreSQL cluster of a test's own, which the test may stop and restart at will.

The machine's shared cluster serves other people's tests and must never be restarted;
this one lives in a folder under ``.pytest-homes/`` on a free port, trusts local
connections, and is removed afterwards. ``initdb`` refuses to run as root: as root the
cluster is created and run by the ``postgres`` OS user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest

from tests.conftest import IN_CI, free_port, homes_outside_tmp


def _bindir() -> Path | None:
    """Where initdb and pg_ctl are: GEOETL_TEST_PG_BINDIR, Debian's layout, or PATH."""
    if configured := os.environ.get("GEOETL_TEST_PG_BINDIR"):
        return Path(configured)
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if debian:
        return Path(debian[-1])
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgCluster:
    """One PostgreSQL server: ``start``, ``stop``, ``restart``; a database URL for geoetl."""

    def __init__(self, bindir: Path, folder: Path, port: int) -> None:
        self.bindir = bindir
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = port
        self._as_postgres = os.geteuid() == 0

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> None:
        """Create the cluster (trust authentication, listening on 127.0.0.1:port only)."""
        self.folder.mkdir(parents=True)
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        settings = (
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.folder}'\n"
            "fsync = off\n"  # a throwaway cluster: speed over durability on power loss
            "max_connections = 200\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(settings)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are cut off, as in a restart)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        """True while the server's pid file exists."""
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        """A URL for ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name``; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def remove(self) -> None:
        """Stop the server if it runs, and delete its folder."""
        if self.running():
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def own_cluster() -> Iterator[PgCluster]:
    """A fresh running cluster, removed afterwards; fails (never skips) in CI without binaries."""
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists() or not (bindir / "pg_ctl").exists():
        message = f"PostgreSQL server binaries (initdb, pg_ctl) not found (looked in {bindir})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    cluster = PgCluster(bindir, homes_outside_tmp() / f"pg-{uuid.uuid4().hex[:12]}", free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def wait_until_up(cluster: PgCluster, timeout: float = 60) -> None:
    """Wait until the server answers a query."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
