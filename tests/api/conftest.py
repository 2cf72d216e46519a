"""The app in a TestClient on ``settings`` (SQLite or PostgreSQL), shared by API tests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from geoetl.api.app import create_app
from geoetl.platform import Platform
from geoetl.settings import Settings

with warnings.catch_warnings():
    # Starlette nags about httpx vs httpx2 at import; the client works the same.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client of the app on ``settings``, with its lifespan (platform) running."""
    with TestClient(create_app(settings)) as c:
        yield c


def platform_of(client: TestClient) -> Platform:
    """The platform the app built at startup."""
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform
