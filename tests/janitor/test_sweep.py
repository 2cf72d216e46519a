"""The orphan sweep on a deployment holding every kind of object a publication leaves.

Referenced (never removed): the current version's objects (catalog item and version
row), an older published version's, a legacy item's (no version row, any access
level), a staging version's whose job is active, an active job's tmp/, a version being
unpublished for less than the grace, a draft whose job ended moments ago. Orphans: an
object nothing names, an ended job's tmp/, an abandoned draft's objects, and the
objects of an unpublish stuck for two days.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from geoetl import orphans
from geoetl.errors import NotFound
from geoetl.orphans import sweep_orphans
from geoetl.platform import Platform
from geoetl.versions import Version
from tests.janitor.conftest import (
    HOUR,
    OLD,
    active_job,
    catalogue,
    ended_job,
    load_dataset,
    put,
    version,
)


@dataclass
class World:
    """What the sweep must keep, what it must remove, and the versions involved."""

    kept: set[str] = field(default_factory=set)
    orphans: dict[str, int] = field(default_factory=dict)  # key -> size
    abandoned: Version | None = None
    young_draft: Version | None = None


@pytest.fixture
def world(platform: Platform) -> World:
    w = World()
    objects = platform.objects
    active, ended = active_job(platform), ended_job(platform)

    def keep(key: str) -> str:
        w.kept.add(put(platform, key, hours_ago=OLD))
        return key

    def orphan(key: str, size: int) -> str:
        put(platform, key, size, hours_ago=OLD)
        w.orphans[key] = size
        return key

    current = keep("silver/cogs/c/dem_analysis.tif")
    older = keep("silver/cogs/c/dem_analysis-v1.tif")
    version(platform, "c", "dem", job_id="a" * 64, status="published", objects=[older])
    version(platform, "c", "dem", job_id="b" * 64, status="published", objects=[current])
    catalogue(platform, "c", "dem", {"data": current})
    # Published before versions existed: catalog items only, one with an absolute href,
    # one only restricted readers see; three in one collection (pages of two below).
    for name in ("roads", "rivers", "rails"):
        key = keep(f"silver/vector/legacy/{name}.parquet")
        catalogue(platform, "legacy", name, {"data": f"{objects.url}/{key}"})
    # Written when the store was elsewhere (a home or bucket since moved).
    moved = keep("silver/cogs/moved/old_analysis.tif")
    catalogue(platform, "moved", "old", {"data": f"s3://old-bucket/geoetl/{moved}"})
    secret = keep("silver/cogs/restricted/secret_analysis.tif")
    catalogue(platform, "restricted", "secret", {"data": secret}, level="restricted")
    staging = keep("silver/cogs/c/new_analysis.tif")
    version(platform, "c", "new", job_id=active, status="staging", objects=[staging])
    keep(f"tmp/{active}/new_analysis.tif")
    leaving = keep("silver/cogs/c/leaving_analysis.tif")
    version(platform, "c", "leaving", job_id="c" * 64, status="unpublishing", objects=[leaving])
    just_failed = keep("silver/cogs/c/retry_analysis.tif")
    w.young_draft = version(
        platform, "c", "retry", job_id=ended, status="draft", objects=[just_failed]
    )

    orphan("silver/cogs/c/stray.tif", 1500)
    orphan(f"tmp/{ended}/dem_analysis.tif", 2500)
    dropped = orphan("silver/cogs/c/dropped_analysis.tif", 4000)
    w.abandoned = version(
        platform,
        "c",
        "dropped",
        job_id=ended,
        status="draft",
        objects=[dropped],
        hours_ago=OLD,
    )
    stuck = orphan("silver/cogs/c/stuck_analysis.tif", 800)
    version(
        platform,
        "c",
        "stuck",
        job_id="d" * 64,
        status="unpublishing",
        objects=[stuck],
        hours_ago=OLD,
    )
    return w


def test_dry_run_lists_exactly_the_orphans_and_changes_nothing(
    platform: Platform, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orphans, "PAGE", 2)  # the catalog read in pages of two items
    report = sweep_orphans(platform, dry_run=True)
    assert report.dry_run
    assert {o.key for o in report.objects} == set(world.orphans)
    assert report.bytes == sum(world.orphans.values())
    assert world.abandoned is not None
    assert report.versions_discarded == [world.abandoned.ref]
    assert report.errors == []
    for key in world.kept | set(world.orphans):
        assert platform.objects.exists(key), key
    a = world.abandoned
    assert platform.versions.get(a.collection_id, a.item_id, a.version).status == "draft"

    reasons = {o.key: o.reason for o in report.objects}
    assert reasons["silver/cogs/c/dropped_analysis.tif"] == (
        "version c/dropped@v1 abandoned (job cancelled)"
    )
    assert "cancelled" in next(r for k, r in reasons.items() if k.startswith("tmp/"))
    # Each object says when it was written, in ISO 8601 (the report's JSON).
    listed = json.loads(report.model_dump_json())["objects"]
    for entry in listed:
        age = time.time() - datetime.fromisoformat(entry["modified"]).timestamp()
        assert OLD * HOUR - 60 < age < OLD * HOUR + 60


def test_a_sweep_removes_the_orphans_and_reports_their_bytes(
    platform: Platform, world: World
) -> None:
    report = sweep_orphans(platform, dry_run=False)
    assert not report.dry_run
    assert {o.key for o in report.objects} == set(world.orphans)
    assert report.bytes == sum(world.orphans.values()) == 8800
    assert report.errors == []
    for key in world.orphans:
        assert not platform.objects.exists(key), key
    for key in world.kept:
        assert platform.objects.exists(key), key

    a, y = world.abandoned, world.young_draft
    assert a is not None
    assert y is not None
    assert report.versions_discarded == [a.ref]
    assert platform.versions.get(a.collection_id, a.item_id, a.version).status == "discarded"
    # Its job ended only moments ago: the draft waits out the grace.
    assert platform.versions.get(y.collection_id, y.item_id, y.version).status == "draft"

    again = sweep_orphans(platform, dry_run=False)
    assert (again.objects, again.bytes, again.versions_discarded) == ([], 0, [])


def test_orphans_younger_than_the_grace_are_kept(platform: Platform) -> None:
    put(platform, "silver/cogs/c/fresh.tif", 300)
    put(platform, "tmp/uploads/0123abcd", 200)
    assert sweep_orphans(platform, dry_run=True).objects == []

    later = time.time() + 25 * HOUR  # the default grace is 24 hours
    report = sweep_orphans(platform, dry_run=False, now=later)
    assert [o.key for o in report.objects] == ["silver/cogs/c/fresh.tif", "tmp/uploads/0123abcd"]
    assert report.bytes == 500
    assert platform.objects.list("silver") == platform.objects.list("tmp") == []


def test_an_abandoned_vector_draft_loses_its_objects_and_feature_dataset(
    platform: Platform,
) -> None:
    ended = ended_job(platform)
    parquet = put(platform, "silver/vector/c/roads.parquet", 700, hours_ago=OLD)
    load_dataset(platform, "v_roads_2")
    draft = version(
        platform,
        "c",
        "roads",
        job_id=ended,
        status="draft",
        kind="vector",
        objects=[parquet],
        storage_id="v_roads_2",
        hours_ago=OLD,
    )

    dry = sweep_orphans(platform, dry_run=True)
    assert (dry.versions_discarded, dry.tables_dropped) == ([draft.ref], ["v_roads_2"])
    assert platform.features.tables("v_roads_2") == ["points"]

    report = sweep_orphans(platform, dry_run=False)
    assert [o.key for o in report.objects] == [parquet]
    assert (report.versions_discarded, report.tables_dropped) == ([draft.ref], ["v_roads_2"])
    assert not platform.objects.exists(parquet)
    with pytest.raises(NotFound):
        platform.features.tables("v_roads_2")
    assert platform.versions.get("c", "roads", draft.version).status == "discarded"


def test_a_failed_load_leaves_no_staged_rows_after_the_sweep(platform: Platform) -> None:
    # The job failed between load and publish: its chunks' rows are staged, nothing is
    # published. Its abandoned version takes the staged rows with it.
    load_dataset(platform, "v_rivers_3", publish=False)
    draft = version(
        platform,
        "c",
        "rivers",
        job_id=ended_job(platform),
        status="staging",
        kind="vector",
        objects=[],
        storage_id="v_rivers_3",
        hours_ago=OLD,
    )
    report = sweep_orphans(platform, dry_run=False)
    assert (report.versions_discarded, report.tables_dropped) == ([draft.ref], ["v_rivers_3"])
    assert not platform.features.drop("v_rivers_3")  # nothing left, staged or published


def test_a_feature_dataset_another_version_uses_is_kept(platform: Platform) -> None:
    load_dataset(platform, "v_shared")
    version(
        platform,
        "c",
        "lakes",
        job_id="e" * 64,
        status="published",
        kind="vector",
        objects=[],
        storage_id="v_shared",
    )
    draft = version(
        platform,
        "c",
        "lakes",
        job_id=ended_job(platform),
        status="draft",
        kind="vector",
        objects=[],
        storage_id="v_shared",
        hours_ago=OLD,
    )
    report = sweep_orphans(platform, dry_run=False)
    assert (report.versions_discarded, report.tables_dropped) == ([draft.ref], [])
    assert platform.features.tables("v_shared") == ["points"]


def test_staging_rows_of_active_jobs_are_never_abandoned(platform: Platform) -> None:
    job = active_job(platform)
    key = put(platform, "silver/cogs/c/slow_analysis.tif", hours_ago=OLD)
    staged = put(platform, f"tmp/{job}/slow_analysis.tif", hours_ago=OLD)
    v = version(platform, "c", "slow", job_id=job, status="staging", objects=[key], hours_ago=OLD)
    report = sweep_orphans(platform, dry_run=False, now=time.time() + 30 * 24 * HOUR)
    assert (report.objects, report.versions_discarded) == ([], [])
    assert platform.objects.exists(key)
    assert platform.objects.exists(staged)
    assert platform.versions.get("c", "slow", v.version).status == "staging"

    platform.store.cancel(job)  # now it is abandoned
    report = sweep_orphans(platform, dry_run=False)
    assert {o.key for o in report.objects} == {key, staged}
    assert report.versions_discarded == [v.ref]


def test_a_failed_deletion_is_reported_and_the_sweep_goes_on(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = put(platform, "silver/cogs/c/locked.tif", 100, hours_ago=OLD)
    good = put(platform, "silver/cogs/c/loose.tif", 200, hours_ago=OLD)
    delete = platform.objects.delete

    def failing(key: str) -> bool:
        if key == bad:
            raise PermissionError("access denied")
        return delete(key)

    monkeypatch.setattr(platform.objects, "delete", failing)
    report = sweep_orphans(platform, dry_run=False)
    assert [o.key for o in report.objects] == [good]
    assert report.bytes == 200
    assert report.errors == [f"{bad}: access denied"]
    assert platform.objects.exists(bad)
