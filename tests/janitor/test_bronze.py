"""Opt-in: bronze sources no job and no live version names, past the retention, go too."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from geoetl.errors import InputError
from geoetl.orphans import sweep_orphans
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.janitor.conftest import HOUR, put, version, with_settings

RETENTION_DAYS = 30
OLD = (RETENTION_DAYS + 1) * 24  # hours


@pytest.fixture
def kept_platform(settings: Settings) -> Iterator[Platform]:
    """A platform whose bronze sources are kept 30 days once no job uses them."""
    p = Platform.from_settings(with_settings(settings, bronze_retention_days=RETENTION_DAYS))
    yield p
    p.close()


def test_only_unused_sources_past_the_retention_go_and_only_when_asked(
    kept_platform: Platform,
) -> None:
    p = kept_platform
    # A raster a cancelled job ingested: a job names it, whatever its state.
    raster = put(p, "bronze/aaa/dem.tif", hours_ago=OLD)
    job, _ = p.store.submit("process_raster", {"source": raster})
    p.store.cancel(job)
    # A loose shapefile: the job names the .shp, its sidecars share the folder.
    shapefile = [
        put(p, f"bronze/bbb/roads.{ext}", hours_ago=OLD) for ext in ("shp", "dbf", "shx", "prj")
    ]
    p.store.submit("process_vector", {"source": shapefile[0]})
    # Named only by a live version (its job row may be gone).
    versioned = put(p, "bronze/ccc/lakes.gpkg", hours_ago=OLD)
    version(p, "c", "lakes", job_id="f" * 64, status="published", objects=[], source_key=versioned)
    # Named by nobody: one past the retention, one within it.
    unused = put(p, "bronze/ddd/unused.tif", 1234, hours_ago=OLD)
    recent = put(p, "bronze/eee/recent.tif", hours_ago=(RETENTION_DAYS - 1) * 24)

    assert p.queries.param_values("source") == {raster, shapefile[0]}
    assert sweep_orphans(p, dry_run=False).objects == []  # not asked: bronze untouched

    dry = sweep_orphans(p, dry_run=True, include_bronze=True)
    assert [(o.key, o.size) for o in dry.objects] == [(unused, 1234)]
    assert "30 days" in dry.objects[0].reason
    report = sweep_orphans(p, dry_run=False, include_bronze=True)
    assert [o.key for o in report.objects] == [unused]
    assert report.bytes == 1234
    for key in [raster, *shapefile, versioned, recent]:
        assert p.objects.exists(key), key
    assert not p.objects.exists(unused)

    # Past the retention (counted from now) the recent one goes too.
    later = time.time() + 2 * 24 * HOUR
    assert [
        o.key for o in sweep_orphans(p, dry_run=True, include_bronze=True, now=later).objects
    ] == [recent]


def test_bronze_needs_a_retention(platform: Platform) -> None:
    assert platform.settings.bronze_retention_days is None
    with pytest.raises(InputError, match="GEOETL_BRONZE_RETENTION_DAYS"):
        sweep_orphans(platform, dry_run=True, include_bronze=True)
