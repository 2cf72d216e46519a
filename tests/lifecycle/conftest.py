"""Fixtures of the lifecycle tests: the app in a TestClient on any settings."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from geoetl.api.app import create_app
from geoetl.settings import Settings
from tests.lifecycle.helpers import TestClient


@pytest.fixture
def make_client() -> Iterator[Callable[[Settings], TestClient]]:
    """Start the app on some settings in a TestClient (closed afterwards)."""
    with contextlib.ExitStack() as stack:

        def make(settings: Settings) -> TestClient:
            return stack.enter_context(TestClient(create_app(settings)))

        yield make


@pytest.fixture
def client(settings: Settings, make_client: Callable[[Settings], TestClient]) -> TestClient:
    """An anonymous client of the app on ``settings``."""
    return make_client(settings)
