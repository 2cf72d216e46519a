"""Local object storage servers for tests: moto's S3 server and Azurite (Blob only).

Plain context managers, no pytest: each starts a server on a free loopback port, makes
one bucket or container, yields what a client needs and stops the server afterwards::

    with moto_s3() as s3:
        settings = Settings(storage_url=s3.storage_url, **s3.settings())
    with azurite() as az:
        settings = Settings(storage_url=az.storage_url, **az.settings())

``ServerMissing`` says a server cannot be started here (Azurite not installed);
callers decide whether that skips or fails (with ``CI=true`` it must fail).
Azurite is looked up at ``$GEOETL_AZURITE`` (the ``azurite-blob`` program), then in
``.cache/npm`` of this checkout (where ``scripts/test.sh`` installs it), then on PATH.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class ServerMissing(RuntimeError):
    """A test server cannot be started on this machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise ServerMissing(f"the server exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise ServerMissing(
                    f"nothing listens on port {port} after {timeout:.0f} s"
                ) from None
            time.sleep(0.05)


@dataclass(frozen=True)
class S3Server:
    """A running S3 server: its endpoint, a bucket made for the caller and credentials."""

    endpoint_url: str
    bucket: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing-secret"
    region: str = "us-east-1"

    @property
    def storage_url(self) -> str:
        """``s3://bucket/geoetl``: a store under a prefix of the bucket."""
        return f"s3://{self.bucket}/geoetl"

    def settings(self) -> dict[str, Any]:
        """The ``Settings`` fields that reach this server."""
        return {
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": self.region,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
        }

    def env(self) -> dict[str, str]:
        """The same as ``GEOETL_*`` environment variables (for a ``geoetl`` subprocess)."""
        out = {f"GEOETL_{k.upper()}": str(v) for k, v in self.settings().items()}
        return {**out, "GEOETL_STORAGE_URL": self.storage_url}


@contextmanager
def moto_s3(bucket: str | None = None) -> Iterator[S3Server]:
    """moto's S3 server (in this process, on its own threads) with one bucket."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # A listening socket that never blocks in accept(): when a connection is
    # gone before the server takes it (a client killed mid-test), a blocking
    # accept() holds serve_forever, and stop() then waits for ever.
    listener = server._server
    if listener is not None:
        listener.socket.settimeout(1.0)
    try:
        _wait_for_port(port, None, 10)
        info = S3Server(f"http://127.0.0.1:{port}", bucket or f"geoetl-{uuid.uuid4().hex[:8]}")
        _client(info).create_bucket(Bucket=info.bucket)
        yield info
    finally:
        server.stop()


def _client(info: S3Server) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=info.endpoint_url,
        aws_access_key_id=info.access_key_id,
        aws_secret_access_key=info.secret_access_key,
        region_name=info.region,
    )


@dataclass(frozen=True)
class AzureServer:
    """A running Azurite: its connection string and a container made for the caller."""

    connection_string: str
    container: str

    @property
    def storage_url(self) -> str:
        """``az://container/geoetl``: a store under a prefix of the container."""
        return f"az://{self.container}/geoetl"

    def settings(self) -> dict[str, Any]:
        """The ``Settings`` fields that reach this server."""
        return {"azure_connection_string": self.connection_string}

    def env(self) -> dict[str, str]:
        """The same as ``GEOETL_*`` environment variables (for a ``geoetl`` subprocess)."""
        return {
            "GEOETL_AZURE_CONNECTION_STRING": self.connection_string,
            "GEOETL_STORAGE_URL": self.storage_url,
        }


def azurite_program() -> str:
    """The ``azurite-blob`` program; ServerMissing when it is not installed."""
    candidates = [
        os.environ.get("GEOETL_AZURITE", ""),
        str(REPO / ".cache" / "npm" / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob") or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise ServerMissing(
        "Azurite is not installed: run scripts/test.sh (it installs it with npm into "
        ".cache/npm), or set GEOETL_AZURITE to the azurite-blob program"
    )


@contextmanager
def azurite(container: str | None = None) -> Iterator[AzureServer]:
    """Azurite's Blob service in memory on a free port, with one container."""
    program = azurite_program()
    port = free_port()
    argv = [
        program,
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--loose",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
    ]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below, after the server)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        try:
            _wait_for_port(port, proc, 30)
        except ServerMissing as exc:
            log.seek(0)
            err = log.read().decode(errors="replace")[-500:]
            raise ServerMissing(f"Azurite did not start: {exc} {err}") from None
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )
        info = AzureServer(connection, container or f"geoetl-{uuid.uuid4().hex[:8]}")
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(connection).create_container(info.container)
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
