"""The hostile test suite's harness: two live ``geoetl serve`` deployments on one home.

One home (a temporary folder under the repository's ``.pytest-homes/`` — outside
``/tmp``, so a leaked ``/tmp`` path and a leaked home path are different findings; set
``GEOETL_SECURITY_HOMES`` to put it elsewhere), one database, and two ``geoetl serve
--workers 1`` processes sharing them:

- ``ouo``: ``GEOETL_AUDIENCE=ouo``; ``pub``: ``GEOETL_AUDIENCE=public``;
- both with ``GEOETL_UPLOAD_MAX_MB=2`` (the upload-limit probe sends 3 MiB);
- ``ouo`` also accepts OIDC bearer JWTs from a test issuer whose RSA key the harness
  holds (:meth:`Harness.jwt`), so forged tokens meet the real verifier there.

Data is seeded with the local CLI (``geoetl ingest``, which acts as an admin) before the
servers start, so the harness does not depend on the features under test:

========================  ==========  ==================================================
seed                      level       what
========================  ==========  ==================================================
``elev_public``           public      elev.tif → ``sec-mixed/elev-public`` (Luxembourg)
``lc_ouo``                ouo         lc.tif → ``sec-mixed/lc-ouo`` (Puerto Rico)
``olinda_restricted``     restricted  olinda DEM → ``sec-mixed/olinda-restricted`` (Brazil)
``elev_ouo_only``         ouo         elev.tif → ``sec-ouo-only/elev-ouo-only``
``nc_public``             public      nc.gpkg → OGC collection ``nc_public``
``lux_ouo``               ouo         lux.shp → OGC collection ``lux_ouo``
``xss_public``            public      GeoJSON whose values are HTML → ``xss_public``
========================  ==========  ==================================================

``sec-mixed`` was created by its public item, so it is a public collection holding
hidden items; ``sec-ouo-only`` is an ouo collection. Tokens are made with ``geoetl tokens
create … --json`` in their own fixture (:func:`tokens`), so probes that need none still
run when the token CLI is broken.

Two harnesses, each built once per session when first needed, seeded alike:

- ``sqlite_harness``: the home's SQLite database (catalog, feature tables and jobs);
- ``pg_harness``: a PostgreSQL database cloned from ``pg_template`` (pgSTAC catalog,
  PostGIS feature tables, jobs), dropped at the end of the session. It needs the
  PostgreSQL test server: skipped without one, failed without one when ``CI=true``.

Probes ask for ``harness``, which is the SQLite one unless a module parametrizes it
indirectly — ``pytestmark = pytest.mark.parametrize("harness", BACKENDS, indirect=True)``
(as ``test_visibility.py`` and ``test_web.py`` do) runs the module's probes on both.

Every response a probe reads goes through :meth:`Api.request`, which checks that an
error never shows internals (tracebacks, SQL, exception classes, server paths) and that a
500 has exactly the ``{"code": "InternalError", "detail", "error_id"}`` shape.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import jwt
import numpy as np
import psutil
import psycopg
import pytest
import rasterio
from affine import Affine
from cryptography.hazmat.primitives.asymmetric import rsa

from geoetl.settings import Settings
from tests.conftest import _admin_dsn, geoetl_cmd, serving, settings_env

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data"
HOMES = Path(os.environ.get("GEOETL_SECURITY_HOMES") or REPO / ".pytest-homes")
DONE = {"succeeded", "failed", "cancelled"}
UPLOAD_MAX_MB = 2
OIDC_ISSUER = "https://issuer.security.test"
OIDC_AUDIENCE = "geoetl-security"
OIDC_KID = "security-test-key"
# The harness backends a module may parametrize ``harness`` with (indirectly).
BACKENDS = ["sqlite", "postgres"]

# Token name -> (role, clearance). "sec-revoked" is revoked right after it is made.
TOKENS: dict[str, tuple[str, str]] = {
    "sec-admin": ("admin", "restricted"),
    "sec-pub-ouo": ("publisher", "ouo"),
    "sec-pub-public": ("publisher", "public"),
    "sec-reader": ("reader", "restricted"),
    "sec-revoked": ("publisher", "ouo"),
    "sec-burst": ("publisher", "public"),
}

# What an error body must never carry (checked on every >= 400 response).
LEAKS = (
    "Traceback (most recent call last)",
    'File "/',
    "site-packages",
    "sqlalchemy",
    "sqlite3.",
    "psycopg",
    "SELECT ",
    "INSERT INTO",
    "UPDATE jobs",
    "UPDATE tasks",
)
# Exception class names of deep code that a 500 must not name.
CLASS_NAMES = (
    "OperationalError",
    "IntegrityError",
    "ProgrammingError",
    "KeyError",
    "ValueError",
    "TypeError",
    "AttributeError",
    "RecursionError",
    "IndexError",
    "RasterioIOError",
    "CPLE_",
    "AssertionError",
)


# -- leak checks ------------------------------------------------------------------------


def check_no_leak(response: httpx.Response, *paths: Path | str) -> None:
    """Fail if an error response shows internals; a 500 must be the bare error id shape."""
    if response.status_code < 400:
        return
    text = response.text
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    found = [p for p in LEAKS if p in text]
    # Server paths, also with the leading slash cut off (as in an object key) — unless the
    # caller sent that path itself and the answer only quotes it back.
    sent = unquote(str(response.request.url))
    with contextlib.suppress(httpx.RequestNotRead):
        sent += response.request.content.decode("utf-8", "replace")
    found += [str(p) for p in paths if str(p).lstrip("/") in text and str(p) not in sent]
    assert not found, f"{where} leaks {found}: {text[:800]}"
    if response.status_code >= 500:
        try:
            body = response.json()
        except ValueError:
            pytest.fail(f"{where}: not JSON: {text[:500]}")
        assert isinstance(body, dict), f"{where}: {text[:500]}"
        assert set(body) == {"code", "detail", "error_id"}, f"{where}: {body}"
        assert body["code"] == "InternalError", f"{where}: {body}"
        named = [c for c in CLASS_NAMES if c in text]
        assert not named, f"{where}: a 500 names exception classes {named}: {text[:500]}"


# -- HTTP -------------------------------------------------------------------------------


@dataclass
class Api:
    """One identity (a token, or none) on one deployment."""

    base: str
    token: str | None
    harness: Harness

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        out.update(extra or {})
        return out

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with this identity; the answer is checked for leaks."""
        headers = self.headers(kwargs.pop("headers", None))
        kwargs.setdefault("timeout", 60)
        response = httpx.request(method, self.base + path, headers=headers, **kwargs)
        check_no_leak(response, self.harness.home, REPO, *self.harness.leak_markers)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def upload(self, filename: str, content: bytes, **params: Any) -> httpx.Response:
        """``POST /ingest?filename=…`` with ``content`` as the body."""
        query = {"filename": filename, **{k: v for k, v in params.items() if v is not None}}
        return self.post("/ingest", params=query, content=content)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def wait(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """The job's view once it has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.job(job_id)
            if view["status"] in DONE:
                return view
            time.sleep(0.1)
        pytest.fail(f"job {job_id} did not end within {timeout}s\n{self.harness.log_tail()}")


def raw_request(base: str, target: str, method: str = "GET", headers: str = "") -> tuple[int, str]:
    """Send a request line exactly as given (no client-side normalisation of the path)."""
    host, port = base.removeprefix("http://").split(":")
    message = (
        f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
        "Connection: close\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(message.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks).decode("latin-1")
    status = int(data.split(" ", 2)[1]) if data.startswith("HTTP/") else 0
    return status, data.split("\r\n\r\n", 1)[-1]


def assert_alive(base: str) -> None:
    """The deployment still answers ``GET /livez`` with 200."""
    response = httpx.get(f"{base}/livez", timeout=10)
    assert response.status_code == 200, f"{base}/livez: {response.status_code} {response.text}"


# -- storage ----------------------------------------------------------------------------


def bronze_silver_snapshot(home: Path) -> set[str]:
    """Every file under ``storage/bronze`` and ``storage/silver`` (paths relative to home)."""
    found: set[str] = set()
    for zone in ("bronze", "silver"):
        top = home / "storage" / zone
        if top.exists():
            found |= {str(p.relative_to(home)) for p in top.rglob("*") if p.is_file()}
    return found


def _home(where: Harness | Path) -> Path:
    return where.home if isinstance(where, Harness) else where


def _pg_url(where: Harness | Path) -> str | None:
    """The PostgreSQL database of a harness on that backend; None for SQLite."""
    return where.database_url if isinstance(where, Harness) else None


def active_jobs(where: Harness | Path) -> int:
    """Queued or running jobs in the database (read directly: no API involved).

    ``where`` is a harness (either backend) or a home with a SQLite database.
    """
    if url := _pg_url(where):
        with psycopg.connect(url, autocommit=True) as conn:
            found = conn.execute(
                "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchone()
        assert found is not None
        return int(found[0])
    db = _home(where) / "geoetl.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
        row = c.execute("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
        return int(row.fetchone()[0])


def quiesce(where: Harness | Path, timeout: float = 60.0) -> None:
    """Wait until no job is queued or running (so stored files stop changing)."""
    deadline = time.monotonic() + timeout
    while active_jobs(where) and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def nothing_stored(where: Harness | Path) -> Iterator[None]:
    """Assert the block adds nothing to bronze or silver (also via a job it started)."""
    home = _home(where)
    quiesce(where)
    before = bronze_silver_snapshot(home)
    yield
    quiesce(where)
    added = bronze_silver_snapshot(home) - before
    assert not added, f"a refused request stored {sorted(added)}"


@contextlib.contextmanager
def nothing_published(home: Path) -> Iterator[None]:
    """Assert the block adds nothing to silver (an accepted upload may sit in bronze)."""
    quiesce(home)
    before = {p for p in bronze_silver_snapshot(home) if p.startswith("storage/silver")}
    yield
    quiesce(home)
    after = {p for p in bronze_silver_snapshot(home) if p.startswith("storage/silver")}
    assert not after - before, f"published {sorted(after - before)}"


def item_row(where: Harness | Path, collection: str, item: str) -> tuple[str, str] | None:
    """(access_level, data) of a catalogued item, read from the database directly.

    ``where`` is a harness (either backend) or a home with a SQLite database.
    """
    if url := _pg_url(where):
        with psycopg.connect(url, autocommit=True) as conn:
            found = conn.execute("SELECT pgstac.get_item(%s, %s)", (item, collection)).fetchone()
        if found is None or found[0] is None:
            return None
        doc = found[0]
        return str(doc["properties"].get("geoetl:access_level")), json.dumps(doc)
    db = _home(where) / "geoetl.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
        cols = [r[1] for r in c.execute("PRAGMA table_info(stac_items)")]
        id_col = "item_id" if "item_id" in cols else "id"
        row = c.execute(
            f"SELECT access_level, data FROM stac_items WHERE collection_id = ? AND {id_col} = ?",
            (collection, item),
        ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


# -- files ------------------------------------------------------------------------------


def make_raster(
    path: Path, seed: int, bounds: tuple[float, float, float, float] = (10, 10, 10.5, 10.5)
) -> Path:
    """A small unique GeoTIFF (EPSG:4326, 32x32 uint8) at ``bounds``."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 250, size=(1, 32, 32), dtype=np.uint8)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=32,
        height=32,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=Affine(
            (bounds[2] - bounds[0]) / 32, 0, bounds[0], 0, -(bounds[3] - bounds[1]) / 32, bounds[3]
        ),
        nodata=0,
    ) as ds:
        ds.write(data)
    return path


