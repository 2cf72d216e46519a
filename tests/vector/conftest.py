"""Feature store fixtures: each store test runs on GeoPackage files and on PostGIS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from geoetl.features.geopackage import GeoPackageStore
from geoetl.features.store import FeatureStore
from tests.conftest import homes_outside_tmp


def make_store(kind: str, request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    """A fresh, empty feature store of ``kind`` (``geopackage`` or ``postgis``)."""
    if kind == "geopackage":
        import shutil

        root = homes_outside_tmp() / f"fs-{uuid.uuid4().hex[:12]}"
        yield GeoPackageStore(root)
        shutil.rmtree(root, ignore_errors=True)
        return
    from geoetl.engine.db import make_engine
    from geoetl.features.postgis import PostgisStore

    engine = make_engine(request.getfixturevalue("pg_database_url"))
    try:
        yield PostgisStore(engine, schema="geo")
    finally:
        engine.dispose()


@pytest.fixture(params=["geopackage", "postgis"])
def feature_store(request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    """An empty feature store, once per backend."""
    yield from make_store(str(request.param), request)
