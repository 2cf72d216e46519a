"""The start-up schema check agrees with Alembic without importing it."""

from __future__ import annotations

from geoetl.engine.migrate import current_revision, head_revision, shipped_head
from geoetl.platform import Platform


def test_shipped_head_is_alembics_head(platform: Platform) -> None:
    # ensure_schema compares the database with shipped_head(); if a migration file broke
    # the NNNN_ naming, every start would re-run Alembic or skip a needed upgrade.
    assert shipped_head() == head_revision()
    assert current_revision(platform.store.engine) == head_revision()