def raster_bytes(tmp: Path, seed: int | None = None) -> bytes:
    """The bytes of a fresh unique GeoTIFF."""
    seed = uuid.uuid4().int % 2**32 if seed is None else seed
    return make_raster(tmp / f"r{seed}.tif", seed).read_bytes()


def geojson_bytes(props: list[dict[str, Any]] | None = None, seed: int | None = None) -> bytes:
    """A small GeoJSON FeatureCollection of points (unique content per ``seed``)."""
    seed = uuid.uuid4().int % 10**6 if seed is None else seed
    props = props or [{"name": f"p{seed}-{i}", "n": i} for i in range(3)]
    features = [
        {
            "type": "Feature",
            "properties": p,
            "geometry": {"type": "Point", "coordinates": [10 + i * 0.01, 20 + (seed % 100) * 0.01]},
        }
        for i, p in enumerate(props)
    ]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def uniq(prefix: str) -> str:
    """A fresh id with ``prefix`` (lowercase letters, digits and '_')."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- listeners --------------------------------------------------------------------------


class LoopbackListener:
    """A TCP server on 127.0.0.1 that records every connection (for SSRF probes)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.hits: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.hits.append(conn.recv(4096) or b"<connected>")
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    self.hits.append(b"<connected>")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class FifoTripwire:
    """A named pipe outside the home that records whether anyone opened it to read.

    A reader's ``open()`` of a FIFO blocks until a writer comes; the watcher keeps trying
    a non-blocking open for writing, which succeeds only while a reader has it open. It
    then writes a little garbage and closes, so the reader gets EOF instead of hanging.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self.path = path
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
                time.sleep(0.01)
                continue
            self.opened += 1
            with contextlib.suppress(OSError):
                os.write(fd, b"not the file you were looking for\n")
            os.close(fd)
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# -- worker processes -------------------------------------------------------------------


def worker_processes(bases: list[str]) -> list[psutil.Process]:
    """The worker processes of the ``geoetl serve`` processes listening at ``bases``."""
    ports = {base.rsplit(":", 1)[1] for base in bases}
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "serve" in cmd and "--port" in cmd and cmd[cmd.index("--port") + 1] in ports:
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "spawn_main" in " ".join(child.cmdline()):
                        found.append(child)
    return found


@contextlib.contextmanager
def workers_paused(h: Harness) -> Iterator[None]:
    """Stop (SIGSTOP) the deployments' workers for the block, so jobs stay queued."""
    workers = worker_processes(list(h.urls.values()))
    assert workers, "no worker processes found"
    for proc in workers:
        proc.suspend()
    try:
        yield
    finally:
        for proc in workers:
            with contextlib.suppress(psutil.Error):
                proc.resume()


