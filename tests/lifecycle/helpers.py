"""Helpers of the lifecycle tests: samples in bronze, jobs run in-process, the API, checks."""

from __future__ import annotations

import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from geoetl.catalog.models import SearchRequest
from geoetl.engine.models import JobStatus
from geoetl.errors import NotFound
from geoetl.platform import Platform
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DATA = Path(__file__).parents[2] / "examples" / "data"
PARKED = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.awaiting_approval}


def put(platform: Platform, path: Path) -> str:
    """Put a sample in bronze as an upload would; returns its key."""
    key = f"bronze/{sha256_file(path)}/{path.name}"
    platform.objects.put_file(path, key)
    return key


def run(platform: Platform, job_id: str, timeout: float = 120) -> JobStatus:
    """Work on a job in-process until it ends or waits for approval."""
    runner = make_runner(platform, f"lifecycle-{uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if runner.run_once(job_id=job_id):
                continue
            status = platform.store.job_status(job_id)
            if status in PARKED:
                return status
            time.sleep(0.02)
    finally:
        runner.close()
    raise AssertionError(f"job {job_id} did not end within {timeout}s")


def submit_run(
    platform: Platform,
    workflow: str,
    params: dict[str, Any],
    *,
    by: str | None = None,
    expect: JobStatus = JobStatus.succeeded,
) -> str:
    """Submit a job and run it; asserts it reached ``expect``."""
    job_id, _ = platform.store.submit(workflow, params, submitted_by=by)
    status = run(platform, job_id)
    assert status == expect, platform.queries.job(job_id).error
    return job_id


def publish_raster(
    platform: Platform, name: str, *, collection: str, item: str, **extra: Any
) -> str:
    """Publish a raster sample as ``collection/item``; returns the job id."""
    params = {
        "source": put(platform, DATA / name),
        "collection_id": collection,
        "item_id": item,
        "access_level": "public",
        **extra,
    }
    return submit_run(platform, "process_raster", params)


def headers(platform: Platform, role: str, clearance: str = "restricted", name: str = "") -> dict:
    """Headers with a new token of ``role``."""
    secret = platform.tokens.create(name or f"{role}-{uuid.uuid4().hex[:8]}", role, clearance)
    return {"Authorization": f"Bearer {secret}"}


def platform_of(client: TestClient) -> Platform:
    """The platform the app built at startup."""
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform


def current_items(platform: Platform) -> list[dict[str, Any]]:
    """Every item the catalog serves (every collection, every level)."""
    items, _ = platform.catalog.search(SearchRequest(limit=1000))
    return list(items)


def _served_keys(platform: Platform) -> set[tuple[str, str]]:
    """(item, asset key) of every served item: current ones, and published versions."""
    docs = current_items(platform)
    docs += [v.item for v in platform.versions.with_status("published") if v.item]
    keys = set()
    for item in docs:
        for asset in item.get("assets", {}).values():
            key = platform.objects.key_of(str(asset.get("href", "")))
            if key is not None:
                keys.add((f"{item.get('collection')}/{item['id']}", key))
    return keys


def dangling_assets(platform: Platform) -> list[str]:
    """Asset keys of served items that are missing from the object store.

    Read while a worker changes things, so a key counts only if it is still served
    after its object was seen missing (references are read again): unpublishing
    only ever removes references, so it was served all along.
    """
    missing = {ref for ref in _served_keys(platform) if not platform.objects.exists(ref[1])}
    if missing:
        missing &= _served_keys(platform)
    return sorted(f"{item}: {key}" for item, key in missing)


def no_item(platform: Platform, collection: str, item: str) -> bool:
    """Whether the catalog has no such item."""
    try:
        platform.catalog.get_item(collection, item)
    except NotFound:
        return True
    return False
