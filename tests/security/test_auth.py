"""Identity: who may write, and that bad credentials never pass for anyone.

Every write needs a token (401 with ``WWW-Authenticate: Bearer`` without one), a reader
token is 403 on writes, a bad or revoked token is 401 on any route (never a silent
fall-back to anonymous), token management is for admins only, and forged JWTs are
refused by the real OIDC verifier on the ``ouo`` deployment.
"""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.security.conftest import (
    TOKENS,
    Harness,
    assert_alive,
    nothing_stored,
    raster_bytes,
    raw_request,
)

WRITES = [
    "submit-raster",
    "submit-vector",
    "upload",
    "cancel",
    "resubmit",
    "create-token",
    "revoke-token",
]


def write_request(h: Harness, case: str, tmp: Path) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx kwargs) of a write; jobs and sources are the seeded ones."""
    elev, nc = h.seeds["elev_public"], h.seeds["nc_public"]
    return {
        "submit-raster": (
            "POST",
            "/jobs/process_raster",
            {
                "json": {
                    "source": elev.source,
                    "collection_id": "sec-intruder",
                    "item_id": "intruder",
                    "access_level": "public",
                }
            },
        ),
        "submit-vector": (
            "POST",
            "/jobs/process_vector",
            {"json": {"source": nc.source, "dataset_id": "intruder", "access_level": "public"}},
        ),
        "upload": (
            "POST",
            "/ingest",
            {
                "params": {"filename": "intruder.tif", "access_level": "public"},
                "content": raster_bytes(tmp),
            },
        ),
        "cancel": ("POST", f"/jobs/{elev.job_id}/cancel", {}),
        "resubmit": ("POST", f"/jobs/{elev.job_id}/resubmit", {}),
        "create-token": (
            "POST",
            "/auth/tokens",
            {"json": {"name": "sec-intruder", "role": "admin", "clearance": "restricted"}},
        ),
        "revoke-token": ("DELETE", "/auth/tokens/sec-admin", {}),
    }[case]


def token_names(h: Harness) -> dict[str, bool]:
    """Token name -> active, from ``geoetl tokens list --json``."""
    done = h.cli("tokens", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {t["name"]: t["active"] for t in json.loads(done.stdout)}


def job_runs(h: Harness) -> int:
    """How many jobs the seeded public raster's job id has (runs of it)."""
    import contextlib
    import sqlite3

    db = h.home / "geoetl.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        base = h.seeds["elev_public"].job_id
        return int(c.execute("SELECT count(*) FROM jobs WHERE base_id = ?", (base,)).fetchone()[0])


@pytest.mark.parametrize("case", WRITES)
@pytest.mark.parametrize("deployment", ["ouo", "pub"])
def test_anonymous_writes_are_401(
    harness: Harness, tmp_path: Path, case: str, deployment: str, request: pytest.FixtureRequest
) -> None:
    if case.endswith("token"):
        request.getfixturevalue("tokens")  # sec-admin exists, to see it survive
    method, path, kwargs = write_request(harness, case, tmp_path)
    runs = job_runs(harness)
    with nothing_stored(harness.home):
        response = harness.api(deployment).request(method, path, **kwargs)
    assert response.status_code == 401, response.text
    assert "bearer" in response.headers.get("www-authenticate", "").lower()
    assert job_runs(harness) == runs
    if case.endswith("token"):
        names = token_names(harness)
        assert "sec-intruder" not in names
        assert names.get("sec-admin") is True
    assert_alive(harness.urls[deployment])


@pytest.mark.parametrize("case", WRITES)
def test_reader_writes_are_403(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, case: str
) -> None:
    method, path, kwargs = write_request(harness, case, tmp_path)
    runs = job_runs(harness)
    with nothing_stored(harness.home):
        response = harness.api("ouo", tokens["sec-reader"]).request(method, path, **kwargs)
    assert response.status_code == 403, response.text
    assert job_runs(harness) == runs
    if case.endswith("token"):
        names = token_names(harness)
        assert "sec-intruder" not in names
        assert names.get("sec-admin") is True
    assert_alive(harness.ouo)


@pytest.mark.parametrize("who", ["sec-pub-ouo", "sec-reader"])
@pytest.mark.parametrize("route", ["list", "create", "revoke"])
def test_token_routes_by_non_admins_are_403(
    harness: Harness, tokens: dict[str, str], who: str, route: str
) -> None:
    api = harness.api("ouo", tokens[who])
    if route == "list":
        response = api.get("/auth/tokens")
    elif route == "create":
        body = {"name": "sec-escalated", "role": "admin", "clearance": "restricted"}
        response = api.post("/auth/tokens", json=body)
    else:
        response = api.delete("/auth/tokens/sec-admin")
    assert response.status_code == 403, response.text
    names = token_names(harness)
    assert "sec-escalated" not in names
    assert names.get("sec-admin") is True
    assert_alive(harness.ouo)


