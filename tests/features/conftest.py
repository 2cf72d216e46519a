"""The feature stores the tests of this folder load and query."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geoetl.engine.db import make_engine
from geoetl.features.geopackage import GeoPackageStore
from geoetl.features.postgis import PostgisStore


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """The fresh test database (PostGIS installed)."""
    return pg_database_url


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgisStore]:
    """An empty PostGIS store in schema ``geo``."""
    engine = make_engine(pg_url)
    yield PostgisStore(engine)
    engine.dispose()


@pytest.fixture
def gpkg(tmp_path: Path) -> GeoPackageStore:
    """An empty GeoPackage store, the reference."""
    return GeoPackageStore(tmp_path / "features")
