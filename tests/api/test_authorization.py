"""Who may do what through the HTTP API: roles, clearances, hidden jobs, overwrites.

In-process (TestClient) on SQLite and PostgreSQL; the live-server probes are in
tests/security.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.workers import make_runner
from tests.api.conftest import platform_of, token

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DATA = Path(__file__).parents[2] / "examples" / "data"


def upload(
    client: TestClient, path: Path, headers: dict[str, str], name: str | None = None, **params: Any
) -> Any:
    return client.post(
        "/ingest",
        params={"filename": name or path.name, **params},
        content=path.read_bytes(),
        headers=headers,
    )


def run(platform: Platform, job_id: str) -> JobStatus:
    runner = make_runner(platform, "authz-test")
    try:
        return runner.run_job(job_id)
    finally:
        runner.close()


def files_under(platform: Platform, prefix: str) -> list[str]:
    return sorted(platform.objects.list(prefix)) if platform.objects.exists(prefix) else []


def test_writes_need_a_token_with_the_right_role(anonymous: TestClient) -> None:
    reader = token(anonymous, "reader", "reader", "restricted")
    refused = anonymous.post("/jobs/hello", json={"name": "x"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.post("/jobs/hello", json={}, headers=reader).status_code == 403
    assert upload(anonymous, DATA / "elev.tif", {}).status_code == 401
    assert upload(anonymous, DATA / "elev.tif", reader).status_code == 403
    assert anonymous.get("/auth/tokens", headers=reader).status_code == 403
    assert anonymous.get("/jobs").json()["total"] == 0
    assert files_under(platform_of(anonymous), "bronze") == []


@pytest.mark.parametrize(
    "header", ["Bearer geoetl_nope", "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer a.b.c"]
)
def test_bad_credentials_are_401_even_on_reads(anonymous: TestClient, header: str) -> None:
    response = anonymous.get("/stac/collections", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthorized"


def test_publishers_publish_up_to_their_clearance_and_only_what_they_uploaded(
    client: TestClient, anonymous: TestClient
) -> None:
    public = token(client, "pub", "publisher", "public")
    above = upload(anonymous, DATA / "elev.tif", public, access_level="ouo")
    assert above.status_code == 403, above.text
    assert "access_level" in above.json()["detail"]
    assert files_under(platform_of(client), "bronze") == []  # refused before the upload

    # The admin's file, in bronze: another publisher may not re-publish it as public.
    mine = upload(client, DATA / "lc.tif", {}, access_level="ouo")
    assert mine.status_code == 202, mine.text
    source = mine.json()["params"]["source"]
    steal = anonymous.post(
        "/jobs/process_raster",
        json={"source": source, "access_level": "public", "item_id": "stolen"},
        headers=public,
    )
    assert steal.status_code == 403
    assert "did not upload" in steal.json()["detail"]

    # Hidden in a list of sources (a raster collection), it is refused just the same.
    own = upload(anonymous, DATA / "elev.tif", public, access_level="public", name="own.tif")
    assert own.status_code == 202, own.text
    steal_in_list = anonymous.post(
        "/jobs/process_raster_collection",
        json={
            "sources": [own.json()["params"]["source"], source],
            "collection_id": "mine",
            "access_level": "public",
        },
        headers=public,
    )
    assert steal_in_list.status_code == 403
    assert source in steal_in_list.json()["detail"]

    ok = upload(anonymous, DATA / "elev.tif", public, access_level="public")
    assert ok.status_code == 202, ok.text
    assert ok.json()["submitted_by"] == "token:pub"
    assert ok.json()["access_level"] == "public"


def test_jobs_are_hidden_above_the_callers_level(client: TestClient, anonymous: TestClient) -> None:
    secret = upload(client, DATA / "lc.tif", {}, access_level="ouo").json()
    public = upload(client, DATA / "elev.tif", {}, access_level="public").json()
    listed = anonymous.get("/jobs").json()
    assert [j["job_id"] for j in listed["items"]] == [public["job_id"]]
    assert listed["total"] == 1
    for path in ("", "/tasks", "/events"):
        assert anonymous.get(f"/jobs/{secret['job_id']}{path}").status_code == 404
    ouo_reader = token(client, "r-ouo", "reader", "ouo")
    assert anonymous.get(f"/jobs/{secret['job_id']}", headers=ouo_reader).status_code == 200


def test_only_the_submitter_or_an_admin_steers_a_job(
    client: TestClient, anonymous: TestClient
) -> None:
    alice = token(client, "alice", "publisher", "ouo")
    bob = token(client, "bob", "publisher", "ouo")
    job = anonymous.post("/jobs/fan_out_demo", json={"n": 2}, headers=alice).json()
    assert job["submitted_by"] == "token:alice"
    # Who submitted a job is for that submitter and admins only.
    assert anonymous.get(f"/jobs/{job['job_id']}", headers=bob).json()["submitted_by"] is None
    assert anonymous.get("/jobs").json()["items"][0]["submitted_by"] is None
    assert client.get(f"/jobs/{job['job_id']}").json()["submitted_by"] == "token:alice"
    for action in ("cancel", "resubmit"):
        refused = anonymous.post(f"/jobs/{job['job_id']}/{action}", headers=bob)
        assert refused.status_code == 403, refused.text
        assert anonymous.post(f"/jobs/{job['job_id']}/{action}").status_code == 401
    assert anonymous.post(f"/jobs/{job['job_id']}/cancel", headers=alice).status_code == 200
    again = client.post(f"/jobs/{job['job_id']}/resubmit")
    assert again.status_code == 202


def test_replacing_an_item_needs_replace_and_ownership(
    client: TestClient, anonymous: TestClient, tmp_path: Path
) -> None:
    platform = platform_of(client)
    alice = token(client, "alice", "publisher", "public")
    bob = token(client, "bob", "publisher", "public")
    first = upload(anonymous, DATA / "elev.tif", alice, item_id="dem", access_level="public")
    assert first.status_code == 202, first.text
    assert run(platform, first.json()["job_id"]) == JobStatus.succeeded

    other = DATA / "olinda_dem_utm25s.tif"
    clash = upload(anonymous, other, bob, item_id="dem", access_level="public")
    assert clash.status_code == 409, clash.text
    assert "replace=true" in clash.json()["detail"]
    assert not any("olinda" in k for k in files_under(platform, "bronze"))  # nothing kept
    not_owner = upload(anonymous, other, bob, item_id="dem", access_level="public", replace=True)
    assert not_owner.status_code == 403, not_owner.text
    owner = upload(anonymous, other, alice, item_id="dem", access_level="public", replace=True)
    assert owner.status_code == 202, owner.text
    assert run(platform, owner.json()["job_id"]) == JobStatus.succeeded
    item = anonymous.get("/stac/collections/system-rasters/items/dem").json()
    assert item["properties"]["geoetl:source"]["key"].endswith("olinda_dem_utm25s.tif")


def test_names_that_slug_alike_get_distinct_ids(client: TestClient, tmp_path: Path) -> None:
    platform = platform_of(client)
    ids = []
    for name, source in (("Río.tif", "elev.tif"), ("Rio.tif", "olinda_dem_utm25s.tif")):
        copy = tmp_path / name
        shutil.copy(DATA / source, copy)
        response = upload(client, copy, {}, access_level="public")
        assert response.status_code == 202, response.text
        job = response.json()
        assert run(platform, job["job_id"]) == JobStatus.succeeded
        ids.append(platform.queries.job(job["job_id"]).result["item_id"])
    assert ids[0] == "rio"
    assert ids[1].startswith("rio_")
    assert ids[1] != ids[0]
    for item_id in ids:
        assert client.get(f"/stac/collections/system-rasters/items/{item_id}").status_code == 200


def test_extents_cover_only_what_the_caller_may_see(
    client: TestClient, anonymous: TestClient
) -> None:
    platform = platform_of(client)
    for name, level in (("elev.tif", "public"), ("olinda_dem_utm25s.tif", "ouo")):
        job = upload(client, DATA / name, {}, access_level=level, collection_id="mixed").json()
        assert run(platform, job["job_id"]) == JobStatus.succeeded
    platform.catalog.ensure_collection("mixed", "public")
    seen_by_admin = client.get("/stac/collections/mixed").json()["extent"]["spatial"]["bbox"][0]
    seen_by_public = anonymous.get("/stac/collections/mixed").json()["extent"]["spatial"]["bbox"]
    public_item = anonymous.get("/stac/collections/mixed/items/elev").json()
    assert seen_by_public == [public_item["bbox"]]
    assert seen_by_admin != seen_by_public[0]
    assert anonymous.get("/stac/collections/mixed/items/olinda_dem_utm25s").status_code == 404


def test_active_jobs_per_caller_are_capped(anonymous: TestClient) -> None:
    platform = platform_of(anonymous)
    platform.settings.max_active_jobs = 2
    pub = token(anonymous, "busy", "publisher", "public")
    for seed in range(2):
        response = anonymous.post("/jobs/fan_out_demo", json={"seed": seed}, headers=pub)
        assert response.status_code == 202
    refused = anonymous.post("/jobs/fan_out_demo", json={"seed": 9}, headers=pub)
    assert refused.status_code == 429
    assert "GEOETL_MAX_ACTIVE_JOBS" in refused.json()["detail"]


def test_demo_workflows_are_off_unless_enabled(anonymous: TestClient) -> None:
    platform = platform_of(anonymous)
    platform.settings.demo_workflows = False
    admin = token(anonymous, "root", "admin", "restricted")
    response = anonymous.post("/jobs/fan_out_demo", json={"n": 1_000_000}, headers=admin)
    assert response.status_code == 404
    offered = [
        "process_raster",
        "process_raster_collection",
        "process_raster_tiles",
        "process_raster_times",
        "process_vector",
        "unpublish",
    ]
    assert response.json()["detail"].endswith("known: " + ", ".join(offered))
    names = {w["name"] for w in anonymous.get("/workflows").json()}
    assert names == set(offered)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/jobs", {"offset": 10**20}),
        ("/jobs", {"limit": 10**20}),
        ("/collections/x/items/100000000000000000000", {}),
        ("/stac/search", {"token": "eyJvZmZzZXQiOiAxMDAwMDAwMDAwMDAwMDAwMDAwMDB9"}),
        ("/stac/search", {"token": "%%%"}),
        ("/stac/search", {"sortby": ",".join(f"p{i}" for i in range(3000))}),
        ("/stac/search", {"filter": "(" * 1000 + "a=1" + ")" * 1000}),
        ("/stac/search", {"filter": " OR ".join(f"a={i}" for i in range(1000))}),
        ("/stac/search", {"filter": "a=1", "filter-lang": "cql2-json"}),
        ("/stac/search", {"fields": ",".join(f"f{i}" for i in range(500))}),
        ("/stac/search", {"ids": "a\x00b"}),
        ("/jobs/abc%00def", {}),
        ("/collections/a%0d%0aSet-Cookie:x/items", {}),
    ],
)
def test_out_of_range_and_oversized_requests_are_400(
    anonymous: TestClient, path: str, params: dict[str, Any]
) -> None:
    response = anonymous.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]


def test_deep_json_bodies_are_400_and_big_ones_413(anonymous: TestClient) -> None:
    deep = anonymous.post("/stac/search", content=b'{"filter": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert deep.status_code == 400
    big = anonymous.post("/stac/search", content=b'{"ids": ["' + b"x" * 2_000_000 + b'"]}')
    assert big.status_code == 413
    assert anonymous.get("/livez").status_code == 200


def test_a_500_shows_an_error_id_and_nothing_else(anonymous: TestClient) -> None:
    platform = platform_of(anonymous)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError('SELECT secret FROM "/srv/geoetl/db" failed')

    platform.catalog.list_collections = broken  # type: ignore[method-assign]
    # Same app and platform (no second lifespan), answering instead of raising.
    response = TestClient(anonymous.app, raise_server_exceptions=False).get("/stac/collections")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "InternalError"
    assert body["error_id"] in body["detail"]
    assert "SELECT" not in response.text
    assert "/srv" not in response.text
    assert "RuntimeError" not in response.text
