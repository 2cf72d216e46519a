"""The sweep on S3 (moto): one listing gives every object's size and time."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoetl.orphans import sweep_orphans
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.janitor.conftest import HOUR, catalogue, put, version
from tests.servers import S3Server


@pytest.fixture
def s3_platform(s3_server: S3Server, home: Path) -> Iterator[Platform]:
    """SQLite with its objects on S3, under a prefix of its own."""
    url = f"{s3_server.storage_url}/{uuid.uuid4().hex[:10]}"
    p = Platform.from_settings(Settings(home=home, storage_url=url, **s3_server.settings()))
    yield p
    p.close()


def test_the_sweep_on_s3(s3_platform: Platform) -> None:
    p = s3_platform
    start = time.time()
    published = put(p, "silver/cogs/c/dem_analysis.tif", 3000)
    version(p, "c", "dem", job_id="a" * 64, status="published", objects=[published])
    legacy = put(p, "silver/vector/c/roads.parquet", 2000)
    catalogue(p, "c", "roads", {"data": f"{p.objects.url}/{legacy}"})
    stray = put(p, "silver/cogs/c/stray.tif", 1000)
    staged = put(p, f"tmp/{'b' * 64}/part.tif", 500)
    put(p, "bronze/abc/source.tif", 10)

    listed = p.objects.list_info("silver")
    assert [(i.key, i.size) for i in listed] == [
        ("silver/cogs/c/dem_analysis.tif", 3000),
        ("silver/cogs/c/stray.tif", 1000),
        ("silver/vector/c/roads.parquet", 2000),
    ]
    assert all(start - 60 < i.modified < time.time() + 60 for i in listed)
    assert p.objects.list_info("silver/cogs/c/stray.tif") == [listed[1]]
    assert p.objects.list_info("silver/none") == []

    assert sweep_orphans(p, dry_run=True).objects == []  # all younger than the grace
    later = time.time() + 25 * HOUR
    report = sweep_orphans(p, dry_run=False, now=later)
    assert [o.key for o in report.objects] == [stray, staged]
    assert report.bytes == 1500
    assert report.errors == []
    assert p.objects.list("silver") == [published, legacy]
    assert p.objects.list("tmp") == []
    assert p.objects.exists("bronze/abc/source.tif")
