"""The jobs API through FastAPI's TestClient, on SQLite and on PostgreSQL.

Jobs are run to completion in-process with a :class:`Runner`, so every test sees the
real job store: submit, status, tasks, events, cancel, resubmit, workflows and health.
"""

from __future__ import annotations

import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from geoetl.api.app import create_app
from geoetl.engine import ids
from geoetl.engine.models import JobStatus
from geoetl.settings import Settings
from geoetl.workers import make_janitor, make_runner
from tests.api.conftest import platform_of

with warnings.catch_warnings():
    # Starlette nags about httpx vs httpx2 at import; the client works the same.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

HEX = set("0123456789abcdef")
UNKNOWN_JOB = "0" * 64
LINK_RELS = {"self", "tasks", "events", "cancel", "resubmit"}


def run_job(client: TestClient, job_id: str, timeout: float = 60.0) -> JobStatus:
    """Run the job's tasks here until it ends; fail if it has not ended after ``timeout``."""
    runner = make_runner(platform_of(client), "test")
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        status = runner.run_job(job_id, stop)
    finally:
        timer.cancel()
        runner.close()
    assert status in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled), (
        f"job {job_id} still {status} after {timeout}s"
    )
    return status


def submit(client: TestClient, workflow: str, params: Any = None) -> dict[str, Any]:
    """POST /jobs/{workflow}; asserts 202 and returns the job view."""
    response = client.post(f"/jobs/{workflow}", json=params if params is not None else {})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def get_job(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- submit ------------------------------------------------------------------------------


def test_submit_returns_202_with_job_links_and_location(client: TestClient) -> None:
    response = client.post("/jobs/fan_out_demo", json={"n": 3})

    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["job_id"]
    assert len(job_id) == 64
    assert set(job_id) <= HEX
    assert body["status"] == "queued"
    assert body["workflow"] == "fan_out_demo"
    assert body["run"] == 1
    assert body["base_id"] == job_id
    assert body["idempotent"] is False
    assert body["params"]["n"] == 3
    assert body["params"]["sleep_ms"] == 0  # defaults filled in
    assert body["started_at"] is None
    assert body["finished_at"] is None
    assert body["duration_seconds"] is None
    # The job id is the deterministic hash of workflow, version and canonical params.
    assert job_id == ids.job_id("fan_out_demo", body["version"], body["params"])

    links = {link["rel"]: link for link in body["links"]}
    assert set(links) == LINK_RELS
    assert links["self"]["href"].endswith(f"/jobs/{job_id}")
    assert links["tasks"]["href"].endswith(f"/jobs/{job_id}/tasks")
    assert links["events"]["href"].endswith(f"/jobs/{job_id}/events")
    assert links["cancel"]["href"].endswith(f"/jobs/{job_id}/cancel")
    assert links["cancel"]["method"] == "POST"
    assert links["resubmit"]["href"].endswith(f"/jobs/{job_id}/resubmit")
    assert links["resubmit"]["method"] == "POST"
    assert response.headers["location"] == links["self"]["href"]

    # The links lead somewhere.
    assert client.get(response.headers["location"]).json()["job_id"] == job_id
    tasks = client.get(links["tasks"]["href"]).json()
    assert [t["stage"] for t in tasks["items"]] == ["plan"]
    events = client.get(links["events"]["href"]).json()
    assert [e["kind"] for e in events] == ["job_submitted", "stage_started"]


def test_identical_submission_returns_the_same_job(client: TestClient) -> None:
    first = submit(client, "fan_out_demo", {"n": 3})
    again = client.post("/jobs/fan_out_demo", json={"n": 3})
    # Spelled differently (explicit default, other key order): still the same job.
    same = client.post("/jobs/fan_out_demo", json={"seed": 0, "n": 3, "sleep_ms": 0})
    other = submit(client, "fan_out_demo", {"n": 3, "seed": 1})

    assert again.status_code == 202
    assert again.json()["job_id"] == first["job_id"]
    assert again.json()["idempotent"] is True
    assert again.headers["location"].endswith(f"/jobs/{first['job_id']}")
    assert same.json()["job_id"] == first["job_id"]
    assert same.json()["idempotent"] is True
    assert other["job_id"] != first["job_id"]
    assert other["idempotent"] is False
    assert client.get("/jobs").json()["total"] == 2


def test_empty_body_or_no_content_type_uses_default_params(client: TestClient) -> None:
    no_body = client.post("/jobs/fan_out_demo")
    assert no_body.status_code == 202, no_body.text
    assert no_body.json()["params"]["n"] == 10
    assert no_body.json()["idempotent"] is False

    blank = client.post("/jobs/fan_out_demo", content=b"  \n")
    assert blank.status_code == 202, blank.text
    assert blank.json()["job_id"] == no_body.json()["job_id"]
    assert blank.json()["idempotent"] is True

    raw = client.post("/jobs/fan_out_demo", content=b'{"n": 4}')  # JSON without content-type
    assert raw.status_code == 202, raw.text
    assert raw.json()["params"]["n"] == 4

    hello = client.post("/jobs/hello")
    assert hello.status_code == 202, hello.text
    assert hello.json()["params"] == {"name": "world"}


def test_invalid_json_body_is_400(client: TestClient) -> None:
    response = client.post(
        "/jobs/fan_out_demo", content=b'{"n": 3', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InputError"
    assert "not valid JSON" in body["detail"]
    assert client.get("/jobs").json()["total"] == 0


@pytest.mark.parametrize(
    ("workflow", "params", "locs"),
    [
        ("fan_out_demo", {"n": -1}, [["n"]]),
        ("fan_out_demo", {"n": "x"}, [["n"]]),
        ("fan_out_demo", {"flaky": 1.5}, [["flaky"]]),
        ("fan_out_demo", {"n": -1, "sleep_ms": -5}, [["n"], ["sleep_ms"]]),
        ("hello", {"name": ""}, [["name"]]),
        ("fan_out_demo", [1, 2], [[]]),
    ],
)
def test_bad_params_are_422_listing_each_field(
    client: TestClient, workflow: str, params: Any, locs: list[list[str]]
) -> None:
    response = client.post(f"/jobs/{workflow}", json=params)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "ParamsError"
    assert sorted(e["loc"] for e in body["errors"]) == sorted(locs)
    assert all(e["msg"] for e in body["errors"])
    for loc in locs:
        if loc:
            assert loc[0] in body["detail"]
    assert client.get("/jobs").json()["total"] == 0


def test_unknown_workflow_is_404_naming_the_known_ones(client: TestClient) -> None:
    response = client.post("/jobs/nope", json={"n": 1})
    garbage = client.post("/jobs/nope", content=b"{not json")

    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "nope" in detail
    assert "fan_out_demo" in detail
    assert "hello" in detail
    # The workflow is checked before the body is read.
    assert garbage.status_code == 404
    assert client.get("/jobs").json()["total"] == 0


# -- status ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7])
def test_finished_job_shows_result_stages_and_timings(client: TestClient, n: int) -> None:
    job_id = submit(client, "fan_out_demo", {"n": n})["job_id"]

    assert run_job(client, job_id) == JobStatus.succeeded
    job = get_job(client, job_id)

    assert job["status"] == "succeeded"
    assert job["result"] == {"sum": n * (n - 1) // 2, "count": n}
    assert job["error"] is None
    stages = job["stages"]
    assert [s["name"] for s in stages] == ["plan", "work", "sum"]
    assert [s["total"] for s in stages] == [1, n, 1]
    assert [s["succeeded"] for s in stages] == [1, n, 1]
    assert [s["status"] for s in stages] == ["succeeded"] * 3
    assert all(s["failed"] == s["cancelled"] == s["running"] == s["queued"] == 0 for s in stages)
    assert job["attempts"] == n + 2
    assert job["progress"]["done"] == job["progress"]["total"] == 3

    created, started, finished = (
        ts(job["created_at"]),
        ts(job["started_at"]),
        ts(job["finished_at"]),
    )
    assert created <= started <= finished
    assert job["duration_seconds"] >= 0
    assert job["duration_seconds"] == pytest.approx((finished - started).total_seconds(), abs=1e-3)


def test_hello_job_greets(client: TestClient) -> None:
    job_id = submit(client, "hello", {"name": "api"})["job_id"]

    assert run_job(client, job_id) == JobStatus.succeeded
    job = get_job(client, job_id)
    assert job["result"] == {"message": "Hello, api!"}
    assert [(s["name"], s["total"], s["succeeded"]) for s in job["stages"]] == [("greet", 1, 1)]


def test_skipped_stage_is_not_pending_in_a_finished_job(client: TestClient) -> None:
    job_id = submit(client, "fan_out_demo", {"n": 0})["job_id"]

    assert run_job(client, job_id) == JobStatus.succeeded
    job = get_job(client, job_id)
    assert job["result"] == {"sum": 0, "count": 0}
    kinds = [e["kind"] for e in client.get(f"/jobs/{job_id}/events").json()]
    assert "stage_skipped" in kinds
    work = job["stages"][1]
    assert work["total"] == 0
    assert work["status"] == "skipped", job["stages"]
    assert job["progress"]["done"] == job["progress"]["total"] == 3


def test_failed_job_shows_the_failing_item_and_stage(client: TestClient) -> None:
    job_id = submit(client, "fan_out_demo", {"n": 5, "fail_at": 2})["job_id"]

    assert run_job(client, job_id) == JobStatus.failed
    job = get_job(client, job_id)

    assert job["status"] == "failed"
    assert job["result"] is None
    assert job["finished_at"] is not None
    error = job["error"]
    assert error["stage"] == "work"
    assert "work item 2" in error["message"]
    assert error["kind"] == "input_error"
    assert error["task_id"] == ids.task_id(job_id, "work", 2)
    assert error["attempt"] == 1  # an input error is not retried
    work = job["stages"][1]
    assert work["status"] == "failed"
    assert work["failed"] == 1
    assert work["running"] == work["queued"] == 0
    assert job["stages"][2]["total"] == 0  # the sum stage never started
    kinds = [e["kind"] for e in client.get(f"/jobs/{job_id}/events").json()]
    assert "task_failed" in kinds
    assert kinds[-1] == "job_failed"
    failed = client.get(f"/jobs/{job_id}/tasks", params={"status": "failed"}).json()
    assert [t["index"] for t in failed["items"]] == [2]
    assert "work item 2" in failed["items"][0]["error"]["message"]


# -- listing -----------------------------------------------------------------------------


def test_list_jobs_filters_by_status_and_workflow(client: TestClient) -> None:
    fan = [submit(client, "fan_out_demo", {"n": 2, "seed": s})["job_id"] for s in range(5)]
    hello = [submit(client, "hello", {"name": name})["job_id"] for name in ("a", "b")]
    assert run_job(client, fan[0]) == JobStatus.succeeded
    assert run_job(client, hello[0]) == JobStatus.succeeded
    assert client.post(f"/jobs/{fan[1]}/cancel").status_code == 200

    def listed(**query: Any) -> tuple[int, set[str]]:
        response = client.get("/jobs", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        return page["total"], {j["job_id"] for j in page["items"]}

    assert listed() == (7, set(fan + hello))
    assert listed(status="succeeded") == (2, {fan[0], hello[0]})
    assert listed(status="cancelled") == (1, {fan[1]})
    assert listed(workflow="hello") == (2, set(hello))
    assert listed(status="queued", workflow="fan_out_demo") == (3, set(fan[2:]))
    assert listed(status="failed") == (0, set())
    assert listed(workflow="nope") == (0, set())
    assert client.get("/jobs", params={"status": "bogus"}).status_code == 400

    items = client.get("/jobs").json()["items"]
    created = [ts(j["created_at"]) for j in items]
    assert created == sorted(created, reverse=True)  # newest first
    assert all({link["rel"] for link in j["links"]} == LINK_RELS for j in items)


def test_list_jobs_pages_without_overlap(client: TestClient) -> None:
    submitted = {submit(client, "fan_out_demo", {"n": 1, "seed": s})["job_id"] for s in range(7)}

    pages = []
    for offset in (0, 3, 6, 9):
        response = client.get("/jobs", params={"limit": 3, "offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == 7
        assert page["limit"] == 3
        assert page["offset"] == offset
        pages.append([j["job_id"] for j in page["items"]])

    assert [len(p) for p in pages] == [3, 3, 1, 0]
    seen = [job_id for p in pages for job_id in p]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == submitted
    assert client.get("/jobs", params={"limit": 0}).status_code == 400
    assert client.get("/jobs", params={"offset": -1}).status_code == 400


def test_tasks_listing_pages_and_filters_by_stage(client: TestClient) -> None:
    n = 5
    job_id = submit(client, "fan_out_demo", {"n": n})["job_id"]
    assert run_job(client, job_id) == JobStatus.succeeded

    page = client.get(f"/jobs/{job_id}/tasks").json()
    assert page["total"] == n + 2
    tasks = page["items"]
    assert [(t["stage"], t["index"]) for t in tasks] == [
        ("plan", 0),
        *[("work", i) for i in range(n)],
        ("sum", 0),
    ]
    assert all(t["status"] == "succeeded" and t["attempt"] == 1 for t in tasks)
    assert all(t["job_id"] == job_id for t in tasks)
    assert [t["task_id"] for t in tasks] == [
        ids.task_id(job_id, t["stage"], t["index"]) for t in tasks
    ]
    assert [t["result"] for t in tasks if t["stage"] == "work"] == list(range(n))
    assert tasks[-1]["result"] == {"sum": n * (n - 1) // 2, "count": n}

    paged: list[str] = []
    for offset in range(0, n + 2, 2):
        part = client.get(f"/jobs/{job_id}/tasks", params={"limit": 2, "offset": offset}).json()
        assert part["total"] == n + 2
        paged += [t["task_id"] for t in part["items"]]
    assert paged == [t["task_id"] for t in tasks]

    work = client.get(f"/jobs/{job_id}/tasks", params={"stage": "work"}).json()
    assert work["total"] == n
    assert [t["item"] for t in work["items"]] == list(range(n))
    assert {t["stage"] for t in work["items"]} == {"work"}
    succeeded = client.get(f"/jobs/{job_id}/tasks", params={"status": "succeeded"}).json()
    assert succeeded["total"] == n + 2
    failed = client.get(f"/jobs/{job_id}/tasks", params={"status": "failed"}).json()
    assert (failed["total"], failed["items"]) == (0, [])


def test_events_log_the_job_and_page_with_after(client: TestClient) -> None:
    n = 4
    job_id = submit(client, "fan_out_demo", {"n": n})["job_id"]
    assert run_job(client, job_id) == JobStatus.succeeded

    events = client.get(f"/jobs/{job_id}/events").json()
    kinds = [e["kind"] for e in events]
    assert {"job_submitted", "stage_started", "task_started", "task_succeeded"} <= set(kinds)
    assert kinds[0] == "job_submitted"
    assert kinds[-1] == "job_succeeded"
    assert kinds.count("stage_started") == 3
    assert kinds.count("task_succeeded") == n + 2
    assert all(e["job_id"] == job_id for e in events)
    event_ids = [e["id"] for e in events]
    assert event_ids == sorted(event_ids)
    assert len(set(event_ids)) == len(event_ids)
    succeeded_tasks = {e["task_id"] for e in events if e["kind"] == "task_succeeded"}
    assert len(succeeded_tasks) == n + 2

    middle = events[4]["id"]
    rest = client.get(f"/jobs/{job_id}/events", params={"after": middle}).json()
    assert rest == events[5:]
    assert client.get(f"/jobs/{job_id}/events", params={"after": event_ids[-1]}).json() == []
    first_three = client.get(f"/jobs/{job_id}/events", params={"limit": 3}).json()
    assert first_three == events[:3]


# -- cancel and resubmit -----------------------------------------------------------------


def test_cancel_queued_job(client: TestClient) -> None:
    job_id = submit(client, "fan_out_demo", {"n": 4})["job_id"]

    response = client.post(f"/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["job_id"] == job_id
    assert response.json()["status"] == "cancelled"
    job = get_job(client, job_id)
    assert job["status"] == "cancelled"
    assert job["finished_at"] is not None
    tasks = client.get(f"/jobs/{job_id}/tasks").json()["items"]
    assert tasks
    assert {t["status"] for t in tasks} == {"cancelled"}
    assert "job_cancelled" in [e["kind"] for e in client.get(f"/jobs/{job_id}/events").json()]
    # Nothing of a cancelled job runs any more.
    assert run_job(client, job_id) == JobStatus.cancelled
    job = get_job(client, job_id)
    assert job["attempts"] == 0
    assert job["result"] is None

    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["code"] == "Conflict"
    assert "cancelled" in again.json()["detail"]


def test_cancel_job_between_stages_cancels_its_open_tasks(client: TestClient) -> None:
    n = 6
    job_id = submit(client, "fan_out_demo", {"n": n})["job_id"]
    runner = make_runner(platform_of(client), "test")
    try:
        assert runner.run_once(job_id) == 1  # just the plan task: the work stage is queued
    finally:
        runner.close()
    assert get_job(client, job_id)["stages"][1]["queued"] == n

    response = client.post(f"/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "cancelled"
    plan, work, add_up = job["stages"]
    assert (plan["status"], plan["succeeded"]) == ("succeeded", 1)
    assert (work["status"], work["cancelled"], work["queued"]) == ("cancelled", n, 0)
    assert add_up["total"] == 0
    statuses = {
        t["status"]
        for t in client.get(f"/jobs/{job_id}/tasks", params={"stage": "work"}).json()["items"]
    }
    assert statuses == {"cancelled"}
    assert run_job(client, job_id) == JobStatus.cancelled
    assert get_job(client, job_id)["stages"][1]["succeeded"] == 0


def test_cancel_finished_or_unknown_job(client: TestClient) -> None:
    job_id = submit(client, "hello")["job_id"]
    assert run_job(client, job_id) == JobStatus.succeeded

    finished = client.post(f"/jobs/{job_id}/cancel")
    unknown = client.post(f"/jobs/{UNKNOWN_JOB}/cancel")

    assert finished.status_code == 409
    assert "succeeded" in finished.json()["detail"]
    assert get_job(client, job_id)["status"] == "succeeded"
    assert unknown.status_code == 404


def test_resubmit_makes_deterministic_new_runs(client: TestClient) -> None:
    first = submit(client, "fan_out_demo", {"n": 3})
    base = first["job_id"]
    params, version = first["params"], first["version"]
    assert run_job(client, base) == JobStatus.succeeded

    response = client.post(f"/jobs/{base}/resubmit")

    assert response.status_code == 202, response.text
    second = response.json()
    assert second["job_id"] != base
    assert second["job_id"] == ids.job_id("fan_out_demo", version, params, run=2)
    assert (second["run"], second["base_id"], second["status"]) == (2, base, "queued")
    assert second["params"] == params
    assert {link["rel"] for link in second["links"]} == LINK_RELS
    assert run_job(client, second["job_id"]) == JobStatus.succeeded
    assert get_job(client, second["job_id"])["result"] == {"sum": 3, "count": 3}
    assert get_job(client, base)["status"] == "succeeded"  # the first run is left alone

    third = client.post(f"/jobs/{base}/resubmit")
    assert third.status_code == 202, third.text
    assert third.json()["run"] == 3
    assert third.json()["job_id"] == ids.job_id("fan_out_demo", version, params, run=3)
    assert len({base, second["job_id"], third.json()["job_id"]}) == 3

    # Submitting the same params again finds the latest run.
    latest = client.post("/jobs/fan_out_demo", json={"n": 3}).json()
    assert (latest["job_id"], latest["idempotent"]) == (third.json()["job_id"], True)

    # Resubmitting an active run cancels it first.
    fourth = client.post(f"/jobs/{third.json()['job_id']}/resubmit")
    assert fourth.status_code == 202, fourth.text
    assert fourth.json()["run"] == 4
    assert get_job(client, third.json()["job_id"])["status"] == "cancelled"
    assert client.get("/jobs", params={"workflow": "fan_out_demo"}).json()["total"] == 4


# -- workflows, errors, health, docs -----------------------------------------------------


def test_workflows_list_params_schemas(client: TestClient) -> None:
    response = client.get("/workflows")

    assert response.status_code == 200
    workflows = {w["name"]: w for w in response.json()}
    assert {"hello", "fan_out_demo"} <= set(workflows)
    fan = workflows["fan_out_demo"]
    assert fan["stages"] == ["plan", "work", "sum"]
    assert fan["version"] >= 1
    assert fan["description"]
    properties = fan["params_schema"]["properties"]
    assert {"n", "sleep_ms", "fail_at", "flaky", "seed"} <= set(properties)
    assert properties["n"]["type"] == "integer"
    assert properties["n"]["minimum"] == 0
    assert "name" in workflows["hello"]["params_schema"]["properties"]
    assert workflows["hello"]["stages"] == ["greet"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/{id}"),
        ("GET", "/jobs/{id}/tasks"),
        ("GET", "/jobs/{id}/events"),
        ("POST", "/jobs/{id}/cancel"),
        ("POST", "/jobs/{id}/resubmit"),
    ],
)
def test_unknown_job_is_404_json(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path.format(id=UNKNOWN_JOB))

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "NotFound"
    assert UNKNOWN_JOB in body["detail"]


def test_livez(client: TestClient) -> None:
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_storage_ok(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "database": "ok", "storage": "ok"}


def test_readyz_with_storage_outside_home(
    settings: Settings, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    objects = tmp_path / "objects"
    elsewhere = settings.model_copy(update={"storage_url": objects.as_uri()})
    with TestClient(create_app(elsewhere)) as c:
        response = c.get("/readyz")
        admin = platform_of(c).tokens.create("ops", "admin", "restricted")
        health = c.get("/health", headers={"Authorization": f"Bearer {admin}"}).json()
        anonymous = c.get("/health").json()

    assert objects.is_dir()
    assert health["backends"]["storage"] == objects.as_uri()
    # Anyone learns whether the service is healthy; only admins where its data lives.
    assert set(anonymous) == {"status", "version", "checks"}
    assert objects.as_uri() not in str(anonymous)
    assert response.json()["database"] == "ok"
    assert response.status_code == 200, response.json()
    assert response.json()["storage"] == "ok"


def test_health_reports_backend_queues_and_janitor(client: TestClient, backend: str) -> None:
    done = submit(client, "fan_out_demo", {"n": 2})["job_id"]
    submit(client, "fan_out_demo", {"n": 2, "seed": 1})
    assert run_job(client, done) == JobStatus.succeeded

    before = client.get("/health")
    assert before.status_code == 200
    health = before.json()
    assert health["backends"]["database"] == {"sqlite": "sqlite", "postgres": "postgresql"}[backend]
    assert health["checks"]["database"] == "ok"
    assert health["version"]
    assert {"hello", "fan_out_demo"} <= set(health["workflows"])
    assert health["queues"]["jobs"] == {"queued": 1, "succeeded": 1}
    assert health["queues"]["queued_tasks"] == {"default": 1}  # the plan task of the queued job
    assert health["queues"]["running_tasks"] == {"all": 0}
    assert health["janitor"] is None

    make_janitor(platform_of(client)).run_once()
    janitor = client.get("/health").json()["janitor"]

    assert janitor is not None
    assert ts(janitor["at"]) <= datetime.now(tz=ts(janitor["at"]).tzinfo)
    assert (janitor["requeued"], janitor["failed"]) == (0, 0)
    assert janitor["redispatched"] in (0, 1)  # the queued plan task may count as stale


def test_docs_and_openapi(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]

    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in (
        "/jobs",
        "/jobs/{workflow}",
        "/jobs/{job_id}",
        "/jobs/{job_id}/tasks",
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/resubmit",
        "/workflows",
        "/livez",
        "/readyz",
        "/health",
    ):
        assert path in paths, path
