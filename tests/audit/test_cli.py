"""Token changes made on the command line and at first start, and ``geoetl audit``."""

from __future__ import annotations

import json

import pytest

from geoetl.auth.tokens import ensure_admin_token
from geoetl.errors import InputError
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.audit.conftest import Cli


def assert_no_secret(platform: Platform, secret: str) -> None:
    with platform.store.read() as conn:
        rows = [tuple(map(str, r)) for r in conn.exec_driver_sql("SELECT * FROM audit_log")]
    assert rows
    assert not any(secret in value or secret[7:] in value for row in rows for value in row)


def test_cli_token_changes_are_recorded_as_local(cli: Cli, platform: Platform) -> None:
    out = cli.ok(
        "tokens", "create", "--name", "carol", "--role", "Publisher", "--clearance", "OUO", "--json"
    )
    secret = json.loads(out)["token"]
    cli.ok("tokens", "revoke", "carol")
    failed = cli("tokens", "revoke", "carol")  # already revoked: nothing to record
    assert failed.exit_code != 0

    entries = platform.audit.entries()
    assert [(e.actor, e.action, e.target, e.details) for e in entries] == [
        ("local", "token_revoke", "carol", None),
        ("local", "token_create", "carol", {"role": "publisher", "clearance": "ouo"}),
    ]
    assert_no_secret(platform, secret)

    # `geoetl audit --json`: one entry per line, as the API shows them.
    lines = cli.ok("audit", "--json").splitlines()
    docs = [json.loads(line) for line in lines]
    assert docs == [e.as_json() for e in entries]
    assert secret not in "".join(lines)
    only = [
        json.loads(x) for x in cli.ok("audit", "--json", "--action", "token_create").splitlines()
    ]
    assert [(d["actor"], d["action"], d["target"]) for d in only] == [
        ("local", "token_create", "carol")
    ]
    assert cli.ok("audit", "--json", "--actor", "token:someone") == ""
    assert len(cli.ok("audit", "--json", "--since", "1h").splitlines()) == 2
    assert cli.ok("audit", "--json", "--since", "2999-01-01T00:00:00Z") == ""


def test_the_table_shows_who_did_what(cli: Cli, platform: Platform) -> None:
    job_id = "0123456789abcdef" * 4
    platform.audit.record(
        "token:alice", "publish", "roads/main@v1", job_id=job_id, details={"version": 1}
    )
    platform.audit.record("local", "token_create", "bob", details={"role": "reader"})
    out = cli.ok("audit")
    assert "2 entries" in out
    [publish] = [line for line in out.splitlines() if "publish" in line]
    for shown in ("token:alice", "roads/main@v1", job_id[:8], "version=1"):
        assert shown in publish
    assert job_id[:9] not in publish
    assert "role=reader" in out
    out = cli.ok("audit", "--limit", "1")
    assert "1 entries (older ones not shown" in out
    assert "roads/main@v1" not in out
    out = cli.ok("audit", "--target", "roads")
    assert "roads/main@v1" in out
    assert "bob" not in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--action", "delete"], "--action 'delete' is not one of publish"),
        (["--since", "yesterday"], "--since 'yesterday' is neither a span"),
    ],
)
def test_bad_options_say_what_is_wrong(cli: Cli, args: list[str], says: str) -> None:
    result = cli("audit", *args)
    assert isinstance(result.exception, InputError)
    assert says in str(result.exception)


def test_the_first_admin_token_is_recorded_as_system(
    platform: Platform, settings: Settings
) -> None:
    path = ensure_admin_token(platform.tokens, settings.home)
    assert path is not None
    [entry] = platform.audit.entries()
    assert (entry.actor, entry.action, entry.target, entry.details) == (
        "system",
        "token_create",
        "admin",
        {"role": "admin", "clearance": "restricted"},
    )
    assert_no_secret(platform, path.read_text().strip())
    assert ensure_admin_token(platform.tokens, settings.home) is None
    assert len(platform.audit.entries()) == 1
