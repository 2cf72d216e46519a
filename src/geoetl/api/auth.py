"""``/auth``: who am I, and token management (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from geoetl.api.deps import PlatformDep
from geoetl.api.security import AdminDep, CallerDep
from geoetl.auth.principal import Role
from geoetl.catalog.models import AccessLevel
from geoetl.engine.models import iso

router = APIRouter(prefix="/auth", tags=["auth"])


class Whoami(BaseModel):
    """The caller as this deployment sees it."""

    name: str
    role: Role
    clearance: AccessLevel
    authenticated: bool
    sees: list[str] = Field(description="Access levels visible to the caller here.")


class NewToken(BaseModel):
    """A token to create."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    role: Role
    clearance: AccessLevel


@router.get("/whoami", response_model=Whoami)
def whoami(caller: CallerDep, platform: PlatformDep) -> Whoami:
    """The caller's name, role and clearance. Anyone."""
    return Whoami(
        name=caller.name,
        role=caller.role,
        clearance=caller.clearance,
        authenticated=caller.authenticated,
        sees=caller.levels(platform.settings.audience),
    )


@router.get("/tokens")
def list_tokens(platform: PlatformDep, caller: AdminDep) -> list[dict[str, Any]]:
    """Every token (never a secret). Admins."""
    return [
        {
            "name": t.name,
            "role": t.role,
            "clearance": t.clearance,
            "active": t.active,
            "created_at": iso(t.created_at),
            "revoked_at": iso(t.revoked_at),
            "last_used_at": iso(t.last_used_at),
        }
        for t in platform.tokens.list()
    ]


@router.post("/tokens", status_code=201)
def create_token(body: NewToken, platform: PlatformDep, caller: AdminDep) -> dict[str, str]:
    """Create a token; its secret is in this answer only. Admins."""
    secret = platform.tokens.create(body.name, body.role, body.clearance)
    platform.audit.record(
        caller.name,
        "token_create",
        body.name,
        details={"role": body.role, "clearance": body.clearance},
    )
    return {"name": body.name, "role": body.role, "clearance": body.clearance, "token": secret}


@router.delete("/tokens/{name}", status_code=204)
def revoke_token(
    name: Annotated[str, Path(max_length=100)], platform: PlatformDep, caller: AdminDep
) -> None:
    """Revoke a token. Admins."""
    platform.tokens.revoke(name)
    platform.audit.record(caller.name, "token_revoke", name)
