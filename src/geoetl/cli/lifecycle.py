"""`geoetl unpublish` and `geoetl versions`: a dataset's versions, and withdrawing them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from geoetl.cli.render import console
from geoetl.cli.state import get_state


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def versions(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="STAC collection id.")],
    item: Annotated[str, typer.Argument(help="Item (or vector dataset) id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every version of a dataset: its status, job, source and when it was published."""
    history = get_state(ctx).platform.versions.history(collection, item)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "version": v.version,
                        "status": v.status,
                        "job_id": v.job_id,
                        "source": v.source_key,
                        "access_level": v.access_level,
                        "objects": v.objects,
                        "published_at": v.published_at,
                    }
                    for v in history
                ],
                indent=2,
            )
        )
        return
    if not history:
        console.print(f"{collection}/{item} has no versions (never published through geoetl)")
        return
    table = Table("version", "status", "level", "published", "job", "source", box=None)
    current = max((v.version for v in history if v.status == "published"), default=None)
    for v in history:
        mark = " (current)" if v.version == current else ""
        table.add_row(
            f"{v.version}{mark}",
            v.status,
            v.access_level,
            _when(v.published_at),
            v.job_id[:12],
            v.source_key,
        )
    console.print(table)


def _report(report: dict[str, Any]) -> None:
    verb = "would delete" if report["dry_run"] else "deleted"
    versions = ", ".join(f"v{n}" for n in report["versions"])
    console.print(f"{report['collection_id']}/{report['item_id']} {versions}: {verb}")
    for obj in report["objects"]:
        console.print(f"  object {obj['key']} ({int(obj.get('size') or 0):,} bytes)")
    for table in report["tables"]:
        console.print(f"  table  {table}")
    for item in report["items"]:
        console.print(f"  item   {item}")
    for collection in report["collections"]:
        console.print(f"  collection {collection} (left empty)")
    after = report.get("current_version_after")
    console.print(
        f"{len(report['objects'])} object(s), {report['bytes']:,} bytes; "
        + (f"version {after} is served afterwards" if after else "nothing is served afterwards")
    )
    if report["dry_run"]:
        console.print("dry run: nothing was deleted; pass --execute to unpublish")


def unpublish(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="STAC collection id.")],
    item: Annotated[str, typer.Argument(help="Item (or vector dataset) id.")],
    version: Annotated[
        int | None, typer.Option(help="One version; default every version.", min=1)
    ] = None,
    execute: Annotated[
        bool, typer.Option("--execute", help="Delete for real (default: report only).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Withdraw a dataset: a dry run by default, which lists exactly what would go."""
    from geoetl import lifecycle

    state = get_state(ctx)
    platform = state.platform
    if not execute:
        report = lifecycle.plan_unpublish(platform, collection, item, version).as_json(True)
    else:
        from geoetl.auth.principal import LOCAL_ADMIN
        from geoetl.cli.main import finish, run_in_process
        from geoetl.publish import authorize

        params: dict[str, Any] = {"collection_id": collection, "item_id": item, "dry_run": False}
        if version is not None:
            params["version"] = version
        workflow = platform.workflows.get("unpublish")
        params, level = authorize(platform, LOCAL_ADMIN, workflow, params)
        job_id, _ = platform.store.submit(
            "unpublish", params, submitted_by=LOCAL_ADMIN.name, access_level=level
        )
        view = run_in_process(state, job_id, quiet=True)
        if view.result is None:
            finish(view, as_json=as_json)
            return
        report = dict(view.result)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _report(report)


def lineage(
    ctx: typer.Context,
    what: Annotated[
        str,
        typer.Argument(
            help="A source (bronze/… key or SHA-256), an output (silver/… key) or a dataset "
            "(collection/item[@vN])."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where a dataset or object came from, or what a source became."""
    from geoetl import lineage as lineage_mod

    found = lineage_mod.trace(get_state(ctx).platform, what)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    arrow = "→ outputs" if found["direction"] == "source_to_outputs" else "← source"
    console.print(f"lineage of {what} ({arrow})", highlight=False)
    for r in found["records"]:
        console.print(
            f"[bold]{r['lineage_id']}[/] {r['status']}  job {r['job_id'][:12]}  "
            f"{r['workflow'] or '?'} v{r['workflow_version'] or '?'}  {r['published'] or ''}",
            highlight=False,
        )
        console.print(f"  source  {r['source']['key']}  sha256 {r['source']['sha256'][:16]}…")
        for key in r["outputs"]["objects"]:
            console.print(f"  object  {key}", highlight=False)
        for table in r["outputs"]["feature_tables"]:
            console.print(f"  table   {table}", highlight=False)
        console.print(f"  item    {r['outputs']['stac_item']}", highlight=False)
