"""``GET /audit`` for admins, and token changes through the API landing in the log."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import platform_of
from tests.audit.conftest import as_token


def all_rows(client: TestClient) -> list[tuple[str, ...]]:
    """Every audit row as text, read around the API."""
    with platform_of(client).store.read() as conn:
        return [tuple(map(str, r)) for r in conn.exec_driver_sql("SELECT * FROM audit_log")]


def test_only_admins_read_the_log(anonymous: TestClient, admin: TestClient) -> None:
    platform_of(anonymous).audit.record("token:alice", "publish", "roads/main@v1")
    r = anonymous.get("/audit")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    publisher = as_token(anonymous, "pub", "publisher", "restricted")
    r = publisher.get("/audit")
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]
    r = admin.get("/audit")
    assert r.status_code == 200
    [entry] = r.json()["entries"]
    assert entry["actor"] == "token:alice"
    assert entry["target"] == "roads/main@v1"
    assert entry["at"].endswith("Z")


def test_filters(admin: TestClient) -> None:
    audit = platform_of(admin).audit
    audit.record("token:alice", "publish", "roads/main@v1", job_id="a" * 64)
    audit.record("token:alice", "replace", "roads/main@v2", job_id="b" * 64)
    audit.record("token:bob", "approve", "rivers/all@v1", job_id="c" * 64)
    audit.record("local", "token_create", "bob", details={"role": "reader"})

    def targets(**params: Any) -> list[str]:
        r = admin.get("/audit", params=params)
        assert r.status_code == 200, r.text
        return [e["target"] for e in r.json()["entries"]]

    assert targets() == ["bob", "rivers/all@v1", "roads/main@v2", "roads/main@v1"]
    assert targets(actor="token:alice") == ["roads/main@v2", "roads/main@v1"]
    assert targets(action="approve") == ["rivers/all@v1"]
    assert targets(target="roads") == ["roads/main@v2", "roads/main@v1"]
    assert targets(job_id="b" * 64) == ["roads/main@v2"]
    assert targets(actor="token:alice", action="approve") == []
    assert targets(since="2000-01-01T00:00:00Z", until="2999-01-01T00:00:00+02:00") == targets()
    assert targets(since="2999-01-01T00:00:00Z") == []
    assert targets(until="2000-01-01T00:00:00Z") == []


def test_the_next_link_pages_through_every_entry_once(admin: TestClient) -> None:
    audit = platform_of(admin).audit
    recorded = [audit.record("local", "token_create", f"t{i}") for i in range(8)]
    recorded += [audit.record("token:x", "token_revoke", f"t{i}") for i in range(3)]
    seen: list[int] = []
    url: str | None = "/audit?limit=3&action=token_create"
    pages = 0
    while url is not None:
        r = admin.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen += [e["id"] for e in body["entries"]]
        assert all(e["action"] == "token_create" for e in body["entries"])
        assert len(body["entries"]) <= 3
        nexts = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nexts[0] if nexts else None
    assert pages == 3
    assert seen == sorted(recorded[:8], reverse=True)

    # A full last page has no next link either (the page is read with one row more).
    r = admin.get("/audit", params={"limit": 11})
    assert [e["id"] for e in r.json()["entries"]] == sorted(recorded, reverse=True)
    assert [link["rel"] for link in r.json()["links"]] == ["self"]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"action": "delete"}, "action 'delete' is not one of publish, replace"),
        ({"since": "yesterday"}, "since: 'yesterday' is not an RFC 3339 date-time"),
        ({"until": "2024-01-01"}, "until: '2024-01-01' is not an RFC 3339 date-time"),
        (
            {"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"},
            "is after until",
        ),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"before": "-1"}, "before"),
    ],
)
def test_bad_parameters_say_what_is_wrong(
    admin: TestClient, params: dict[str, str], says: str
) -> None:
    r = admin.get("/audit", params=params)
    assert r.status_code == 400, r.text
    assert says in r.json()["detail"]


def test_token_changes_through_the_api_are_recorded_without_secrets(
    anonymous: TestClient, admin: TestClient
) -> None:
    r = admin.post("/auth/tokens", json={"name": "bob", "role": "publisher", "clearance": "ouo"})
    assert r.status_code == 201, r.text
    secret = r.json()["token"]
    assert admin.delete("/auth/tokens/bob").status_code == 204

    # Refused changes are not recorded.
    r = admin.post("/auth/tokens", json={"name": "test-admin", "role": "admin", "clearance": "ouo"})
    assert r.status_code == 409
    assert admin.delete("/auth/tokens/nobody").status_code == 404
    publisher = as_token(anonymous, "pub", "publisher", "restricted")
    r = publisher.post("/auth/tokens", json={"name": "x", "role": "admin", "clearance": "ouo"})
    assert r.status_code == 403

    r = admin.get("/audit")
    entries = r.json()["entries"]
    assert [(e["actor"], e["action"], e["target"], e["details"]) for e in entries] == [
        ("token:test-admin", "token_revoke", "bob", None),
        (
            "token:test-admin",
            "token_create",
            "bob",
            {"role": "publisher", "clearance": "ouo"},
        ),
    ]
    assert secret not in r.text
    rows = all_rows(admin)
    assert len(rows) == 2
    assert not any(secret in value or secret[7:] in value for row in rows for value in row)
