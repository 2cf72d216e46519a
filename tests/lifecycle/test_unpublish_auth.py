"""Who may unpublish through the API: admins, and the publisher of the dataset."""

from __future__ import annotations

from geoetl.engine.models import JobStatus
from tests.lifecycle.helpers import DATA, TestClient, headers, platform_of, run


def test_only_its_publisher_or_an_admin_may_unpublish(client: TestClient) -> None:
    platform = platform_of(client)
    owner = headers(platform, "publisher", "public", name="owner")
    stranger = headers(platform, "publisher", "restricted", name="stranger")
    reader = headers(platform, "reader", "restricted")
    admin = headers(platform, "admin")

    uploaded = client.post(
        "/ingest",
        params={
            "filename": "elev.tif",
            "collection_id": "terrain",
            "item_id": "dem",
            "access_level": "public",
        },
        content=(DATA / "elev.tif").read_bytes(),
        headers={**owner, "content-type": "application/octet-stream"},
    )
    assert uploaded.status_code == 202, uploaded.text
    assert run(platform, uploaded.json()["job_id"]) == JobStatus.succeeded

    body = {"collection_id": "terrain", "item_id": "dem", "dry_run": False}
    assert client.post("/jobs/unpublish", json=body).status_code == 401
    assert client.post("/jobs/unpublish", json=body, headers=reader).status_code == 403
    refused = client.post("/jobs/unpublish", json=body, headers=stranger)
    assert refused.status_code == 403, refused.text
    assert platform.queries.jobs(workflow="unpublish").items == []

    by_admin = client.post("/jobs/unpublish", json={**body, "dry_run": True}, headers=admin)
    assert by_admin.status_code == 202, by_admin.text
    assert run(platform, by_admin.json()["job_id"]) == JobStatus.succeeded
    assert client.get("/stac/collections/terrain/items/dem").status_code == 200  # dry run

    mine = client.post("/jobs/unpublish", json=body, headers=owner)
    assert mine.status_code == 202, mine.text
    assert mine.json()["job_id"] != by_admin.json()["job_id"]
    assert run(platform, mine.json()["job_id"]) == JobStatus.succeeded
    assert client.get("/stac/collections/terrain/items/dem").status_code == 404
    [entry] = platform.audit.entries(action="unpublish")
    assert entry.actor == "token:owner"