def test_token_lifecycle_over_the_api_never_shows_stored_secrets(
    harness: Harness, tokens: dict[str, str]
) -> None:
    admin = harness.api("ouo", tokens["sec-admin"])
    made = admin.post(
        "/auth/tokens", json={"name": "sec-api-made", "role": "reader", "clearance": "public"}
    )
    assert made.status_code == 201, made.text
    secret = made.json()["token"]
    assert harness.api("pub", secret).get("/auth/whoami").json()["authenticated"] is True

    listed = admin.get("/auth/tokens")
    assert listed.status_code == 200, listed.text
    text = listed.text
    for value in [*tokens.values(), secret]:
        assert value not in text
    assert "hash" not in text.lower()
    assert {"sec-admin", "sec-api-made"} <= {t["name"] for t in listed.json()}
    cli = harness.cli("tokens", "list", "--json")
    assert all(value not in cli.stdout for value in [*tokens.values(), secret])

    gone = admin.delete("/auth/tokens/sec-api-made")
    assert gone.status_code in (200, 204), gone.text
    # Revocation works at once, on both deployments.
    for deployment in ("ouo", "pub"):
        response = harness.api(deployment, secret).get("/auth/whoami")
        assert response.status_code == 401, response.text
    assert_alive(harness.ouo)


@pytest.mark.parametrize(
    "name", ["../sec-x", "sec x", "<script>", "a" * 300, "", "sec-admin"], ids=repr
)
def test_token_names_are_validated(harness: Harness, tokens: dict[str, str], name: str) -> None:
    response = harness.api("ouo", tokens["sec-admin"]).post(
        "/auth/tokens", json={"name": name, "role": "reader", "clearance": "public"}
    )
    # A name that is taken is a conflict; one that is malformed is a bad request.
    assert response.status_code in ((409,) if name == "sec-admin" else (400, 422)), response.text
    assert_alive(harness.ouo)


@pytest.mark.parametrize(
    "path",
    [
        "/auth/whoami",
        "/stac",
        "/stac/search",
        "/collections",
        "/jobs",
        "/workflows",
        "/health",
        "/raster/collections/sec-mixed/items/elev-public/info",
        "/stac/collections/sec-mixed/items/elev-public/assets/data",
        "/ingest",
    ],
)
def test_revoked_token_is_401_on_any_route(
    harness: Harness, tokens: dict[str, str], tmp_path: Path, path: str
) -> None:
    api = harness.api("ouo", tokens["sec-revoked"])
    with nothing_stored(harness.home):
        if path == "/ingest":
            response = api.upload("revoked.tif", raster_bytes(tmp_path), access_level="public")
        else:
            response = api.get(path)
    assert response.status_code == 401, response.text
    assert "bearer" in response.headers.get("www-authenticate", "").lower()
    assert_alive(harness.ouo)


MALFORMED = {
    "scheme-only": lambda s: "Bearer",
    "blank-token": lambda s: "Bearer    ",
    "basic": lambda s: "Basic " + base64.b64encode(b"admin:admin").decode(),
    "wrong-scheme": lambda s: f"Token {s}",
    "unknown-token": lambda s: "Bearer geoetl_" + "A" * 43,
    "token-plus-one": lambda s: f"Bearer {s}x",
    "token-minus-one": lambda s: f"Bearer {s[:-1]}",
    "two-tokens": lambda s: f"Bearer {s} {s}",
    "comma-list": lambda s: f"Bearer {s}, Bearer {s}",
    "huge": lambda s: "Bearer geoetl_" + "a" * 6000,
    "prefix-only": lambda s: "Bearer geoetl_",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("deployment", ["ouo", "pub"])
def test_malformed_authorization_is_401(
    harness: Harness, tokens: dict[str, str], case: str, deployment: str
) -> None:
    header = MALFORMED[case](tokens["sec-admin"])
    for path in ("/auth/whoami", "/stac/collections"):
        # Sent as raw bytes: the HTTP client would refuse some of these headers.
        status, body = raw_request(
            harness.urls[deployment], path, headers=f"Authorization: {header}\r\n"
        )
        assert status == 401, f"{path}: {status} {body[:300]}"
    assert_alive(harness.urls[deployment])


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{b64(header)}.{b64(claims)}."


def forged_jwt(h: Harness, case: str) -> str:
    """A JWT that names an admin but must not be accepted."""
    now = int(time.time())
    claims = {
        "iss": "https://issuer.security.test",
        "aud": "geoetl-security",
        "sub": "mallory",
        "roles": ["admin"],
        "clearance": "restricted",
        "iat": now,
        "exp": now + 600,
    }
    if case == "alg-none":
        return _unsigned(claims, {"alg": "none", "typ": "JWT", "kid": "security-test-key"})
    if case == "alg-None-capitalised":
        return _unsigned(claims, {"alg": "None", "typ": "JWT"})
    if case == "hs256-guessed-secret":
        return jwt.encode(claims, "secret" * 6, algorithm="HS256")
    if case == "hs256-public-key-as-secret":
        # Algorithm confusion: HMAC keyed with the issuer's public key (which anyone has).
        jwks = json.loads((h.root / "jwks.json").read_text())
        key = jwks["keys"][0]["n"].encode()
        header = {"alg": "HS256", "typ": "JWT", "kid": "security-test-key"}
        return jwt.encode(claims, key, algorithm="HS256", headers=header)
    if case == "expired":
        return h.jwt(roles=["admin"], clearance="restricted", exp=now - 3600, iat=now - 7200)
    if case == "wrong-issuer":
        return h.jwt(roles=["admin"], iss="https://evil.example")
    if case == "wrong-audience":
        return h.jwt(roles=["admin"], aud="someone-else")
    if case == "other-key":
        from cryptography.hazmat.primitives.asymmetric import rsa

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, other, algorithm="RS256", headers={"kid": "security-test-key"})
    if case == "tampered-payload":
        good = h.jwt(roles=["reader"], clearance="public")
        head, _, sig = good.split(".")
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"{head}.{body}.{sig}"
    raise AssertionError(case)


