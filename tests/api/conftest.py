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
def api_settings(settings: Settings) -> Settings:
    """``settings`` with the demo workflows offered over HTTP (the tests submit them)."""
    return settings.model_copy(update={"demo_workflows": True})


@pytest.fixture
def anonymous(api_settings: Settings) -> Iterator[TestClient]:
    """A client without credentials, of the app on ``api_settings``."""
    with TestClient(create_app(api_settings)) as c:
        yield c


@pytest.fixture
def client(anonymous: TestClient) -> TestClient:
    """A client of the same app that sends an admin token with every request."""
    secret = platform_of(anonymous).tokens.create("test-admin", "admin", "restricted")
    anonymous_headers = dict(anonymous.headers)
    client = TestClient(anonymous.app)
    client.headers.update({**anonymous_headers, "Authorization": f"Bearer {secret}"})
    return client


def token(client: TestClient, name: str, role: str, clearance: str) -> dict[str, str]:
    """Headers with a new token of ``role`` and ``clearance``."""
    secret = platform_of(client).tokens.create(name, role, clearance)
    return {"Authorization": f"Bearer {secret}"}


def platform_of(client: TestClient) -> Platform:
    """The platform the app built at startup."""
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform
