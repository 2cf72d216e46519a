"""API tokens in the real database, and OIDC JWTs signed with a key pair made here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from geoetl.api.app import create_app
from geoetl.auth.oidc import OidcError, OidcVerifier
from geoetl.auth.tokens import ensure_admin_token
from geoetl.errors import Conflict, InputError, NotFound
from geoetl.platform import Platform
from geoetl.settings import Settings

ISSUER = "https://login.example.org/tenant/v2.0"


def test_a_token_authenticates_until_revoked(platform: Platform) -> None:
    secret = platform.tokens.create("alice", "Publisher", "OUO")
    principal = platform.tokens.authenticate(secret)
    assert principal is not None
    assert (principal.name, principal.role, principal.clearance) == (
        "token:alice",
        "publisher",
        "ouo",
    )
    assert platform.tokens.authenticate(secret + "x") is None
    assert platform.tokens.authenticate("geoetl_" + "A" * 43) is None
    listed = {t.name: t for t in platform.tokens.list()}
    assert listed["alice"].active
    assert listed["alice"].last_used_at is not None
    platform.tokens.revoke("alice")
    assert platform.tokens.authenticate(secret) is None
    assert not platform.tokens.list()[0].active
    with pytest.raises(NotFound):
        platform.tokens.revoke("alice")


def test_secrets_are_stored_only_as_hashes(platform: Platform) -> None:
    secret = platform.tokens.create("bob", "reader", "public")
    with platform.store.read() as conn:
        rows = [tuple(map(str, r)) for r in conn.exec_driver_sql("SELECT * FROM api_tokens")]
    assert rows
    assert not any(secret in value for row in rows for value in row)


@pytest.mark.parametrize(
    ("name", "role", "clearance", "error"),
    [
        ("ok", "owner", "public", InputError),
        ("ok", "reader", "secret", InputError),
        ("../x", "reader", "public", InputError),
        ("", "reader", "public", InputError),
    ],
)
def test_bad_tokens_are_refused(
    platform: Platform, name: str, role: str, clearance: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        platform.tokens.create(name, role, clearance)


def test_names_are_unique(platform: Platform) -> None:
    platform.tokens.create("carol", "reader", "public")
    with pytest.raises(Conflict):
        platform.tokens.create("carol", "admin", "restricted")


def test_first_start_writes_an_admin_token_readable_by_its_owner_only(
    platform: Platform, settings: Settings
) -> None:
    path = ensure_admin_token(platform.tokens, settings.home)
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    principal = platform.tokens.authenticate(path.read_text().strip())
    assert principal is not None
    assert principal.is_admin
    assert ensure_admin_token(platform.tokens, settings.home) is None  # never twice


# -- OIDC -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[Any, Any]:
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return good, other


@pytest.fixture
def oidc_settings(settings: Settings, keys: tuple[Any, Any], tmp_path: Path) -> Settings:
    jwk = json.loads(RSAAlgorithm.to_jwk(keys[0].public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return settings.model_copy(
        update={
            "oidc_issuer": ISSUER,
            "oidc_audience": "api://geoetl",
            "oidc_jwks_file": jwks,
            "oidc_role_map": {"GeoEtl.Publish": "publisher"},
        }
    )


def _token(key: Any, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": "api://geoetl",
        "sub": "user-1",
        "preferred_username": "dana@example.org",
        "iat": now,
        "exp": now + 600,
        "roles": ["GeoEtl.Publish"],
        "clearance": "ouo",
        **claims,
    }
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, "RS256", headers={"kid": "k1"}
    )


def _hmac_signed_with(secret: bytes, now: int) -> str:
    # The classic confusion attack: HS256 keyed with the issuer's public key.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    claims = {"iss": ISSUER, "aud": "api://geoetl", "sub": "x", "exp": now + 60}
    payload = b64(json.dumps({**claims, "roles": ["admin"]}).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def test_a_signed_token_maps_roles_and_clearance(
    oidc_settings: Settings, keys: tuple[Any, Any]
) -> None:
    principal = OidcVerifier(oidc_settings).verify(_token(keys[0]))
    assert (principal.name, principal.role, principal.clearance) == (
        "oidc:dana@example.org",
        "publisher",
        "ouo",
    )
    admin = OidcVerifier(oidc_settings).verify(_token(keys[0], roles=["reader", "admin"]))
    assert admin.is_admin


@pytest.mark.parametrize(
    "case",
    [
        "other key",
        "expired",
        "issuer",
        "audience",
        "no role",
        "bad clearance",
        "alg none",
        "hs256 with the public key",
        "garbage",
    ],
)
def test_bad_tokens_are_refused_by_the_verifier(
    oidc_settings: Settings, keys: tuple[Any, Any], case: str
) -> None:
    good, other = keys
    now = int(time.time())
    public_pem = good.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = {
        "other key": lambda: _token(other),
        "expired": lambda: _token(good, exp=now - 3600, iat=now - 7200),
        "issuer": lambda: _token(good, iss="https://evil.example.org"),
        "audience": lambda: _token(good, aud="api://else"),
        "no role": lambda: _token(good, roles=["Visitor"]),
        "bad clearance": lambda: _token(good, clearance="top-secret"),
        "alg none": lambda: jwt.encode(
            {"iss": ISSUER, "aud": "api://geoetl", "sub": "x", "exp": now + 60, "roles": ["admin"]},
            None,
            "none",
        ),
        "hs256 with the public key": lambda: _hmac_signed_with(public_pem, now),
        "garbage": lambda: "a.b.c",
    }[case]()
    with pytest.raises(OidcError):
        OidcVerifier(oidc_settings).verify(token)


def test_the_api_accepts_oidc_tokens_and_refuses_forged_ones(
    oidc_settings: Settings, keys: tuple[Any, Any]
) -> None:
    with TestClient(create_app(oidc_settings)) as client:
        me = client.get(
            "/auth/whoami", headers={"Authorization": f"Bearer {_token(keys[0])}"}
        ).json()
        assert me == {
            "name": "oidc:dana@example.org",
            "role": "publisher",
            "clearance": "ouo",
            "authenticated": True,
            "sees": ["public", "ouo"],
        }
        forged = client.get("/auth/whoami", headers={"Authorization": f"Bearer {_token(keys[1])}"})
        assert forged.status_code == 401
        assert forged.headers["www-authenticate"].startswith("Bearer")
        anonymous = client.get("/auth/whoami").json()
        assert anonymous["authenticated"] is False
        assert anonymous["sees"] == ["public"]