FORGED = [
    "alg-none",
    "alg-None-capitalised",
    "hs256-guessed-secret",
    "hs256-public-key-as-secret",
    "expired",
    "wrong-issuer",
    "wrong-audience",
    "other-key",
    "tampered-payload",
]


def test_a_validly_signed_oidc_token_is_accepted(harness: Harness) -> None:
    # The control for the forged tokens below: the issuer's real signature works.
    token = harness.jwt(roles=["publisher"], clearance="ouo", preferred_username="oidc-user")
    me = harness.api("ouo", token).get("/auth/whoami")
    assert me.status_code == 200, me.text
    doc = me.json()
    assert (doc["role"], doc["clearance"], doc["authenticated"]) == ("publisher", "ouo", True)


@pytest.mark.parametrize("case", FORGED)
def test_forged_jwt_is_401(harness: Harness, tmp_path: Path, case: str) -> None:
    token = forged_jwt(harness, case)
    for deployment in ("ouo", "pub"):
        api = harness.api(deployment, token)
        me = api.get("/auth/whoami")
        assert me.status_code == 401, f"{deployment}: {me.text}"
        with nothing_stored(harness.home):
            upload = api.upload("forged.tif", raster_bytes(tmp_path), access_level="public")
        assert upload.status_code == 401, f"{deployment}: {upload.text}"
        assert_alive(harness.urls[deployment])


def test_whoami_reports_each_identity(harness: Harness, tokens: dict[str, str]) -> None:
    anonymous = harness.api("ouo").get("/auth/whoami")
    assert anonymous.status_code == 200, anonymous.text
    doc = anonymous.json()
    assert (doc["authenticated"], doc["role"], doc["clearance"]) == (False, "reader", "public")
    for name, (role, clearance) in TOKENS.items():
        if name == "sec-revoked":
            continue
        me = harness.api("pub", tokens[name]).get("/auth/whoami")
        assert me.status_code == 200, me.text
        doc = me.json()
        assert name in doc["name"]
        assert (doc["role"], doc["clearance"], doc["authenticated"]) == (role, clearance, True)
    assert_alive(harness.pub)


def test_first_start_writes_a_private_admin_token(harness: Harness) -> None:
    path = harness.home / "admin-token"
    assert path.is_file(), f"no {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    secret = path.read_text().strip()
    me = harness.api("pub", secret).get("/auth/whoami")
    assert me.status_code == 200, me.text
    assert (me.json()["role"], me.json()["authenticated"]) == ("admin", True)
    # The first server says where it put it, and never what it is.
    log = harness.logs["ouo"].read_text(errors="replace")
    assert "admin-token" in log
    assert secret not in log
    # Only one bootstrap token although two servers started on the home.
    names = token_names(harness)
    assert len([n for n in names if not n.startswith("sec-")]) == 1, names


def test_no_secret_reaches_a_server_log(harness: Harness, tokens: dict[str, str]) -> None:
    # Every probe so far sent these as bearer tokens; none may be written down.
    for name in ("sec-pub-ouo", "sec-admin"):
        assert harness.api("pub", tokens[name]).get("/jobs?limit=1").status_code == 200
    bootstrap = (harness.home / "admin-token").read_text().strip()
    for deployment, log in harness.logs.items():
        text = log.read_text(errors="replace")
        leaked = [n for n, secret in tokens.items() if secret in text]
        assert not leaked, f"{deployment} log holds the secrets of {leaked}"
        assert bootstrap not in text, f"{deployment} log holds the bootstrap secret"


def test_anonymous_job_list_shows_no_submitters_secret(harness: Harness) -> None:
    # A job view may say who submitted it; it never carries credentials.
    response = httpx.get(f"{harness.pub}/jobs", params={"limit": 1000}, timeout=30)
    assert response.status_code == 200, response.text
    assert "geoetl_" not in response.text
    assert "Bearer" not in response.text
