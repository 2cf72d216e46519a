"""``GET /audit``: the audit log for admins, newest first, paged by an id cursor."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from geoetl.api.deps import PlatformDep
from geoetl.api.params import parse_rfc3339
from geoetl.api.security import AdminDep
from geoetl.audit import ACTIONS
from geoetl.errors import InputError

router = APIRouter(tags=["audit"])


class AuditEntryView(BaseModel):
    """One recorded action."""

    id: int
    at: str
    actor: str
    action: str
    target: str
    job_id: str | None
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    """A page of entries, newest first; a ``next`` link while older ones follow."""

    entries: list[AuditEntryView]
    links: list[dict[str, str]]


def epoch(name: str, value: str | None) -> float | None:
    """An RFC 3339 query parameter as epoch seconds; InputError naming ``name``."""
    if value is None:
        return None
    try:
        return parse_rfc3339(value).timestamp()
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None


@router.get("/audit", response_model=AuditPage)
def list_audit(
    request: Request,
    platform: PlatformDep,
    caller: AdminDep,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[
        str | None, Query(max_length=30, json_schema_extra={"enum": list(ACTIONS)})
    ] = None,
    target: Annotated[
        str | None,
        Query(max_length=400, description="A target, or its prefix up to '@' or '/'."),
    ] = None,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(description="RFC 3339; entries at or after.")] = None,
    until: Annotated[str | None, Query(description="RFC 3339; entries before.")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="Only entries older than this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Who did what to which dataset or token, and when; newest first. Admins."""
    if action is not None and action not in ACTIONS:
        raise InputError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    start, end = epoch("since", since), epoch("until", until)
    if start is not None and end is not None and start > end:
        raise InputError(f"since {since} is after until {until}")
    # One entry more than the page says whether an older page follows.
    found = platform.audit.entries(
        actor=actor,
        action=action,
        target=target,
        job_id=job_id,
        since=start,
        until=end,
        before_id=before,
        limit=limit + 1,
    )
    page = found[:limit]
    base = str(request.url_for("list_audit"))
    links = [{"rel": "self", "href": str(request.url), "type": "application/json"}]
    if len(found) > limit:
        query = {**dict(request.query_params), "before": str(page[-1].id), "limit": str(limit)}
        links.append(
            {"rel": "next", "href": f"{base}?{urlencode(query)}", "type": "application/json"}
        )
    return AuditPage(entries=[AuditEntryView(**e.as_json()) for e in page], links=links)
