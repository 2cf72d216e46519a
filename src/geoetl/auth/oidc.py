"""OIDC bearer tokens: signed JWTs from an identity provider (Entra ID, Keycloak, …).

A token is accepted when its signature verifies against a key of the issuer's JWKS
(fetched from a URL, or read from a file), with an asymmetric algorithm, and its
``iss``, ``aud`` (when configured), ``exp`` and ``nbf`` hold. Roles come from a claim
(a string or a list; the highest mapped role wins) and the clearance from another;
an unmapped role means no role, and the token is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt

from geoetl.auth.principal import ROLE_ORDER, Principal, Role
from geoetl.catalog.models import ACCESS_ORDER, AccessLevel
from geoetl.settings import Settings

# Asymmetric algorithms only: an HMAC algorithm with the public key as the secret, or
# "none", would let anyone mint tokens.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


class OidcError(Exception):
    """The bearer token is not one this deployment accepts (the reason is logged)."""


class OidcVerifier:
    """Verifies JWT bearer tokens for one issuer."""

    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer is not None
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.role_claim = settings.oidc_role_claim
        self.clearance_claim = settings.oidc_clearance_claim
        self.role_map: dict[str, Role] = {r: r for r in ROLE_ORDER}
        for claim_value, role in settings.oidc_role_map.items():
            if role in ROLE_ORDER:
                self.role_map[claim_value] = role  # type: ignore[assignment,unused-ignore]
        self.default_clearance: AccessLevel = settings.oidc_default_clearance
        self._file_keys: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        if settings.oidc_jwks_file is not None:
            self._file_keys = jwt.PyJWKSet.from_dict(
                json.loads(Path(settings.oidc_jwks_file).read_text())
            )
        elif settings.oidc_jwks_url:
            self._client = jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True, timeout=5)
        else:
            raise ValueError("GEOETL_OIDC_ISSUER needs GEOETL_OIDC_JWKS_URL or _JWKS_FILE")

    def _key(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError(f"malformed token: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise OidcError(f"algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        try:
            if self._client is not None:
                return self._client.get_signing_key_from_jwt(token).key
        except jwt.PyJWTError as exc:
            raise OidcError(f"no signing key: {exc}") from None
        assert self._file_keys is not None
        keys = [k for k in self._file_keys.keys if kid is None or k.key_id == kid]
        if not keys:
            raise OidcError(f"no key with kid {kid!r} in the JWKS file")
        return keys[0].key

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; OidcError otherwise."""
        key = self._key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                audience=self.audience,
                options={
                    "require": ["exp", "iss", "sub"],
                    "verify_aud": self.audience is not None,
                },
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise OidcError(str(exc)) from None
        return self.principal(claims)

    def principal(self, claims: dict[str, Any]) -> Principal:
        """Role and clearance from verified claims."""
        raw = claims.get(self.role_claim)
        values = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
        roles = [self.role_map[v] for v in values if isinstance(v, str) and v in self.role_map]
        if not roles:
            raise OidcError(f"the token's {self.role_claim!r} claim names no known role")
        role = max(roles, key=ROLE_ORDER.index)
        level = claims.get(self.clearance_claim, self.default_clearance)
        if not isinstance(level, str) or level.strip().lower() not in ACCESS_ORDER:
            raise OidcError(f"the token's {self.clearance_claim!r} claim is not a clearance")
        name = claims.get("preferred_username") or claims["sub"]
        return Principal(
            name=f"oidc:{str(name)[:150]}",
            role=role,
            clearance=level.strip().lower(),  # type: ignore[arg-type]
            authenticated=True,
            via="oidc",
        )
