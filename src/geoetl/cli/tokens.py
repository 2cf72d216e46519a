"""``geoetl tokens``: API tokens for the HTTP API (the local CLI itself needs none)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from geoetl.auth.principal import LOCAL_ADMIN, normalize_role
from geoetl.catalog.models import normalize_access_level
from geoetl.cli.render import console
from geoetl.cli.state import get_state

app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="A name for the token (who or what uses it).")],
    role: Annotated[str, typer.Option(help="reader, publisher or admin.")] = "reader",
    clearance: Annotated[str, typer.Option(help="public, ouo or restricted.")] = "public",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a token; its secret is printed once and stored only as a hash."""
    platform = get_state(ctx).platform
    secret = platform.tokens.create(name, role, clearance)
    details = {"role": normalize_role(role), "clearance": normalize_access_level(clearance)}
    platform.audit.record(LOCAL_ADMIN.name, "token_create", name, details=details)
    doc = {"name": name, **details}
    if as_json:
        typer.echo(json.dumps({**doc, "token": secret}))
        return
    console.print(
        f"token [bold]{name}[/] ({doc['role']}, clearance {doc['clearance']}); "
        "it is shown only now — send it as 'Authorization: Bearer <token>':",
        highlight=False,
    )
    typer.echo(secret)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every token with its role, clearance and state (never the secret)."""
    tokens = get_state(ctx).platform.tokens.list()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": t.name,
                        "role": t.role,
                        "clearance": t.clearance,
                        "active": t.active,
                        "created_at": t.created_at,
                        "revoked_at": t.revoked_at,
                        "last_used_at": t.last_used_at,
                    }
                    for t in tokens
                ]
            )
        )
        return
    table = Table("name", "role", "clearance", "state")
    for t in tokens:
        table.add_row(t.name, t.role, t.clearance, "active" if t.active else "revoked")
    console.print(table)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
) -> None:
    """Revoke a token: it stops working at once."""
    platform = get_state(ctx).platform
    platform.tokens.revoke(name)
    platform.audit.record(LOCAL_ADMIN.name, "token_revoke", name)
    console.print(f"revoked {name}")
