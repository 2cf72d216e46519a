"""API tokens: created with a role and a clearance, shown once, stored as a hash.

A secret is ``geoetl_`` followed by 43 URL-safe characters (256 random bits), so a
plain SHA-256 is enough to store it: there is nothing to guess that a slow hash would
protect. Lookups go by that hash; a revoked token stays listed with its revocation
time and never authenticates again. Upload owners (which principal uploaded which
bronze key) live here too: they decide who may publish a source.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from geoetl.audit import AuditLog
from geoetl.auth.principal import Principal, Role, normalize_role
from geoetl.auth.tables import api_tokens, upload_owners
from geoetl.catalog.models import AccessLevel, normalize_access_level
from geoetl.errors import Conflict, InputError, NotFound

PREFIX = "geoetl_"
ADMIN_TOKEN_FILE = "admin-token"
SYSTEM_ACTOR = "system"
"""The audit log's actor for what geoetl does on its own (the first admin token)."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
# Touching last_used_at on every request would make every read a write: once a minute.
_TOUCH_EVERY = 60.0


def token_hash(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its secret."""

    name: str
    role: Role
    clearance: AccessLevel
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


class TokenStore:
    """API tokens and upload owners in the platform database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with (
            self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn,
            conn.begin(),
        ):
            yield conn

    # -- tokens ---------------------------------------------------------------------------

    def create(self, name: str, role: str, clearance: str) -> str:
        """A new token; returns its secret, which is not kept anywhere."""
        if not NAME.match(name):
            raise InputError(
                f"token name {name!r} must be 1-100 letters, digits, '_', '.', '@' or '-', "
                "starting with a letter or digit"
            )
        role_ = normalize_role(role)
        level = normalize_access_level(clearance)
        secret = PREFIX + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(api_tokens).values(
                        name=name,
                        token_hash=token_hash(secret),
                        role=role_,
                        clearance=level,
                        created_at=time.time(),
                    )
                )
        except IntegrityError:
            raise Conflict(
                f"a token named {name!r} exists; revoke it first or choose another name"
            ) from None
        return secret

    def list(self) -> list[TokenInfo]:
        """Every token, active and revoked, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(api_tokens).order_by(api_tokens.c.name)).all()
        return [
            TokenInfo(
                name=r.name,
                role=r.role,
                clearance=r.clearance,
                created_at=r.created_at,
                revoked_at=r.revoked_at,
                last_used_at=r.last_used_at,
            )
            for r in rows
        ]

    def revoke(self, name: str) -> None:
        """Revoke a token by name; NotFound if there is no active token by that name."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(api_tokens)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            ).rowcount
        if not done:
            raise NotFound(f"no active token named {name!r}")

    def any_active(self) -> bool:
        """Whether any token can still authenticate."""
        with self._read() as conn:
            found = conn.execute(
                sa.select(api_tokens.c.name).where(api_tokens.c.revoked_at.is_(None)).limit(1)
            ).first()
        return found is not None

    def authenticate(self, secret: str) -> Principal | None:
        """The principal of an active token with this secret, else None."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        digest = token_hash(secret)
        with self._read() as conn:
            row = conn.execute(
                sa.select(api_tokens).where(
                    api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None)
                )
            ).first()
        if row is None or not secrets.compare_digest(row.token_hash, digest):
            return None
        now = time.time()
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(api_tokens)
                    .where(api_tokens.c.name == row.name)
                    .values(last_used_at=now)
                )
        return Principal(
            name=f"token:{row.name}",
            role=normalize_role(row.role),
            clearance=normalize_access_level(row.clearance),
            authenticated=True,
            via="token",
        )

    # -- upload owners --------------------------------------------------------------------

    def record_upload(self, source: str, owner: str) -> None:
        """Remember that ``owner`` uploaded the bronze key ``source`` (idempotent)."""
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(
                    sa.select(upload_owners.c.source).where(
                        upload_owners.c.source == source, upload_owners.c.owner == owner
                    )
                ).first()
                if exists is None:
                    conn.execute(
                        sa.insert(upload_owners).values(
                            source=source, owner=owner, created_at=time.time()
                        )
                    )
        except IntegrityError:
            pass  # the same upload recorded concurrently

    def uploaded_by(self, source: str, owner: str) -> bool:
        """Whether ``owner`` uploaded ``source``."""
        with self._read() as conn:
            found = conn.execute(
                sa.select(upload_owners.c.source).where(
                    upload_owners.c.source == source, upload_owners.c.owner == owner
                )
            ).first()
        return found is not None


def ensure_admin_token(
    tokens: TokenStore, home: Path, audit: AuditLog | None = None
) -> Path | None:
    """On a home without any token, create an admin token and write it to a file.

    The file is ``{home}/admin-token``, readable by its owner only (mode 0600), created
    exclusively (never overwritten). Returns its path when it was written now. The
    creation is recorded in ``audit`` (by default the audit log of the tokens' database)
    with the actor ``system``.
    """
    if tokens.any_active():
        return None
    path = home / ADMIN_TOKEN_FILE
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None  # written by an earlier start (its token may since be revoked)
    name = "admin"
    taken = {t.name for t in tokens.list()}
    for i in range(2, 1000):
        if name not in taken:
            break
        name = f"admin-{i}"
    try:
        secret = tokens.create(name, "admin", "restricted")
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    # Recorded once the secret is safe in its file: a failure here leaves a usable token.
    (audit or AuditLog(tokens.engine)).record(
        SYSTEM_ACTOR, "token_create", name, details={"role": "admin", "clearance": "restricted"}
    )
    return path
