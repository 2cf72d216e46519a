"""``geoetl janitor --orphans``: the orphan sweep on demand, as a table or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from geoetl.cli.render import console, err_console
from geoetl.errors import InputError

if TYPE_CHECKING:
    from geoetl.cli.state import State
    from geoetl.orphans import OrphanReport

MIB = 1024 * 1024


def run_orphan_sweep(
    state: State, *, orphans: bool, dry_run: bool, bronze: bool, as_json: bool
) -> None:
    """Sweep once and print the report; InputError for options that need what is missing."""
    if not orphans:
        raise InputError("--dry-run, --bronze and --json go with --orphans")
    if bronze and state.settings.bronze_retention_days is None:
        raise InputError(
            "--bronze needs a retention period: set GEOETL_BRONZE_RETENTION_DAYS "
            "(days a bronze source that no job uses is kept)"
        )
    from geoetl.orphans import sweep_orphans

    report = sweep_orphans(state.platform, dry_run=dry_run, include_bronze=bronze)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        show_report(report)
    if report.errors:
        raise typer.Exit(1)


def show_report(report: OrphanReport) -> None:
    """The objects as a table, then one line of totals (and what failed, on stderr)."""
    if report.objects:
        console.print(objects_table(report))
    for ref in report.versions_discarded:
        verb = "would discard" if report.dry_run else "discarded"
        console.print(f"{verb} abandoned version {escape(ref)}", highlight=False)
    for storage_id in report.tables_dropped:
        verb = "would drop" if report.dry_run else "dropped"
        console.print(f"{verb} feature dataset {escape(storage_id)}", highlight=False)
    console.print(totals(report), highlight=False)
    for error in report.errors:
        err_console.print(f"[red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)


def objects_table(report: OrphanReport) -> Table:
    """One line per object: key, size, when it was last written, why it goes."""
    title = "orphans (dry run: nothing removed)" if report.dry_run else "removed"
    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    table.add_column("key", overflow="fold")
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("modified (UTC)", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for obj in report.objects:
        table.add_row(
            escape(obj.key),
            human_size(obj.size),
            obj.modified.strftime("%Y-%m-%d %H:%M"),
            escape(obj.reason),
        )
    return table


def totals(report: OrphanReport) -> str:
    """``removed N objects, X MiB`` (``would remove …`` in a dry run)."""
    verb = "would remove" if report.dry_run else "removed"
    count = len(report.objects)
    noun = "object" if count == 1 else "objects"
    return f"{verb} {count} {noun}, {report.bytes / MIB:.1f} MiB"


def human_size(size: int) -> str:
    """Bytes as people read them: ``512 B``, ``3.4 KiB``, ``12.0 MiB``, ``1.2 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