# -- the harness ------------------------------------------------------------------------


@dataclass
class Seed:
    """A seeded publication and the job that made it."""

    name: str
    job_id: str
    level: str
    collection: str
    item: str
    source: str
    params: dict[str, Any]
    result: dict[str, Any]


@dataclass
class Harness:
    """Two live deployments on one home and one database, and the data seeded there."""

    root: Path
    home: Path
    outside: Path
    settings: dict[str, Settings]
    backend: str = "sqlite"
    database_url: str | None = None  # the PostgreSQL database (postgres backend only)
    urls: dict[str, str] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    seeds: dict[str, Seed] = field(default_factory=dict)
    oidc_key: Any = None
    token_secrets: dict[str, str] | None = None  # made once, by the tokens fixture
    token_error: str | None = None  # why making them failed (not tried again)

    @property
    def leak_markers(self) -> list[str]:
        """What an error must not show besides paths: the database URL and name."""
        if self.database_url is None:
            return []
        return [self.database_url, self.database_url.rsplit("/", 1)[1]]

    def jwt(self, **claims: Any) -> str:
        """A JWT signed (RS256) by the ``ouo`` deployment's trusted OIDC issuer."""
        now = int(time.time())
        body = {"iss": OIDC_ISSUER, "aud": OIDC_AUDIENCE, "sub": "sec-oidc", "iat": now}
        body.update({"exp": now + 600, **claims})
        return jwt.encode(body, self.oidc_key, algorithm="RS256", headers={"kid": OIDC_KID})

    @property
    def ouo(self) -> str:
        return self.urls["ouo"]

    @property
    def pub(self) -> str:
        return self.urls["pub"]

    def api(self, deployment: str, token: str | None = None) -> Api:
        """An identity on ``deployment`` (``ouo`` or ``pub``); no token: anonymous."""
        return Api(self.urls[deployment], token, self)

    def cli(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """``geoetl ARGS`` with the home's environment (the ouo deployment's settings)."""
        env = {**settings_env(self.settings["cli"]), "COLUMNS": "200"}
        return subprocess.run(
            geoetl_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout
        )

    def log_tail(self, chars: int = 4000) -> str:
        out = []
        for name, log in self.logs.items():
            if log.exists():
                lines = [
                    line
                    for line in log.read_text(errors="replace").splitlines()
                    if "GET /jobs/" not in line and "GET /livez" not in line
                ]
                out.append(f"--- {name} log ---\n" + "\n".join(lines)[-chars:])
        return "\n".join(out)


def _settings(home: Path, database_url: str | None, **extra: Any) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        lease_seconds=10.0,
        heartbeat_seconds=1.0,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        redispatch_after_seconds=2.0,
        janitor_interval_seconds=1.0,
        upload_max_mb=UPLOAD_MAX_MB,
        **extra,
    )


