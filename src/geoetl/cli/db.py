"""``geoetl db create-reader-role``: a database role for eoAPI's servers, within a clearance."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from geoetl.cli.render import console, err_console
from geoetl.cli.state import get_state


def create_reader_role(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Role name: lowercase letters, digits and '_' (at most 63).")
    ],
    clearance: Annotated[
        str, typer.Option(help="What the role may read: public, ouo or restricted.")
    ] = "public",
    password: Annotated[
        str | None,
        typer.Option(
            envvar="GEOETL_READER_PASSWORD",
            help=(
                "Login password (or GEOETL_READER_PASSWORD, which keeps it out of the "
                "process list); without it a new role has none and an existing one keeps its."
            ),
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create or update a PostgreSQL login role for stac-fastapi-pgstac, titiler-pgstac, TiPG.

    The role sees only STAC items, collections and feature tables at or below its
    clearance (row-level security on pgSTAC, grants on the feature tables, kept up to
    date as datasets are published). Needs PostgreSQL (GEOETL_DATABASE_URL) and a
    database user allowed to create roles.
    """
    from geoetl.auth.dbroles import ReaderRoles
    from geoetl.engine.db import make_engine
    from geoetl.errors import InputError

    settings = get_state(ctx).settings
    engine = make_engine(settings.db_url)
    try:
        if engine.dialect.name != "postgresql":
            err_console.print(
                "error: reader roles need PostgreSQL: this deployment uses an embedded "
                "SQLite database (set GEOETL_DATABASE_URL=postgresql://…)",
                highlight=False,
            )
            raise typer.Exit(2)
        try:
            role = ReaderRoles(engine, settings.postgis_schema).create(name, clearance, password)
        except InputError as exc:
            err_console.print(f"error: {exc}", highlight=False)
            raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if as_json:
        doc = {
            "name": role.name,
            "clearance": role.clearance,
            "feature_tables": list(role.feature_tables),
            "password_set": password is not None,
        }
        typer.echo(json.dumps(doc))
        return
    tables = ", ".join(role.feature_tables) or "none yet"
    console.print(
        f"reader role [bold]{role.name}[/] (clearance {role.clearance}): pgSTAC items and "
        f"collections up to {role.clearance}; feature tables in {settings.postgis_schema}: "
        f"{tables}",
        highlight=False,
    )
    if password is None:
        console.print(
            "no password was given: a new role has none (pass --password or set "
            "GEOETL_READER_PASSWORD to set one)",
            highlight=False,
        )
