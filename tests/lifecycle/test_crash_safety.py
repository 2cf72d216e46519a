"""An unpublish killed at each step converges when another worker takes it over.

A real ``geoetl worker`` runs the unpublish job with GEOETL_FAULT_POINT set: it
SIGKILLs itself at that step. A second worker, without the fault point, takes the task
over once the lease runs out. At no moment does a served item point at a missing
object, and afterwards nothing of the unpublished version is left behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoetl.engine.models import JobStatus
from geoetl.errors import NotFound
from geoetl.orphans import sweep_orphans
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.engine.helpers import Workers
from tests.lifecycle.helpers import dangling_assets, no_item, publish_raster

FAULT_POINTS = [
    "unpublish:marked",
    "unpublish:unserved",
    "unpublish:deleted",
    "unpublish:collections",
]


@pytest.fixture
def crash_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"lease_seconds": 2.0, "heartbeat_seconds": 0.5, "orphan_grace_hours": 0.0}
    )


@pytest.fixture
def crash_platform(crash_settings: Settings) -> Iterator[Platform]:
    p = Platform.from_settings(crash_settings)
    yield p
    p.close()


@pytest.mark.parametrize("fault", FAULT_POINTS)
@pytest.mark.parametrize("version", [2, None], ids=["current-version", "every-version"])
def test_killed_unpublish_converges(
    crash_platform: Platform,
    crash_settings: Settings,
    tmp_path: Path,
    fault: str,
    version: int | None,
) -> None:
    """Unpublishing the current version (the catalog falls back to v1 before v2's COG
    goes), or every version (the emptied collection goes too)."""
    platform = crash_platform
    publish_raster(platform, "elev.tif", collection="terrain", item="dem")
    publish_raster(
        platform, "olinda_dem_utm25s.tif", collection="terrain", item="dem", replace=True
    )
    v1 = platform.versions.get("terrain", "dem", 1)
    v2 = platform.versions.get("terrain", "dem", 2)
    assert v2.objects
    gone = v2.objects if version == 2 else v1.objects + v2.objects
    bronze = platform.objects.list_info("bronze")
    params = {"collection_id": "terrain", "item_id": "dem", "dry_run": False}
    if version is not None:
        params["version"] = version
    job_id, _ = platform.store.submit("unpublish", params)

    killed = Workers(crash_settings.model_copy(update={"fault_point": fault}), tmp_path / "a")
    survivor = Workers(crash_settings, tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        victim = killed.start()
        deadline = time.monotonic() + 60
        while victim.poll() is None:
            assert dangling_assets(platform) == []
            assert time.monotonic() < deadline, killed.output()
            time.sleep(0.05)
        assert victim.returncode == -9, killed.output()
        assert f"fault point {fault} reached" in killed.output()
        assert platform.store.job_status(job_id) == JobStatus.running
        assert dangling_assets(platform) == []

        survivor.start()
        deadline = time.monotonic() + 90
        while (status := platform.store.job_status(job_id)) != JobStatus.succeeded:
            assert dangling_assets(platform) == []
            assert status in (JobStatus.queued, JobStatus.running), (
                status,
                platform.queries.job(job_id).error,
                survivor.output(),
            )
            assert time.monotonic() < deadline, survivor.output()
            time.sleep(0.05)
    finally:
        killed.stop()
        survivor.stop()

    assert dangling_assets(platform) == []
    statuses = [v.status for v in platform.versions.history("terrain", "dem")]
    assert not any(platform.objects.exists(k) for k in gone)
    assert platform.objects.list_info("bronze") == bronze
    if version == 2:
        assert statuses == ["published", "unpublished"]
        assert platform.catalog.get_item("terrain", "dem")["properties"]["version"] == "1"
        assert platform.objects.exists(v1.objects[0])
    else:
        assert statuses == ["unpublished", "unpublished"]
        assert no_item(platform, "terrain", "dem")
        with pytest.raises(NotFound):
            platform.catalog.get_collection("terrain")
        assert platform.objects.list("silver") == []
    report = sweep_orphans(platform, dry_run=True)
    assert report.objects == [], report
    assert report.versions_discarded == []
    unpublished = platform.audit.entries(action="unpublish")
    assert [e.target for e in unpublished] == ["terrain/dem@v2" if version == 2 else "terrain/dem"]
    # The report names the objects (a rerun finds them deleted already: size 0).
    assert [o["key"] for o in unpublished[0].details["objects"]] == gone
