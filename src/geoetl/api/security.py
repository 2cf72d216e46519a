"""Who is calling, what they see, and who may write: the API's trust boundary.

Every route states its caller requirement through one of these dependencies:

- :data:`CallerDep` — anyone; the principal decides what is visible;
- :data:`LevelsDep` — the access levels the caller sees on this deployment: its
  clearance capped by ``GEOETL_AUDIENCE`` (anonymous callers read at
  ``GEOETL_ANONYMOUS_CLEARANCE``);
- :data:`PublisherDep` / :data:`AdminDep` — a token with that role at least
  (401 without credentials, 403 with too small a role).

Credentials are ``Authorization: Bearer <secret>``: a geoetl API token, or a signed
JWT when OIDC is configured. Bad credentials are a 401 on every route, never a silent
fall-back to anonymous.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from geoetl.auth.oidc import OidcError, OidcVerifier
from geoetl.auth.principal import Principal, Role, anonymous
from geoetl.auth.tokens import PREFIX
from geoetl.errors import Forbidden, Unauthorized
from geoetl.platform import Platform

log = logging.getLogger(__name__)


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_caller(request: Request) -> Principal:
    """The principal of this request (resolved once per request)."""
    cached: Principal | None = getattr(request.state, "geoetl_caller", None)
    if cached is not None:
        return cached
    platform = _platform(request)
    settings = platform.settings
    header = request.headers.get("authorization")
    if header is None:
        principal = anonymous(settings.anonymous_clearance)
    else:
        scheme, _, credentials = header.strip().partition(" ")
        token = credentials.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send credentials as 'Authorization: Bearer <token>'")
        found: Principal | None = None
        if token.startswith(PREFIX):
            found = platform.tokens.authenticate(token)
        else:
            verifier: OidcVerifier | None = getattr(request.app.state, "oidc", None)
            if verifier is not None:
                try:
                    found = verifier.verify(token)
                except OidcError as exc:
                    log.info("bearer token refused: %s", exc)
        if found is None:
            raise Unauthorized("the bearer token is not valid (unknown, revoked or expired)")
        principal = found
    request.state.geoetl_caller = principal
    return principal


async def resolve_caller(request: Request) -> Principal:
    """:func:`get_caller` as a dependency: every route's, resolved once per request.

    A request without credentials is resolved here, on the event loop (nothing to look
    up); a token may need the database, so it is checked on a worker thread.
    """
    if "authorization" not in request.headers:
        return get_caller(request)
    return await run_in_threadpool(get_caller, request)


CallerDep = Annotated[Principal, Depends(resolve_caller)]


def caller_levels(request: Request) -> list[str]:
    """Access levels the caller may see here: clearance capped by the deployment."""
    return list(get_caller(request).levels(_platform(request).settings.audience))


async def _levels(_caller: CallerDep, request: Request) -> list[str]:
    # The caller is resolved (and cached on the request) by the dependency first.
    return caller_levels(request)


LevelsDep = Annotated[list[str], Depends(_levels)]


def require(role: Role) -> object:
    """A dependency admitting callers whose role is ``role`` or above."""

    async def check(caller: CallerDep) -> Principal:
        if not caller.authenticated:
            raise Unauthorized(f"this needs a {role} token: send 'Authorization: Bearer <token>'")
        if not caller.has_role(role):
            raise Forbidden(f"this needs the {role} role; {caller.name} is a {caller.role}")
        return caller

    return Depends(check)


PublisherDep = Annotated[Principal, require("publisher")]
AdminDep = Annotated[Principal, require("admin")]