def _oidc_issuer(root: Path) -> tuple[Any, Path]:
    """An RSA key and the JWKS file publishing its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": OIDC_KID, "use": "sig", "alg": "RS256"})
    path = root / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    return key, path


def _xss_geojson(path: Path) -> Path:
    hostile = [
        {"name": "<script>alert(1)</script>", "note": '"><img src=x onerror=alert(1)>'},
        {"name": "</script><script>alert(2)</script>", "note": "<!--<script>"},
        {"name": "plain", "note": "javascript:alert(3)"},
    ]
    path.write_bytes(geojson_bytes(hostile, seed=7))
    return path


SEEDS: list[tuple[str, str, str, str, str]] = [
    # name, file, level, collection, item or dataset id
    ("elev_public", "elev.tif", "public", "sec-mixed", "elev-public"),
    ("lc_ouo", "lc.tif", "ouo", "sec-mixed", "lc-ouo"),
    ("olinda_restricted", "olinda_dem_utm25s.tif", "restricted", "sec-mixed", "olinda-restricted"),
    ("elev_ouo_only", "elev.tif", "ouo", "sec-ouo-only", "elev-ouo-only"),
    ("nc_public", "nc.gpkg", "public", "sec-vectors", "nc_public"),
    ("lux_ouo", "lux.shp", "ouo", "sec-vectors-ouo", "lux_ouo"),
    ("xss_public", "xss.geojson", "public", "sec-vectors", "xss_public"),
]


def _seed(h: Harness, name: str, file: str, level: str, collection: str, ident: str) -> Seed:
    path = h.root / file if file == "xss.geojson" else DATA / file
    is_raster = path.suffix == ".tif"
    id_option = ["--item-id", ident] if is_raster else ["--dataset-id", ident]
    done = h.cli(
        "ingest",
        str(path),
        "--json",
        "--access-level",
        level,
        "--collection",
        collection,
        *id_option,
    )
    if done.returncode != 0:
        pytest.fail(f"seeding {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    view = json.loads(done.stdout)
    assert view["status"] == "succeeded", view
    return Seed(
        name=name,
        job_id=view["job_id"],
        level=level,
        collection=collection,
        item=ident,
        source=view["params"]["source"],
        params=view["params"],
        result=view["result"],
    )


@contextlib.contextmanager
def deployments(backend: str, database_url: str | None = None) -> Iterator[Harness]:
    """Seed one home (and database) with the CLI, then serve it twice (ouo and public)."""
    HOMES.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"security-{backend}-", dir=HOMES)).resolve()
    home = root / "home"
    key, jwks = _oidc_issuer(root)
    oidc = {
        "oidc_issuer": OIDC_ISSUER,
        "oidc_audience": OIDC_AUDIENCE,
        "oidc_jwks_file": jwks,
    }
    h = Harness(
        root=root,
        home=home,
        outside=root / "outside",
        settings={
            # The CLI runs as the local admin; a restricted audience lets it seed anything.
            "cli": _settings(home, database_url, audience="restricted"),
            "ouo": _settings(home, database_url, audience="ouo", **oidc),
            "pub": _settings(home, database_url, audience="public"),
        },
        backend=backend,
        database_url=database_url,
    )
    h.oidc_key = key
    h.outside.mkdir(parents=True)
    _xss_geojson(root / "xss.geojson")
    try:
        # The public item first: it creates sec-mixed as a public collection.
        first, *rest = SEEDS
        h.seeds[first[0]] = _seed(h, *first)
        with ThreadPoolExecutor(3) as pool:
            for seed in pool.map(lambda s: _seed(h, *s), rest):
                h.seeds[seed.name] = seed
        with contextlib.ExitStack() as stack:
            # One after the other: the first start with no tokens writes the admin token.
            for name in ("ouo", "pub"):
                h.logs[name] = root / f"{name}.log"
                h.urls[name] = stack.enter_context(
                    serving(h.settings[name], h.logs[name], "--workers", "1")
                )
            yield h
    finally:
        if not os.environ.get("GEOETL_SECURITY_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_harness() -> Iterator[Harness]:
    """The deployments on a home whose database is SQLite (built once per session)."""
    with deployments("sqlite") as h:
        yield h


@pytest.fixture(scope="session")
def pg_harness(pg_dsn: str, pg_template: str) -> Iterator[Harness]:
    """The deployments on a PostgreSQL database (pgSTAC + PostGIS) cloned from the template.

    Built once per session; the database is dropped after the servers stopped (kept with
    the home when ``GEOETL_SECURITY_KEEP`` is set).
    """
    name = f"security_{uuid.uuid4().hex[:12]}"
    admin = _admin_dsn(pg_dsn, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    try:
        with deployments("postgres", _admin_dsn(pg_dsn, name)) as h:
            yield h
    finally:
        if not os.environ.get("GEOETL_SECURITY_KEEP"):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def harness(request: pytest.FixtureRequest) -> Harness:
    """The SQLite harness, or the one a module's indirect parametrization names.

    ``pytest.mark.parametrize("harness", BACKENDS, indirect=True)`` runs a module on
    both; the parameter is module-scoped, so pytest runs all of one backend's probes
    before the other's.
    """
    backend = getattr(request, "param", "sqlite")
    assert backend in BACKENDS, backend
    fixture = {"sqlite": "sqlite_harness", "postgres": "pg_harness"}[backend]
    h: Harness = request.getfixturevalue(fixture)
    return h


def _make_tokens(h: Harness) -> dict[str, str]:
    def create(name: str) -> tuple[str, str]:
        role, clearance = TOKENS[name]
        done = h.cli(
            "tokens", "create", "--name", name, "--role", role, "--clearance", clearance, "--json"
        )
        assert done.returncode == 0, f"geoetl tokens create {name}:\n{done.stdout}{done.stderr}"
        doc = json.loads(done.stdout)
        assert (doc["name"], doc["role"], doc["clearance"]) == (name, role, clearance), doc
        return name, str(doc["token"])

    with ThreadPoolExecutor(3) as pool:
        secrets = dict(pool.map(create, TOKENS))
    revoked = h.cli("tokens", "revoke", "sec-revoked")
    assert revoked.returncode == 0, revoked.stderr
    return secrets


@pytest.fixture
def tokens(harness: Harness) -> dict[str, str]:
    """Secrets of the TOKENS, made with ``geoetl tokens create --json``; one revoked.

    Made once per harness (on first use) and kept on it.
    """
    if harness.token_error:
        pytest.fail(f"making the tokens failed before: {harness.token_error}")
    if harness.token_secrets is None:
        try:
            harness.token_secrets = _make_tokens(harness)
        except BaseException as exc:
            harness.token_error = str(exc)[:2000] or type(exc).__name__
            raise
    return harness.token_secrets


@pytest.fixture
def listener() -> Iterator[LoopbackListener]:
    """A loopback TCP listener recording every connection made to it."""
    server = LoopbackListener()
    yield server
    server.close()


@pytest.fixture
def tripwire(harness: Harness) -> Iterator[FifoTripwire]:
    """A FIFO outside the home (``…/outside/<id>/secret.tif``) that records reads."""
    wire = FifoTripwire(harness.outside / uuid.uuid4().hex[:8] / "secret.tif")
    yield wire
    wire.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the schemathesis fuzzing last: it submits jobs the probes need not wait for."""
    fuzz = [i for i in items if i.nodeid.startswith("tests/security/test_schemathesis.py")]
    if fuzz:
        items[:] = [i for i in items if i not in fuzz] + fuzz
