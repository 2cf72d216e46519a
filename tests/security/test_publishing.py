"""Publishing rules: clearance, upload ownership, replace, names, limits.

A publisher publishes at or below its clearance, only sources it uploaded itself (an
admin any), never onto someone else's id without ``replace`` (409) and never replaces
what another publisher owns (403); file names are checked before anything is stored;
two files never silently replace each other; uploads and active jobs are bounded.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.conftest import (
    UPLOAD_MAX_MB,
    Api,
    Harness,
    LoopbackListener,
    assert_alive,
    bronze_silver_snapshot,
    geojson_bytes,
    item_row,
    nothing_stored,
    quiesce,
    raster_bytes,
    uniq,
    workers_paused,
)


def publish_raster(
    api: Api, tmp: Path, collection: str, item: str, *, level: str = "public", **extra: Any
) -> httpx.Response:
    """Upload a fresh unique raster onto ``collection/item``."""
    return api.upload(
        f"{item}.tif",
        raster_bytes(tmp),
        collection_id=collection,
        item_id=item,
        access_level=level,
        **extra,
    )


def published(api: Api, response: httpx.Response) -> dict[str, Any]:
    """The finished job of an accepted upload or submission; it must have succeeded."""
    assert response.status_code == 202, response.text
    view = api.wait(response.json()["job_id"])
    assert view["status"] == "succeeded", view["error"]
    return view


def active_jobs_of(h: Harness, token_name: str) -> int:
    """Queued or running jobs a token submitted (read from the database)."""
    db = h.home / "geoetl.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        row = c.execute(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') "
            "AND submitted_by LIKE ?",
            (f"%{token_name}",),
        ).fetchone()
    return int(row[0])


def item_source(h: Harness, collection: str, item: str) -> str:
    row = item_row(h.home, collection, item)
    assert row is not None, f"no item {collection}/{item}"
    source: str = json.loads(row[1])["properties"]["geoetl:source"]["key"]
    return source


# -- clearance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "deployment", "level"),
    [
        ("sec-pub-public", "pub", "ouo"),
        ("sec-pub-public", "ouo", "restricted"),
        ("sec-pub-ouo", "ouo", "restricted"),
    ],
)
def test_upload_above_clearance_is_403(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, who: str, deployment: str, level: str
) -> None:
    api = harness.api(deployment, tokens[who])
    with nothing_stored(harness.home):
        response = publish_raster(api, tmp_path, "sec-above", uniq("above"), level=level)
    assert response.status_code == 403, response.text
    assert_alive(harness.urls[deployment])


def test_submit_above_clearance_is_403(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    api = harness.api("ouo", tokens["sec-pub-public"])
    own = published(api, publish_raster(api, tmp_path, "sec-above", uniq("own")))
    with nothing_stored(harness.home):
        response = api.post(
            "/jobs/process_raster",
            json={
                "source": own["params"]["source"],
                "collection_id": "sec-above",
                "item_id": uniq("above"),
                "access_level": "ouo",
            },
        )
    assert response.status_code == 403, response.text
    assert_alive(harness.ouo)


# -- whose source -----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["cli-seeded-raster", "cli-seeded-vector", "other-publisher"])
def test_publishing_a_source_someone_else_uploaded_is_403(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, case: str
) -> None:
    thief = harness.api("ouo", tokens["sec-pub-public"])
    if case == "cli-seeded-raster":
        workflow, source = "process_raster", harness.seeds["elev_public"].source
        extra: dict[str, Any] = {"collection_id": "sec-stolen", "item_id": uniq("stolen")}
    elif case == "cli-seeded-vector":
        workflow, source = "process_vector", harness.seeds["nc_public"].source
        extra = {"dataset_id": uniq("stolen")}
    else:
        owner = harness.api("ouo", tokens["sec-pub-ouo"])
        view = published(owner, publish_raster(owner, tmp_path, "sec-owned", uniq("owned")))
        workflow, source = "process_raster", view["params"]["source"]
        extra = {"collection_id": "sec-stolen", "item_id": uniq("stolen")}
    with nothing_stored(harness.home):
        response = thief.post(
            f"/jobs/{workflow}", json={"source": source, "access_level": "public", **extra}
        )
    assert response.status_code == 403, response.text
    assert_alive(harness.ouo)


def test_an_admin_may_publish_any_source(harness: Harness, tokens: dict[str, str]) -> None:
    admin = harness.api("ouo", tokens["sec-admin"])
    response = admin.post(
        "/jobs/process_raster",
        json={
            "source": harness.seeds["elev_public"].source,
            "collection_id": "sec-admin-made",
            "item_id": uniq("admin"),
            "access_level": "public",
        },
    )
    published(admin, response)
    assert_alive(harness.ouo)


@pytest.mark.parametrize(
    "source",
    [
        "bronze/../geoetl.db",
        "bronze/%2e%2e/%2e%2e/geoetl.db",
        "bronze/{sha}/../../../geoetl.db",
        "/etc/passwd",
        "file:///etc/passwd",
        "/vsicurl/{listener}/x.tif",
        "bronze//vsicurl/{listener}/x.tif",
        "bronze/{sha}/../../../../outside/secret.tif",
    ],
)
def test_source_keys_that_escape_bronze_are_refused(
    harness: Harness, tokens: dict[str, str], listener: LoopbackListener, source: str
) -> None:
    sha = harness.seeds["elev_public"].source.split("/")[1]
    source = source.format(sha=sha, listener=listener.url)
    api = harness.api("ouo", tokens["sec-pub-public"])
    with nothing_stored(harness.home):
        response = api.post(
            "/jobs/process_raster",
            json={"source": source, "collection_id": "sec-escape", "access_level": "public"},
        )
    assert response.status_code in (400, 403, 404, 422), response.text
    assert not listener.hits, listener.hits
    assert_alive(harness.ouo)


# -- replace ----------------------------------------------------------------------------


def test_overwrite_without_replace_is_409(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    owner = harness.api("ouo", tokens["sec-pub-ouo"])
    item = uniq("owned")
    first = published(owner, publish_raster(owner, tmp_path, "sec-owned", item))
    with nothing_stored(harness.home):
        again = publish_raster(owner, tmp_path, "sec-owned", item)
    assert again.status_code == 409, again.text
    assert item in again.json()["detail"]
    assert item_source(harness, "sec-owned", item) == first["params"]["source"]
    assert_alive(harness.ouo)


def test_overwrite_a_dataset_without_replace_is_409(
    harness: Harness, tokens: dict[str, str]
) -> None:
    owner = harness.api("ouo", tokens["sec-pub-ouo"])
    dataset = uniq("owned")
    published(
        owner, owner.upload("a.geojson", geojson_bytes(), dataset_id=dataset, access_level="public")
    )
    with nothing_stored(harness.home):
        again = owner.upload(
            "b.geojson", geojson_bytes(), dataset_id=dataset, access_level="public"
        )
    assert again.status_code == 409, again.text
    assert dataset in again.json()["detail"]
    assert_alive(harness.ouo)


def test_replace_by_the_owner_is_accepted(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    owner = harness.api("ouo", tokens["sec-pub-ouo"])
    item = uniq("owned")
    published(owner, publish_raster(owner, tmp_path, "sec-owned", item))
    second = published(owner, publish_raster(owner, tmp_path, "sec-owned", item, replace="true"))
    assert item_source(harness, "sec-owned", item) == second["params"]["source"]
    assert_alive(harness.ouo)


def test_replace_by_another_publisher_is_403(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    owner = harness.api("ouo", tokens["sec-pub-ouo"])
    other = harness.api("ouo", tokens["sec-pub-public"])
    item = uniq("owned")
    first = published(owner, publish_raster(owner, tmp_path, "sec-owned", item))
    with nothing_stored(harness.home):
        response = publish_raster(other, tmp_path, "sec-owned", item, replace="true")
    assert response.status_code == 403, response.text
    assert item_source(harness, "sec-owned", item) == first["params"]["source"]
    assert_alive(harness.ouo)


def test_replace_by_an_admin_is_accepted(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    owner = harness.api("ouo", tokens["sec-pub-ouo"])
    admin = harness.api("ouo", tokens["sec-admin"])
    item = uniq("owned")
    published(owner, publish_raster(owner, tmp_path, "sec-owned", item))
    second = published(admin, publish_raster(admin, tmp_path, "sec-owned", item, replace="true"))
    assert item_source(harness, "sec-owned", item) == second["params"]["source"]
    assert_alive(harness.ouo)


@pytest.mark.parametrize("seed", ["lc_ouo", "olinda_restricted"])
def test_publishing_onto_a_hidden_item_neither_replaces_nor_reveals_it(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, seed: str
) -> None:
    hidden = harness.seeds[seed]
    api = harness.api("pub", tokens["sec-pub-public"])
    with nothing_stored(harness.home):
        response = publish_raster(
            api, tmp_path, hidden.collection, hidden.item, replace="true", level="public"
        )
    assert response.status_code in (403, 404, 409), response.text
    # Refusing at all says the id is taken; what is there (its job, its file) stays hidden.
    for secret in (hidden.job_id, hidden.source.split("/")[1], hidden.source.split("/")[2]):
        assert secret not in response.text
    assert item_source(harness, hidden.collection, hidden.item) == hidden.source
    assert_alive(harness.pub)


# -- other callers' jobs -----------------------------------------------------------------


@pytest.mark.parametrize("action", ["cancel", "resubmit"])
def test_steering_another_callers_job_is_403(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, action: str
) -> None:
    owner = harness.api("ouo", tokens["sec-pub-ouo"])
    view = published(owner, publish_raster(owner, tmp_path, "sec-owned", uniq("owned")))
    other = harness.api("ouo", tokens["sec-pub-public"])
    with nothing_stored(harness.home):
        response = other.post(f"/jobs/{view['job_id']}/{action}")
    assert response.status_code == 403, response.text
    assert owner.job(view["job_id"])["status"] == "succeeded"
    # The owner and an admin pass the check: cancelling a finished job is a conflict, not a refusal.
    for who in ("sec-pub-ouo", "sec-admin"):
        again = harness.api("ouo", tokens[who]).post(f"/jobs/{view['job_id']}/cancel")
        assert again.status_code == 409, f"{who}: {again.text}"
    assert_alive(harness.ouo)


@pytest.mark.parametrize("action", ["cancel", "resubmit"])
def test_steering_a_hidden_job_is_404(
    harness: Harness, tokens: dict[str, str], action: str
) -> None:
    hidden = harness.seeds["lc_ouo"]
    for who in ("sec-pub-public", "sec-admin"):
        with nothing_stored(harness.home):
            response = harness.api("pub", tokens[who]).post(f"/jobs/{hidden.job_id}/{action}")
        assert response.status_code == 404, f"{who}: {response.text}"
    assert_alive(harness.pub)


# -- names ------------------------------------------------------------------------------

HOSTILE_NAMES = {
    "nul": "a\x00b.tif",
    "bell": "a\x07b.tif",
    "newline": "a\nb.tif",
    "carriage-return": "a\rb.tif",
    "escape": "a\x1b[31mb.tif",
    "del": "a\x7fb.tif",
    "bidi-rlo": "evil\u202egpj.tif",
    "bidi-rlm": "a\u200fb.tif",
    "bidi-lri": "\u2066a.tif",
    "dotdot-slash": "../x.tif",
    "deep-dotdot": "../../../../outside/x.tif",
    "slash": "a/b.tif",
    "absolute": "/etc/passwd",
    "backslash": "..\\x.tif",
    "dotdot": "..",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_file_names_are_400(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, case: str
) -> None:
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_stored(harness.home):
        response = api.upload(HOSTILE_NAMES[case], raster_bytes(tmp_path), access_level="public")
    assert response.status_code == 400, response.text
    assert not list(harness.outside.rglob("x.tif"))
    assert_alive(harness.ouo)


@pytest.mark.parametrize(
    ("first", "second"),
    [("Río.tif", "Rio.tif"), ("???.tif", "***.tif"), ("Río.geojson", "Rio.geojson")],
)
def test_names_that_slug_alike_get_distinct_ids(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, first: str, second: str
) -> None:
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    collection = uniq("sec-slug").replace("_", "-")
    views = []
    for name in (first, second):
        body = raster_bytes(tmp_path) if name.endswith(".tif") else geojson_bytes()
        response = api.upload(name, body, collection_id=collection, access_level="public")
        views.append(published(api, response))
    ids = [v["result"].get("item_id") or v["result"].get("dataset_id") for v in views]
    assert all(ids), ids
    assert ids[0] != ids[1], ids
    for view, ident in zip(views, ids, strict=True):
        if view["workflow"] == "process_raster":
            assert item_source(harness, collection, ident) == view["params"]["source"]
            got = api.get(f"/stac/collections/{collection}/items/{ident}")
            assert got.status_code == 200, got.text
        else:
            got = api.get(f"/collections/{ident}/items")
            assert got.status_code == 200, got.text
            assert got.json()["numberMatched"] == 3
    assert_alive(harness.ouo)


# -- limits -----------------------------------------------------------------------------


def test_demo_workflows_are_not_offered(harness: Harness, tokens: dict[str, str]) -> None:
    for token in (None, tokens["sec-admin"]):
        api = harness.api("ouo", token)
        for workflow, params in (("hello", {"name": "x"}), ("fan_out_demo", {"n": 3})):
            with nothing_stored(harness.home):
                response = api.post(f"/jobs/{workflow}", json=params)
            # Anonymous: a write without a token may be refused as such first.
            assert response.status_code in ((404,) if token else (401, 404)), response.text
        listed = api.get("/workflows")
        assert listed.status_code == 200, listed.text
        names = {w["name"] for w in listed.json()}
        assert {"process_raster", "process_vector"} <= names
        assert not names & {"hello", "fan_out_demo"}, names
    assert_alive(harness.ouo)


def test_upload_over_the_size_limit_is_413(harness: Harness, tokens: dict[str, str]) -> None:
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    body = b"\0" * ((UPLOAD_MAX_MB + 1) * 1024 * 1024)
    with nothing_stored(harness.home):
        response = api.upload("big.tif", body, access_level="public")
    assert response.status_code == 413, response.text
    uploads = harness.home / "storage" / "tmp" / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    assert_alive(harness.ouo)


def test_concurrent_identical_uploads_store_one_object_and_one_job(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    api = harness.api("ouo", tokens["sec-pub-public"])
    body = raster_bytes(tmp_path)
    collection = "sec-concurrent"
    quiesce(harness.home)
    before = bronze_silver_snapshot(harness.home)

    def send(_: int) -> httpx.Response:
        return api.upload("same.tif", body, collection_id=collection, access_level="public")

    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(send, range(5)))
    assert [r.status_code for r in responses] == [202] * 5, [r.text for r in responses]
    job_ids = {r.json()["job_id"] for r in responses}
    assert len(job_ids) == 1, job_ids
    view = api.wait(job_ids.pop())
    assert view["status"] == "succeeded", view["error"]
    added = {p for p in bronze_silver_snapshot(harness.home) - before if "/bronze/" in f"/{p}"}
    assert len(added) == 1, added
    jobs = api.get("/jobs", params={"workflow": "process_raster", "limit": 1000}).json()["items"]
    mine = [j for j in jobs if j["params"].get("collection_id") == collection]
    assert len(mine) == 1, mine
    assert_alive(harness.ouo)


def _burst(
    harness: Harness, tokens: dict[str, str], tmp: Path, threads: int
) -> tuple[list[httpx.Response], int]:
    """20 submissions by one publisher while the workers are paused (every job stays
    queued): the answers, and the caller's active jobs right after."""
    api = harness.api("pub", tokens["sec-burst"])
    seed = published(api, publish_raster(api, tmp, "sec-burst", uniq("burst")))

    def submit(i: int) -> httpx.Response:
        return api.post(
            "/jobs/process_raster",
            json={
                "source": seed["params"]["source"],
                "collection_id": "sec-burst",
                "item_id": f"{seed['job_id'][:8]}-{i}",
                "access_level": "public",
            },
        )

    responses: list[httpx.Response] = []
    with workers_paused(harness):
        try:
            with ThreadPoolExecutor(threads) as pool:
                responses = list(pool.map(submit, range(20)))
            active = active_jobs_of(harness, "sec-burst")
        finally:
            # Leave the shared workers nothing of this to do.
            for response in responses:
                if response.status_code == 202:
                    api.post(f"/jobs/{response.json()['job_id']}/cancel")
    return responses, active


def test_too_many_active_jobs_is_429(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    responses, active = _burst(harness, tokens, tmp_path, threads=1)
    codes = [r.status_code for r in responses]
    # The default GEOETL_MAX_ACTIVE_JOBS is 10: ten queued, the rest refused.
    assert codes == [202] * 10 + [429] * 10, [r.text for r in responses if r.status_code != 202]
    assert active == 10
    assert_alive(harness.pub)


def test_parallel_submissions_do_not_overshoot_the_active_job_limit(
    harness: Harness, tokens: dict[str, str], tmp_path: Path
) -> None:
    # All at once: a check-then-insert limit lets several through past the tenth.
    responses, active = _burst(harness, tokens, tmp_path, threads=20)
    assert [r.status_code for r in responses].count(202) <= 10
    assert active <= 10, f"{active} active jobs for one caller (limit 10)"
    assert_alive(harness.pub)
