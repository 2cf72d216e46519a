"""Principals: who a request (or the local CLI) acts as, with a role and a clearance.

Roles are ordered (reader < publisher < admin): a reader reads, a publisher also
publishes at or below its clearance, an admin also steers others' jobs and manages
tokens. A clearance is the most sensitive access level the principal may see; what
it actually sees on a deployment is capped by that deployment's audience (its
ceiling), see :meth:`Principal.levels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geoetl.catalog.models import ACCESS_ORDER, AccessLevel, normalize_access_level
from geoetl.errors import InputError

Role = Literal["reader", "publisher", "admin"]
ROLE_ORDER: tuple[Role, ...] = ("reader", "publisher", "admin")


def normalize_role(value: str) -> Role:
    """Case-insensitive role; InputError for anything else."""
    lowered = value.strip().lower()
    if lowered not in ROLE_ORDER:
        raise InputError(f"role {value!r} is not one of {', '.join(ROLE_ORDER)}")
    return lowered  # type: ignore[return-value,unused-ignore]


def lowest(*levels: str) -> AccessLevel:
    """The least sensitive of ``levels``."""
    return ACCESS_ORDER[min(ACCESS_ORDER.index(normalize_access_level(v)) for v in levels)]


def level_above(level: str, other: str) -> bool:
    """Whether ``level`` is more sensitive than ``other``."""
    return ACCESS_ORDER.index(normalize_access_level(level)) > ACCESS_ORDER.index(
        normalize_access_level(other)
    )


@dataclass(frozen=True)
class Principal:
    """Who is acting: a token's name, an OIDC subject, ``anonymous`` or ``local``."""

    name: str
    role: Role
    clearance: AccessLevel
    authenticated: bool
    via: Literal["anonymous", "token", "oidc", "local"] = "token"

    def has_role(self, role: Role) -> bool:
        """Whether this principal's role is ``role`` or above it."""
        return self.authenticated and ROLE_ORDER.index(self.role) >= ROLE_ORDER.index(role)

    @property
    def is_admin(self) -> bool:
        """Admins steer everyone's jobs and manage tokens."""
        return self.has_role("admin")

    def levels(self, ceiling: str) -> list[AccessLevel]:
        """Access levels this principal sees on a deployment whose audience is ``ceiling``."""
        top = ACCESS_ORDER.index(lowest(self.clearance, ceiling))
        return list(ACCESS_ORDER[: top + 1])


def anonymous(clearance: str) -> Principal:
    """A caller without credentials: reads at ``clearance``, never writes."""
    return Principal(
        "anonymous", "reader", normalize_access_level(clearance), False, via="anonymous"
    )


LOCAL_ADMIN = Principal("local", "admin", "restricted", True, via="local")
"""The local CLI: it has the home's files, so it acts as an admin without a token."""
