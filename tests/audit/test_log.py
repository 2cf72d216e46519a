"""The audit table on both backends: filters, paging, and a database that refuses rewrites."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from geoetl.audit import AuditLog
from geoetl.platform import Platform


def fill(audit: AuditLog) -> dict[str, int]:
    """A small history; the ids by a label."""
    ids = {
        "v1": audit.record(
            "token:alice", "publish", "roads/main@v1", job_id="a" * 64, details={"version": 1}
        ),
        "v2": audit.record("token:alice", "replace", "roads/main@v2", job_id="b" * 64),
        "other": audit.record("token:bob", "publish", "roads/mainline@v1", job_id="c" * 64),
        "like": audit.record("token:bob", "publish", "roads_x/main@v1"),
        "approve": audit.record("oidc:carol", "approve", "roads/main@v2", job_id="b" * 64),
        "token": audit.record("local", "token_create", "roads", details={"role": "reader"}),
    }
    return ids


def ids_of(audit: AuditLog, **filters: Any) -> list[int]:
    return [e.id for e in audit.entries(**filters)]


def test_entries_filter_and_come_newest_first(platform: Platform) -> None:
    audit = platform.audit
    ids = fill(audit)
    assert ids_of(audit) == sorted(ids.values(), reverse=True)
    assert ids_of(audit, actor="token:alice") == [ids["v2"], ids["v1"]]
    assert ids_of(audit, action="publish") == [ids["like"], ids["other"], ids["v1"]]
    assert ids_of(audit, job_id="b" * 64) == [ids["approve"], ids["v2"]]
    assert ids_of(audit, actor="token:alice", action="replace") == [ids["v2"]]
    assert ids_of(audit, actor="nobody") == []

    # A target matches itself and what lies under it, never a longer name or a LIKE pattern.
    assert ids_of(audit, target="roads/main") == [ids["approve"], ids["v2"], ids["v1"]]
    assert ids_of(audit, target="roads/main@v2") == [ids["approve"], ids["v2"]]
    assert ids_of(audit, target="roads") == [
        ids["token"],
        ids["approve"],
        ids["other"],
        ids["v2"],
        ids["v1"],
    ]
    assert ids_of(audit, target="roads_") == []

    first = audit.entries(target="roads/main@v1")[0]
    assert (first.actor, first.action, first.job_id, first.details) == (
        "token:alice",
        "publish",
        "a" * 64,
        {"version": 1},
    )
    doc = first.as_json()
    assert doc["at"].endswith("Z")
    assert doc["details"] == {"version": 1}


def test_since_and_until_split_at_an_instant(platform: Platform) -> None:
    audit = platform.audit
    early = audit.record("local", "token_create", "early")
    time.sleep(0.02)
    cut = time.time()
    time.sleep(0.02)
    late = audit.record("local", "token_revoke", "early")
    assert ids_of(audit, since=cut) == [late]
    assert ids_of(audit, until=cut) == [early]
    assert ids_of(audit, since=cut, until=time.time() + 1) == [late]


def test_paging_by_id_returns_every_entry_once(platform: Platform) -> None:
    audit = platform.audit
    recorded = [audit.record("local", "token_create", f"t{i}") for i in range(23)]
    seen: list[int] = []
    before = None
    pages = 0
    while True:
        page = audit.entries(before_id=before, limit=10)
        if not page:
            break
        pages += 1
        seen += [e.id for e in page]
        before = page[-1].id
    assert pages == 3
    assert seen == sorted(recorded, reverse=True)
    # The cursor combines with filters.
    assert [e.target for e in audit.entries(target="t5", before_id=recorded[5])] == []
    assert [e.target for e in audit.entries(target="t5", before_id=recorded[5] + 1)] == ["t5"]


def test_unknown_actions_are_refused(platform: Platform) -> None:
    with pytest.raises(ValueError, match="unknown audit action 'delete_everything'"):
        platform.audit.record("local", "delete_everything", "x")
    assert platform.audit.entries() == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone else'",
        "UPDATE audit_log SET details = NULL WHERE action = 'publish'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE action = 'publish'",
    ],
)
def test_the_database_refuses_to_rewrite_history(platform: Platform, statement: str) -> None:
    audit = platform.audit
    ids = fill(audit)
    before = audit.entries()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), audit.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert audit.entries() == before
    # Appending still works afterwards.
    new = audit.record("local", "token_revoke", "roads")
    assert new > max(ids.values())
