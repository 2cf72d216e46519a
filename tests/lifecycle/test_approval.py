"""Approval: a publication waits for an admin; nothing of it is served until approved."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from geoetl.engine.models import JobStatus
from geoetl.errors import NotFound
from geoetl.settings import Settings
from tests.cli.helpers import geoetl
from tests.lifecycle.helpers import (
    DATA,
    TestClient,
    headers,
    no_item,
    platform_of,
    put,
    run,
)

DEM = "/stac/collections/terrain/items/dem"
PREVIEW = "/raster/collections/terrain/items/dem/preview.png"


@pytest.fixture
def approval_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"approval": "required"})


@pytest.fixture
def approving(approval_settings: Settings, make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(approval_settings)


def submit(client: TestClient, workflow: str, name: str, **params: object) -> str:
    platform = platform_of(client)
    job_id, _ = platform.store.submit(
        workflow,
        {"source": put(platform, DATA / name), "access_level": "public", **params},
    )
    assert run(platform, job_id) == JobStatus.awaiting_approval, platform.queries.job(job_id).error
    return job_id


def test_raster_waits_for_approval_then_approve_and_reject(approving: TestClient) -> None:
    client = approving
    platform = platform_of(client)
    admin = headers(platform, "admin", name="the-admin")
    reader = headers(platform, "reader")
    publisher = headers(platform, "publisher")

    job_id = submit(client, "process_raster", "elev.tif", collection_id="terrain", item_id="dem")
    job = client.get(f"/jobs/{job_id}", headers=admin).json()
    assert job["status"] == "awaiting_approval"
    assert {"approve", "reject"} <= {link["rel"] for link in job["links"]}

    # Nothing is served while it waits.
    for h in ({}, reader, admin):
        found = client.get("/stac/search", headers=h)
        assert found.status_code == 200
        assert found.json()["features"] == []
        assert client.get(DEM, headers=h).status_code == 404
        assert client.get(PREVIEW, headers=h).status_code == 404
    assert client.get(DEM, params={"version": 1}).status_code == 404
    assert client.get(DEM, params={"version": 1}, headers=reader).status_code == 404
    draft = client.get(DEM, params={"version": 1}, headers=admin)
    assert draft.status_code == 200, draft.text  # an admin reviews the draft
    assert client.get(PREVIEW, params={"version": 1}, headers=admin).status_code == 200
    assert platform.versions.get("terrain", "dem", 1).status == "draft"

    # Only an admin approves.
    assert client.post(f"/jobs/{job_id}/approve").status_code == 401
    assert client.post(f"/jobs/{job_id}/approve", headers=reader).status_code == 403
    assert client.post(f"/jobs/{job_id}/approve", headers=publisher).status_code == 403
    approved = client.post(f"/jobs/{job_id}/approve", headers=admin, json={"note": "looks fine"})
    assert approved.status_code == 200, approved.text
    assert client.post(f"/jobs/{job_id}/approve", headers=admin).status_code == 409
    assert run(platform, job_id) == JobStatus.succeeded
    assert client.get(DEM).status_code == 200
    assert client.get(DEM).json()["properties"]["version"] == "1"
    assert client.get(PREVIEW).status_code == 200
    assert len(client.get("/stac/search").json()["features"]) == 1

    # A second job, rejected: none of its outputs stay.
    silver = set(platform.objects.list("silver"))
    other = submit(client, "process_raster", "lc.tif", collection_id="terrain", item_id="lc")
    [version] = platform.versions.by_job(other)
    staged = list(version.objects)
    assert staged
    assert all(platform.objects.exists(k) for k in staged)
    assert client.post(f"/jobs/{other}/reject", headers=publisher).status_code == 403
    rejected = client.post(f"/jobs/{other}/reject", headers=admin, json={"note": "wrong file"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "cancelled"
    assert not any(platform.objects.exists(k) for k in staged)
    assert set(platform.objects.list("silver")) == silver
    assert [k for k in platform.objects.list("tmp") if other in k] == []
    assert no_item(platform, "terrain", "lc")
    assert (
        client.get(
            "/stac/collections/terrain/items/lc", params={"version": 1}, headers=admin
        ).status_code
        == 404
    )
    assert platform.versions.get("terrain", "lc", 1).status == "rejected"

    entries = {e.action: e for e in platform.audit.entries(target="terrain")}
    assert entries["approve"].actor == "token:the-admin"
    assert entries["approve"].target == "terrain/dem@v1"
    assert entries["approve"].details["note"] == "looks fine"
    assert entries["reject"].actor == "token:the-admin"
    assert entries["reject"].target == "terrain/lc@v1"
    assert entries["reject"].details["note"] == "wrong file"
    assert entries["publish"].target == "terrain/dem@v1"


def test_vector_waits_and_reject_drops_its_table(
    approving: TestClient, approval_settings: Settings
) -> None:
    client = approving
    platform = platform_of(client)
    admin = headers(platform, "admin")
    job_id = submit(client, "process_vector", "nc.gpkg", collection_id="places", dataset_id="nc")
    [version] = platform.versions.by_job(job_id)
    assert version.status == "draft"
    [fc] = version.feature_collections
    cid = fc["collection_id"]
    assert platform.features.tables("nc")  # staged, not served
    for h in ({}, admin):
        assert client.get(f"/collections/{cid}", headers=h).status_code == 404
        assert client.get(f"/collections/{cid}/items", headers=h).status_code == 404
        listed = client.get("/collections", headers=h).json()["collections"]
        assert cid not in {c["id"] for c in listed}
        assert client.get("/stac/collections/places/items/nc", headers=h).status_code == 404

    done = geoetl(approval_settings, "jobs", "reject", job_id, "--note", "not this one")
    assert done.returncode == 0, done.stdout + done.stderr
    with pytest.raises(NotFound):
        platform.features.tables("nc")
    assert not any(platform.objects.exists(k) for k in version.objects)
    assert platform.versions.get("places", "nc", 1).status == "rejected"
    assert platform.store.job_status(job_id) == JobStatus.cancelled
    [entry] = platform.audit.entries(action="reject")
    assert (entry.actor, entry.target) == ("local", "places/nc@v1")
    assert entry.details["note"] == "not this one"


def test_cancelling_a_job_awaiting_approval_deletes_what_it_staged(approving: TestClient) -> None:
    client = approving
    platform = platform_of(client)
    publisher = headers(platform, "publisher", name="pub")
    job_id = submit(client, "process_raster", "elev.tif", collection_id="terrain", item_id="dem")
    staged = platform.versions.get("terrain", "dem", 1).objects
    assert staged
    assert all(platform.objects.exists(k) for k in staged)

    # Its submitter (here: not the publisher token) or an admin may cancel.
    assert client.post(f"/jobs/{job_id}/cancel", headers=publisher).status_code == 403
    admin = headers(platform, "admin", name="boss")
    cancelled = client.post(f"/jobs/{job_id}/cancel", headers=admin)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"

    assert not any(platform.objects.exists(k) for k in staged)
    assert platform.versions.get("terrain", "dem", 1).status == "discarded"
    assert no_item(platform, "terrain", "dem")
    entries = platform.audit.entries(action="discard", job_id=job_id)
    assert [(e.actor, e.target) for e in entries] == [("token:boss", "terrain/dem@v1")]
    assert entries[0].details is not None
    assert sorted(entries[0].details["deleted"]["objects"]) == sorted(staged)


def test_geoetl_ingest_stops_at_approval_and_approve_publishes(
    approval_settings: Settings,
) -> None:
    ingest = geoetl(
        approval_settings,
        "ingest",
        str(DATA / "elev.tif"),
        "--item-id",
        "dem",
        "--collection",
        "terrain",
        "--access-level",
        "public",
        timeout=120,
    )
    # Waiting for an admin is no failure: the command returns and says what to do.
    assert ingest.returncode == 0, ingest.stderr
    assert "awaiting approval" in ingest.stderr
    assert "geoetl jobs approve" in ingest.stderr
    listed = geoetl(approval_settings, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"awaiting_approval"' in listed.stdout
    versions = geoetl(approval_settings, "versions", "terrain", "dem", "--json")
    assert '"draft"' in versions.stdout
    job_id = versions.stdout.split('"job_id": "')[1].split('"')[0]

    approved = geoetl(approval_settings, "jobs", "approve", job_id, "--note", "ok", "--wait")
    assert approved.returncode == 0, approved.stderr
    versions = geoetl(approval_settings, "versions", "terrain", "dem", "--json")
    assert '"published"' in versions.stdout
    audit = geoetl(approval_settings, "audit", "--json")
    assert '"action": "approve"' in audit.stdout
    assert '"action": "publish"' in audit.stdout
