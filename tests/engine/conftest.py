"""Fixtures shared by the engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.engine.helpers import Workers


@pytest.fixture
def workers(settings: Settings, tmp_path: Path, platform: Platform) -> Iterator[Workers]:
    w = Workers(settings, tmp_path)
    yield w
    w.stop()
