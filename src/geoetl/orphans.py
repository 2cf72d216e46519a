"""The janitor's orphan sweep: objects nothing references, and abandoned versions.

An object is referenced, and never removed whatever its age, by:

- an asset of a catalog item (every collection, every access level): the current
  version of each dataset, and items published before versions existed (an href under
  another root, a store since moved, protects the key from its zone folder on);
- a version row that is ``published``; one in ``staging``/``draft`` whose job is still
  active, or whose row changed within the grace; one being unpublished for less than
  the grace (the unpublish is deleting its objects itself);
- ``tmp/{job_id}/``, while that job is active.

Everything else under ``silver/`` and ``tmp/`` last written before the grace
(``orphan_grace_hours``) is an orphan. A ``staging``/``draft`` version whose job ended
(failed, cancelled, or succeeded without publishing) and whose row is older than the
grace is abandoned: it becomes ``discarded``, its objects go with the orphans and its
feature-store dataset is dropped (its published tables and what its load left
staged). Opt-in (``bronze_retention_days``), bronze sources no job and no live version
names, older than the retention, are removed too.

The objects are listed before the references are read: an object a job publishes
while the sweep runs is referenced by the time the sweep looks. A failure to read the
references stops the sweep before anything is deleted; a failed deletion is reported.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from geoetl.catalog.models import SearchRequest, SortKey
from geoetl.engine.models import ACTIVE_JOB, JobStatus
from geoetl.errors import InputError, NotFound
from geoetl.platform import Platform
from geoetl.storage.base import ZONES, ObjectInfo, ObjectStore
from geoetl.versions import LIVE, Version

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 24 * HOUR
PAGE = 1000
ABANDONABLE = ("staging", "draft")
_JOB_FOLDER = re.compile(r"tmp/([0-9a-f]{64})/")


class OrphanObject(BaseModel):
    """One object the sweep removed (or would remove) and why."""

    key: str
    size: int
    modified: datetime
    reason: str


class OrphanReport(BaseModel):
    """What a sweep removed, or in a dry run would remove."""

    dry_run: bool
    objects: list[OrphanObject] = Field(default_factory=list)
    bytes: int = Field(default=0, description="Total size of ``objects``.")
    versions_discarded: list[str] = Field(
        default_factory=list,
        description="Abandoned versions set to discarded (collection/item@vN).",
    )
    tables_dropped: list[str] = Field(
        default_factory=list, description="Feature-store datasets of those versions dropped."
    )
    errors: list[str] = Field(default_factory=list, description="What could not be removed.")


@dataclass
class _References:
    """What the sweep must leave alone, and the abandoned versions it discards."""

    keys: set[str] = field(default_factory=set)
    abandoned: list[Version] = field(default_factory=list)
    kept_storage: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)


class _Jobs:
    """Job statuses, each asked once per sweep (None: no such job)."""

    def __init__(self, platform: Platform) -> None:
        self.store = platform.store
        self.seen: dict[str, JobStatus | None] = {}

    def status(self, job_id: str) -> JobStatus | None:
        if job_id not in self.seen:
            try:
                self.seen[job_id] = self.store.job_status(job_id)
            except NotFound:
                self.seen[job_id] = None
        return self.seen[job_id]

    def active(self, job_id: str) -> bool:
        return self.status(job_id) in ACTIVE_JOB


def sweep_orphans(
    platform: Platform, *, dry_run: bool, include_bronze: bool = False, now: float | None = None
) -> OrphanReport:
    """Remove (or with ``dry_run`` only list) orphaned objects and abandoned versions."""
    settings = platform.settings
    retention = settings.bronze_retention_days
    if include_bronze and retention is None:
        raise InputError(
            "sweeping bronze needs a retention period: set GEOETL_BRONZE_RETENTION_DAYS "
            "(days a source that no job uses is kept)"
        )
    now = time.time() if now is None else now
    grace_cutoff = now - settings.orphan_grace_hours * HOUR
    objects = platform.objects
    listed = [*objects.list_info("silver"), *objects.list_info("tmp")]
    bronze = objects.list_info("bronze") if include_bronze else []
    jobs = _Jobs(platform)
    refs = _references(platform, jobs, grace_cutoff)
    if include_bronze:
        refs.sources |= platform.queries.param_values("source")

    abandoned_by_key = {key: v for v in refs.abandoned for key in v.objects}
    candidates: list[OrphanObject] = []
    for info in listed:
        if info.key in refs.keys or info.modified >= grace_cutoff:
            continue
        folder = _JOB_FOLDER.match(info.key)
        if folder and jobs.active(folder[1]):
            continue
        if info.key in abandoned_by_key:
            version = abandoned_by_key[info.key]
            reason = f"version {version.ref} abandoned (job {_said(jobs, version.job_id)})"
        elif folder:
            reason = f"staged by job {folder[1][:12]} ({_said(jobs, folder[1])})"
        else:
            reason = "no catalog item, version or active job references it"
        candidates.append(_orphan(info, reason))
    if include_bronze:
        assert retention is not None
        candidates += _bronze_orphans(objects, bronze, refs, now - retention * DAY, retention)

    report = OrphanReport(dry_run=dry_run)
    discarded = _discard(platform, refs.abandoned, dry_run, report)
    # A row that left staging/draft since it was read (none should: its job ended) keeps
    # its objects.
    moved = {key for v in refs.abandoned if v not in discarded for key in v.objects}
    candidates = [c for c in candidates if c.key not in moved]
    for orphan in candidates:
        if dry_run or _delete(objects, orphan.key, report):
            report.objects.append(orphan)
            report.bytes += orphan.size
    _drop_tables(platform, discarded, refs.kept_storage, dry_run, report)
    if not dry_run and (report.objects or report.versions_discarded):
        log.info(
            "janitor: removed %d orphaned objects (%d bytes), discarded %d versions",
            len(report.objects),
            report.bytes,
            len(report.versions_discarded),
        )
    return report


def _references(platform: Platform, jobs: _Jobs, grace_cutoff: float) -> _References:
    refs = _References(keys=_catalog_keys(platform))
    for version in platform.versions.with_status(*LIVE, "unpublishing"):
        keep = True
        if version.status in ABANDONABLE:
            keep = jobs.active(version.job_id) or version.updated_at >= grace_cutoff
            if not keep:
                refs.abandoned.append(version)
        elif version.status == "unpublishing":
            keep = version.updated_at >= grace_cutoff
        if keep:
            refs.keys.update(version.objects)
        if version.storage_id and (keep or version.status == "unpublishing"):
            refs.kept_storage.add(version.storage_id)  # an unpublish drops its own dataset
        if version.status in LIVE:
            refs.sources.add(version.source_key)
    refs.kept_storage |= {fc.dataset_id for fc in platform.feature_registry.all()}
    return refs


def _catalog_keys(platform: Platform) -> set[str]:
    """Keys of every asset of every catalog item, collection by collection in id order."""
    keys: set[str] = set()
    for collection in platform.catalog.list_collections():
        last: str | None = None
        while True:
            # Keyset pages (id > last): an item deleted meanwhile cannot shift the pages
            # and hide another one, as an offset would.
            request = SearchRequest(
                collections=[collection["id"]],
                sortby=[SortKey(field="id")],
                filter=None if last is None else {"op": ">", "args": [{"property": "id"}, last]},
                filter_lang=None if last is None else "cql2-json",
                limit=PAGE,
                count=False,
            )
            items, _ = platform.catalog.search(request)
            for item in items:
                keys.update(_asset_keys(platform.objects, item))
            if len(items) < PAGE:
                break
            last = str(items[-1]["id"])
    return keys


def _asset_keys(objects: ObjectStore, item: dict[str, Any]) -> Iterable[str]:
    for asset in (item.get("assets") or {}).values():
        if not isinstance(asset, dict):
            continue
        alternates = asset.get("alternate") or {}
        hrefs = [asset.get("href")]
        if isinstance(alternates, dict):
            hrefs += [a.get("href") for a in alternates.values() if isinstance(a, dict)]
        for href in hrefs:
            if not isinstance(href, str):
                continue
            key = objects.key_of(href)
            if key is not None:
                yield key
            else:
                yield from _zone_tails(href)


def _zone_tails(href: str) -> Iterable[str]:
    """Keys an href names under another root (a home or bucket since moved): never lose them.

    ``s3://old/prefix/silver/cogs/c/i.tif`` protects ``silver/cogs/c/i.tif``: keeping an
    object too many is cheap, deleting one a published item serves is not.
    """
    for zone in ZONES:
        marker = f"/{zone}/"
        at = href.find(marker)
        while at != -1:
            yield href[at + 1 :]
            at = href.find(marker, at + 1)


def _bronze_orphans(
    objects: ObjectStore,
    listed: list[ObjectInfo],
    refs: _References,
    cutoff: float,
    retention: float,
) -> list[OrphanObject]:
    """Bronze objects older than the retention in no folder a job or version names."""
    folders = {_bronze_folder(key) for key in refs.keys if key.startswith("bronze/")}
    for source in refs.sources:
        key = objects.key_of(source)
        if key is not None and key.startswith("bronze/"):
            # A loose shapefile's sidecars share its folder (bronze/{sha}/).
            folders.add(_bronze_folder(key))
    reason = f"bronze source no job or version uses, older than {retention:g} days"
    return [
        _orphan(info, reason)
        for info in listed
        if info.modified < cutoff and _bronze_folder(info.key) not in folders
    ]


def _bronze_folder(key: str) -> str:
    parts = key.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else key


def _discard(
    platform: Platform, abandoned: list[Version], dry_run: bool, report: OrphanReport
) -> list[Version]:
    """Set the abandoned versions discarded; those that were (all of them in a dry run)."""
    done: list[Version] = []
    for version in abandoned:
        if not dry_run:
            try:
                moved = platform.versions.update(
                    version.collection_id,
                    version.item_id,
                    version.version,
                    only_from=ABANDONABLE,
                    status="discarded",
                )
            except Exception as exc:
                report.errors.append(f"{version.ref}: could not discard: {exc}")
                continue
            if not moved:
                continue
            log.info("janitor: discarded %s (its job ended before publishing)", version.ref)
            try:
                platform.audit.record(
                    "system",
                    "discard",
                    version.ref,
                    job_id=version.job_id,
                    details={"reason": "its job ended before publishing", "by": "janitor"},
                )
            except Exception as exc:
                report.errors.append(f"{version.ref}: discarded, not audited: {exc}")
        done.append(version)
        report.versions_discarded.append(version.ref)
    return done


def _drop_tables(
    platform: Platform,
    discarded: list[Version],
    kept: set[str],
    dry_run: bool,
    report: OrphanReport,
) -> None:
    for storage_id in dict.fromkeys(v.storage_id for v in discarded if v.storage_id):
        if storage_id is None or storage_id in kept:
            continue  # another version (or a served collection) still uses it
        if dry_run:
            report.tables_dropped.append(storage_id)
            continue
        try:
            if platform.features.drop(storage_id):
                report.tables_dropped.append(storage_id)
        except Exception as exc:
            report.errors.append(f"dataset {storage_id}: could not drop: {exc}")


def _delete(objects: ObjectStore, key: str, report: OrphanReport) -> bool:
    """True when this call removed ``key``; a failure goes to the report."""
    try:
        return objects.delete(key)
    except Exception as exc:
        report.errors.append(f"{key}: {objects.redact(str(exc))}")
        return False


def _orphan(info: ObjectInfo, reason: str) -> OrphanObject:
    modified = datetime.fromtimestamp(info.modified, tz=UTC)
    return OrphanObject(key=info.key, size=info.size, modified=modified, reason=reason)


def _said(jobs: _Jobs, job_id: str) -> str:
    status = jobs.status(job_id)
    return "unknown" if status is None else status.value
