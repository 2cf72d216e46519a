"""``geoetl audit``: who did what to which dataset or token, and when (newest first)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from geoetl.cli.render import JOB_ID_CHARS, console
from geoetl.cli.state import get_state
from geoetl.errors import InputError

if TYPE_CHECKING:
    from geoetl.audit import AuditEntry

AGO = re.compile(r"^(\d{1,9})([smhdw])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DETAILS_CHARS = 60


def since_epoch(value: str, now: float | None = None) -> float:
    """``--since`` as epoch seconds: a span back from now (``30m``, ``24h``, ``7d``) or RFC 3339."""
    from geoetl.api.params import parse_rfc3339

    match = AGO.match(value.strip().lower())
    if match:
        return (time.time() if now is None else now) - int(match[1]) * SECONDS[match[2]]
    try:
        return parse_rfc3339(value).timestamp()
    except InputError:
        raise InputError(
            f"--since {value!r} is neither a span such as 30m, 24h or 7d "
            "nor an RFC 3339 date-time such as 2024-05-01T00:00:00Z"
        ) from None


def summary(details: dict[str, Any] | None) -> str:
    """Details as ``key=value`` pairs, cut to fit a table cell."""
    if not details:
        return ""
    text = ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in details.items()
    )
    return text if len(text) <= DETAILS_CHARS else text[: DETAILS_CHARS - 1] + "…"


def entries_table(entries: list[AuditEntry], more: bool) -> Table:
    """One line per entry, newest first."""
    title = f"{len(entries)} entries" + (" (older ones not shown: raise --limit)" if more else "")
    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("action", no_wrap=True)
    table.add_column("target", overflow="fold")
    table.add_column("job", no_wrap=True)
    table.add_column("details", overflow="fold")
    for e in entries:
        table.add_row(
            datetime.fromtimestamp(e.at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S"),
            escape(e.actor),
            e.action,
            escape(e.target),
            (e.job_id or "")[:JOB_ID_CHARS],
            escape(summary(e.details)),
        )
    return table


def audit(
    ctx: typer.Context,
    action: Annotated[
        str | None, typer.Option(help="Only this action (publish, token_create, …).")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (e.g. token:alice).")] = None,
    target: Annotated[
        str | None, typer.Option(help="Only this target, or its prefix up to '@' or '/'.")
    ] = None,
    job: Annotated[str | None, typer.Option(help="Only this job (id or unique prefix).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only since: 30m, 24h, 7d or an RFC 3339 date-time.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 50,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line.")
    ] = False,
) -> None:
    """The audit log: publications, approvals, token changes; newest first."""
    from geoetl.audit import ACTIONS

    if action is not None and action not in ACTIONS:
        raise InputError(f"--action {action!r} is not one of {', '.join(ACTIONS)}")
    platform = get_state(ctx).platform
    job_id = None
    if job is not None:
        from geoetl.engine.queries import resolve_job_id

        job_id = resolve_job_id(platform.queries, job)
    found = platform.audit.entries(
        actor=actor,
        action=action,
        target=target,
        job_id=job_id,
        since=None if since is None else since_epoch(since),
        limit=limit + 1,
    )
    entries = found[:limit]
    if json_output:
        for e in entries:
            typer.echo(json.dumps(e.as_json()))
        return
    console.print(entries_table(entries, more=len(found) > limit))
