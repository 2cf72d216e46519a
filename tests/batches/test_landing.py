"""Landing-zone batches on both backends: manifests picked up once, files checked, jobs run."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from geoetl.engine.models import JobStatus
from geoetl.landing import MANIFESTS, watch_once
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_janitor, make_runner
from tests.cli.helpers import geoetl
from tests.engine.helpers import helper_pids

DATA = Path(__file__).parents[2] / "examples" / "data"


def land(platform: Platform, batch: str, names: list[str]) -> list[dict[str, Any]]:
    """Upload samples under landing/{batch}/ as another team would; their manifest entries."""
    entries = []
    for name in names:
        key = f"landing/{batch}/{name}"
        platform.objects.put_file(DATA / name, key)
        entries.append({"path": key, "sha256": sha256_file(DATA / name)})
    return entries


def commit(platform: Platform, tmp_path: Path, doc: dict[str, Any]) -> None:
    """Write the manifest: the batch is committed."""
    local = tmp_path / f"{doc['batch_id']}.json"
    local.write_text(json.dumps(doc))
    platform.objects.put_file(local, f"{MANIFESTS}/{doc['batch_id']}.json")


def run_all(platform: Platform, job_ids: list[str]) -> list[JobStatus]:
    runner = make_runner(platform, "batch-test")
    try:
        return [runner.run_job(j) for j in job_ids]
    finally:
        runner.close()


def test_a_batch_is_submitted_once_with_one_job_per_dataset(
    platform: Platform, tmp_path: Path
) -> None:
    files = land(platform, "flood-2026", ["elev.tif", "lux.shp", "lux.dbf", "lux.shx", "lux.prj"])
    commit(
        platform,
        tmp_path,
        {
            "batch_id": "flood-2026",
            "uploader": "hydro-team",
            "intent": "ingest",
            "files": files,
            "metadata": {"project": "floods"},
            "access_level": "public",
        },
    )
    # Several watchers at once: the batch is picked up by exactly one of them.
    picked: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda i=i: picked.append(watch_once(platform, f"w{i}")))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(b for p in picked for b in p) == ["flood-2026"]
    assert watch_once(platform, "later") == []  # and never again

    batch = platform.batches.get("flood-2026")
    assert batch.status == "submitted", batch.errors
    by_path = {f.path: f for f in batch.files}
    assert by_path["landing/flood-2026/elev.tif"].kind == "raster"
    assert by_path["landing/flood-2026/lux.shp"].kind == "vector"
    assert {by_path[f"landing/flood-2026/lux.{s}"].kind for s in ("dbf", "shx", "prj")} == {
        "sidecar"
    }
    jobs = [f.job_id for f in batch.files if f.job_id]
    assert len(jobs) == 2
    assert run_all(platform, jobs) == [JobStatus.succeeded, JobStatus.succeeded]
    for job_id in jobs:
        view = platform.queries.job(job_id)
        assert view.submitted_by == "landing:hydro-team"
        assert view.access_level == "public"
    # Lineage keeps the batch.
    rows = [v for job in jobs for v in platform.versions.by_job(job)]
    assert {v.batch_id for v in rows} == {"flood-2026"}
    assert {v.source_sha for v in rows} == {
        sha256_file(DATA / "elev.tif"),
        rows[0].source_sha if rows[0].kind == "vector" else rows[1].source_sha,
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"files": [{"path": "landing/bad/missing.tif"}]}, "does not exist"),
        ({"files": [{"path": "landing/other/elev.tif"}]}, "not under landing/bad/"),
        ({"files": [{"path": "landing/bad/elev.tif", "sha256": "0" * 64}]}, "SHA-256 is"),
        ({"uploader": ""}, "uploader"),
        ({"access_level": "secret"}, "access_level"),
        ({"surprise": 1}, "surprise"),
        ({"batch_id": "other"}, "named bad.json"),
    ],
)
def test_a_bad_manifest_submits_nothing_and_says_why(
    platform: Platform, tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    land(platform, "bad", ["elev.tif"])
    platform.objects.put_file(DATA / "elev.tif", "landing/other/elev.tif")
    doc = {
        "batch_id": "bad",
        "uploader": "someone",
        "files": [{"path": "landing/bad/elev.tif"}],
        **change,
    }
    local = tmp_path / "bad.json"
    local.write_text(json.dumps(doc))
    platform.objects.put_file(local, f"{MANIFESTS}/bad.json")
    assert watch_once(platform, "w") == ["bad"]
    batch = platform.batches.get("bad")
    assert batch.status == "invalid"
    assert batch.errors
    assert any(expected in e for e in batch.errors), batch.errors
    assert not any(f.job_id for f in batch.files)
    assert platform.queries.jobs().total == 0


def test_a_manifest_that_is_not_json_is_reported(platform: Platform, tmp_path: Path) -> None:
    local = tmp_path / "x.json"
    local.write_text("{not json")
    platform.objects.put_file(local, f"{MANIFESTS}/x.json")
    assert watch_once(platform, "w") == ["x"]
    batch = platform.batches.get("x")
    assert batch.status == "invalid"
    assert batch.errors


def test_the_janitor_watches_the_landing_zone(platform: Platform, tmp_path: Path) -> None:
    files = land(platform, "via-janitor", ["nc.gpkg"])
    commit(platform, tmp_path, {"batch_id": "via-janitor", "uploader": "u", "files": files})
    make_janitor(platform).run_once()
    batch = platform.batches.get("via-janitor")
    assert batch.status == "submitted"
    assert [f.kind for f in batch.files] == ["vector"]


def test_geoetl_batch_submit_a_folder_and_show_it(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    for name in ("elev.tif", "nc.gpkg"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    done = geoetl(
        settings, "batch", "submit", str(folder), "--batch-id", "drop1", "--access-level", "public"
    )
    assert done.returncode == 0, done.stderr
    assert "batch drop1: submitted (2 succeeded)" in done.stdout
    shown = geoetl(settings, "batch", "show", "drop1", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert [f["status"] for f in view["files"]] == ["succeeded", "succeeded"]
    assert view["counts"] == {"succeeded": 2}
    # Job helpers, if any ran, were forked once for the batch, before its first job.
    platform = Platform.from_settings(settings)
    try:
        helpers = set().union(*(helper_pids(platform, f["job_id"]) for f in view["files"]))
    finally:
        platform.close()
    assert len(helpers) <= 1, helpers
    missing = geoetl(settings, "batch", "show", "nope")
    assert missing.returncode != 0
    assert "no batch 'nope'" in missing.stderr
