"""Object stores for the storage suite: a local folder, S3 (moto) and Azure Blob (Azurite).

The servers start once per session on free loopback ports (``tests/servers.py``). A
server that cannot start skips its tests, except with ``CI=true``, where it fails them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoetl.settings import Settings
from geoetl.storage.objectstore import ObjectStore, open_object_store
from tests.conftest import IN_CI
from tests.servers import AzureServer, S3Server, ServerMissing, azurite, moto_s3

BACKENDS = ["local", "s3", "azure"]


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not available: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server for the session."""
    try:
        with moto_s3() as server:
            yield server
    except ServerMissing as exc:
        _unavailable("moto's S3 server", exc)


@pytest.fixture(scope="session")
def azure_server() -> Iterator[AzureServer]:
    """Azurite (Blob) for the session."""
    try:
        with azurite() as server:
            yield server
    except ServerMissing as exc:
        _unavailable("Azurite", exc)


def storage_settings(kind: str, home: Path, request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings fields for a fresh store of ``kind`` (its own prefix on a shared server)."""
    if kind == "local":
        return {}
    server: S3Server | AzureServer = request.getfixturevalue(
        "s3_server" if kind == "s3" else "azure_server"
    )
    url = f"{server.storage_url}/{uuid.uuid4().hex[:10]}"
    return {"storage_url": url, **server.settings()}


@pytest.fixture(params=BACKENDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """local, s3 or azure."""
    return str(request.param)


@pytest.fixture
def store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ObjectStore:
    """A fresh, empty object store of ``store_kind``."""
    fields = storage_settings(store_kind, tmp_path / "home", request)
    return open_object_store(Settings(home=tmp_path / "home", **fields))  # type: ignore[arg-type]
