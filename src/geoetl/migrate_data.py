"""Moving up: copy an embedded deployment's catalog and feature tables to PostgreSQL.

``geoetl migrate-data --to postgresql://…`` builds a second platform on the target
database (its schema, PostGIS and pgSTAC are installed as on first use) and copies,
through the two backends' own interfaces:

- every STAC collection (with its access level and system flag honoured by the
  target's ``ensure_system_collections``) and every item, in pages;
- every published feature table, streamed in chunks in feature-id order, so feature
  ids stay the same; and its registry entry (the OGC API collection).

Everything is an upsert or a replacing load, so running it again (after an
interruption, or after more data was published) converges to the same copy. At the
end the counts on both sides are compared; a difference is an error. Objects (COGs,
GeoParquet) stay where they are: both deployments must share ``GEOETL_STORAGE_URL``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from geoetl.auth.dbroles import sync_reader_grants
from geoetl.catalog.models import ACCESS_ORDER, SYSTEM_COLLECTIONS, SearchRequest
from geoetl.errors import GeoEtlError

if TYPE_CHECKING:
    from geoetl.platform import Platform

PAGE = 500
CHUNK_ROWS = 50_000
# (what is being copied, done so far, total): the CLI draws it as progress bars.
Progress = Callable[[str, int, int], None]


class MigrationMismatch(GeoEtlError):
    """The copy does not hold what the source holds."""


@dataclass
class MigrationReport:
    """What was copied, and the counts checked on both sides."""

    collections: int = 0
    items: int = 0
    feature_tables: int = 0
    features: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)


def _level(doc: dict[str, Any]) -> str:
    level = str(doc.get("geoetl:access_level") or "restricted")
    return level if level in ACCESS_ORDER else "restricted"


def _all_items(platform: Platform, collection_id: str) -> list[tuple[dict[str, Any], str]]:
    """Every item of a collection with its access level (the source sees everything)."""
    out: list[tuple[dict[str, Any], str]] = []
    for level in ACCESS_ORDER:
        offset = 0
        while True:
            request = SearchRequest(
                collections=[collection_id],
                access_levels=[level],
                limit=PAGE,
                offset=offset,
                count=False,
                sortby=None,
            )
            items, _ = platform.catalog.search(request)
            out += [(item, level) for item in items]
            if len(items) < PAGE:
                break
            offset += PAGE
    return out


def _count_items(platform: Platform, collection_id: str) -> int:
    _, total = platform.catalog.search(
        SearchRequest(collections=[collection_id], limit=1, count=True)
    )
    return int(total or 0)


def migrate_data(
    source: Platform, target: Platform, progress: Progress | None = None
) -> MigrationReport:
    """Copy ``source``'s catalog and feature tables into ``target``; counts checked."""
    tell = progress or (lambda _what, _done, _total: None)
    report = MigrationReport()

    collections = source.catalog.list_collections()
    tell("collections", 0, len(collections))
    target.catalog.ensure_system_collections()
    for i, doc in enumerate(collections, 1):
        if doc["id"] not in SYSTEM_COLLECTIONS:
            target.catalog.upsert_collection(doc, _level(doc))
        items = _all_items(source, doc["id"])
        for start in range(0, len(items), PAGE):
            target.catalog.upsert_items(items[start : start + PAGE])
        report.collections += 1
        report.items += len(items)
        tell("collections", i, len(collections))

    tables = source.feature_registry.all()
    tell("tables", 0, len(tables))
    datasets: dict[str, list[Any]] = {}
    for fc in tables:
        datasets.setdefault(fc.dataset_id, []).append(fc)
    done = 0
    for dataset_id, entries in sorted(datasets.items()):
        target.features.begin_load(dataset_id)
        for fc in entries:
            data = source.features.read(dataset_id, fc.table_name)
            for chunk_id, start in enumerate(range(0, max(data.num_rows, 1), CHUNK_ROWS)):
                target.features.write_chunk(
                    dataset_id, fc.table_name, chunk_id, data.slice(start, CHUNK_ROWS)
                )
            report.features += data.num_rows
        indexes: dict[str, list[str]] = {fc.table_name: [] for fc in entries}
        target.features.finish_load(dataset_id, indexes)
        for fc in entries:
            target.feature_registry.upsert(
                fc.model_copy(update={"fields": target.features.fields(dataset_id, fc.table_name)})
            )
            done += 1
            report.feature_tables += 1
            tell("tables", done, len(tables))

    sync_reader_grants(target)  # reader roles of the target see the tables they may
    for doc in collections:
        have, want = _count_items(target, doc["id"]), _count_items(source, doc["id"])
        report.checks.append({"collection": doc["id"], "source": want, "target": have})
        if have != want:
            raise MigrationMismatch(
                f"collection {doc['id']}: {want} item(s) in the source, {have} in the target"
            )
    for fc in tables:
        have = target.features.count(fc.dataset_id, fc.table_name)
        want = source.features.count(fc.dataset_id, fc.table_name)
        report.checks.append({"table": fc.table_name, "source": want, "target": have})
        if have != want:
            raise MigrationMismatch(
                f"table {fc.table_name}: {want} feature(s) in the source, {have} in the target"
            )
    return report
