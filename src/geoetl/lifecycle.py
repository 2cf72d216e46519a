"""A dataset's life after its outputs are written: versions, approval, publication, unpublish.

Every publishing job reserves a numbered version of its item (:func:`reserve`), stages
its outputs as a draft (:func:`stage_draft`: objects written, feature tables loaded,
the STAC item document kept in ``dataset_versions`` — nothing of it served yet), and
its last stage publishes the draft (:func:`publish`), unless the deployment or the
collection requires approval: the engine then parks the job in ``awaiting_approval``
until an admin approves (the publish stage runs) or rejects it (:func:`reject`: the
draft's outputs are deleted).

What readers see is decided in one place, :func:`refresh_current`: the highest
published version of an item is written to the catalog (and, for vectors, its feature
collections to the registry); older published versions stay readable with
``?version=N``. Unpublishing takes versions out of serving first, then deletes their
data, so no served item ever points at missing data; every step can be repeated, so
a run killed at any point converges when run again.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from geoetl.catalog.models import SYSTEM_COLLECTIONS
from geoetl.engine import ids
from geoetl.engine.models import ACTIVE_JOB, JobStatus
from geoetl.errors import Conflict, Forbidden, InputError, NotFound
from geoetl.features.registry import FeatureCollection
from geoetl.versions import Version

if TYPE_CHECKING:
    from geoetl.auth.principal import Principal
    from geoetl.platform import Platform

log = logging.getLogger(__name__)

VERSION_EXT = "https://stac-extensions.github.io/version/v1.2.0/schema.json"


# -- faults (tests prove that a killed run converges) -------------------------------------


def fault_point(platform: Platform, name: str) -> None:
    """Die at once (SIGKILL) when ``GEOETL_FAULT_POINT`` names this step; tests only."""
    if platform.settings.fault_point == name:
        log.warning("fault point %s reached: killing this process", name)
        os.kill(os.getpid(), signal.SIGKILL)


# -- reserving and staging ------------------------------------------------------------------


# Parameters left out of a publication's identity: replacing is how, not what, and the
# same file with the same options is the same whatever batch it came in.
NOT_IDENTITY = {"replace", "batch_id"}
# Parameters added to workflows after versions began recording params hashes, in the
# order they came (each group at once): NetCDF's, then tiles'.
ADDED_LATER = (("variable", "time_as", "time_index"), ("layout", "tile_size"))


def params_hash(params: BaseModel) -> str:
    """What makes two publications of one source identical: the params that were set.

    A parameter at its default counts as not given, so a parameter added to a workflow
    later (with a default that keeps the old behaviour) leaves every hash as it was.
    """
    return _sha(params.model_dump(mode="json", exclude=NOT_IDENTITY, exclude_defaults=True))


def earlier_params_hashes(params: BaseModel) -> set[str]:
    """The hash an older version of the same publication recorded.

    Before defaults were left out, a hash covered every parameter the workflow had then,
    defaults included; parameters added since (:data:`ADDED_LATER`) did not exist, and
    are at their defaults when the publication is the same.
    """
    full = params.model_dump(mode="json", exclude=NOT_IDENTITY)
    given = params.model_dump(mode="json", exclude=NOT_IDENTITY, exclude_defaults=True)
    hashes = {_sha(full)}
    for era in range(len(ADDED_LATER)):  # before each group of parameters came
        later = {name for group in ADDED_LATER[era:] for name in group}
        hashes.add(_sha({k: v for k, v in full.items() if k in given or k not in later}))
    return hashes


def _sha(data: dict[str, Any]) -> str:
    return hashlib.sha256(ids.canonical_json(data).encode()).hexdigest()


def storage_dataset(dataset_id: str, version: int) -> str:
    """The feature-store dataset of a vector version: ``{id}`` for 1, ``{id}__v{N}`` after."""
    return dataset_id if version == 1 else f"{dataset_id}__v{version}"


def cog_prefix(collection_id: str, version: int) -> str:
    """Where a raster version's COGs go: ``silver/cogs/{collection}/`` (v1) or ``…/v{N}/``."""
    base = f"silver/cogs/{collection_id}"
    return base if version == 1 else f"{base}/v{version}"


def adopt_legacy(platform: Platform, collection_id: str, item_id: str) -> None:
    """An item published before versions existed becomes version 1 of its history."""
    if platform.versions.history(collection_id, item_id):
        return
    try:
        item = platform.catalog.get_item(collection_id, item_id)
    except NotFound:
        return
    props = item.get("properties", {})
    source = props.get("geoetl:source") or {}
    vector = props.get("geoetl:workflow") == "process_vector"
    keys = [
        key
        for asset in item.get("assets", {}).values()
        if (key := platform.objects.key_of(str(asset.get("href", "")))) is not None
    ]
    collections = None
    if vector:
        collections = [
            fc.model_dump()
            for fc in platform.feature_registry.all()
            if fc.dataset_id == item_id and fc.stac_collection == collection_id
        ]
    now = time.time()
    # An item copied from another deployment (migrate-data) says which version it is,
    # and its tables are where the registry says: numbering continues after it.
    number = str(props.get("version") or "1")
    storage = collections[0]["dataset_id"] if collections else item_id
    platform.versions.adopt(
        Version(
            collection_id=collection_id,
            item_id=item_id,
            version=int(number) if number.isdigit() and int(number) > 0 else 1,
            kind="vector" if vector else "raster",
            status="published",
            job_id=str(props.get("geoetl:job_id") or ""),
            source_key=str(source.get("key") or ""),
            source_sha=str(source.get("sha256") or ""),
            params_hash="",
            access_level=str(props.get("geoetl:access_level") or "public"),
            item=item,
            objects=keys,
            storage_id=storage if vector else None,
            feature_collections=collections,
            created_at=now,
            published_at=now,
            updated_at=now,
            workflow=str(props.get("geoetl:workflow") or "") or None,
        )
    )


def reserve(
    platform: Platform,
    *,
    kind: str,
    collection_id: str,
    item_id: str,
    job_id: str,
    params: Any,
    workflow: str | None = None,
    batch_id: str | None = None,
) -> Version:
    """The version this job publishes, numbered now; or the current one, unchanged.

    Publishing the same source with the same params as the current version changes
    nothing: that version is returned (its ``job_id`` is another job's), and the job
    publishes nothing new.
    """
    adopt_legacy(platform, collection_id, item_id)
    digest = params_hash(params)
    source_sha = params.source.split("/")[1] if params.source.count("/") >= 2 else ""
    for own in platform.versions.by_job(job_id):
        if (own.collection_id, own.item_id) == (collection_id, item_id):
            return own
    current = platform.versions.current(collection_id, item_id)
    if (
        current is not None
        and current.source_sha == source_sha
        and current.params_hash in {digest, *earlier_params_hashes(params)}
    ):
        return current
    return platform.versions.reserve(
        collection_id,
        item_id,
        kind=kind,
        job_id=job_id,
        source_key=params.source,
        source_sha=source_sha,
        params_hash=digest,
        access_level=params.access_level,
        workflow=workflow,
        workflow_version=platform.workflows.get(workflow).version if workflow else None,
        batch_id=batch_id,
    )


def stage_draft(
    platform: Platform,
    version: Version,
    item: dict[str, Any],
    objects: list[str],
    *,
    storage_id: str | None = None,
    feature_collections: list[FeatureCollection] | None = None,
) -> None:
    """Record a version's outputs; nothing is served until :func:`publish`."""
    platform.versions.add_objects(version.collection_id, version.item_id, version.version, objects)
    item = {**item, "properties": {**item.get("properties", {}), "version": str(version.version)}}
    done = platform.versions.update(
        version.collection_id,
        version.item_id,
        version.version,
        only_from=("staging", "draft"),
        status="draft",
        item=item,
        storage_id=storage_id,
        feature_collections=(
            [fc.model_dump() for fc in feature_collections] if feature_collections else None
        ),
    )
    if not done:
        state = platform.versions.get(version.collection_id, version.item_id, version.version)
        if state.status != "published":
            raise InputError(f"{state.ref} is {state.status}; resubmit the job to publish again")


def needs_approval(platform: Platform, collection_id: str) -> bool:
    """Whether publications into ``collection_id`` wait for an admin."""
    return platform.settings.approval_required(collection_id)


# -- publishing: what readers see -----------------------------------------------------------


def versioned_item(version: Version, history: list[Version]) -> dict[str, Any]:
    """A version's STAC item with the version extension's fields and links."""
    assert version.item is not None
    doc = copy.deepcopy(version.item)
    published = [v.version for v in history if v.status == "published"]
    latest = published[-1] if published else version.version
    props = doc.setdefault("properties", {})
    props["version"] = str(version.version)
    props["deprecated"] = version.version != latest
    extensions = doc.setdefault("stac_extensions", [])
    if VERSION_EXT not in extensions:
        extensions.append(VERSION_EXT)
    base = f"/stac/collections/{version.collection_id}/items/{version.item_id}"
    links = [
        link
        for link in doc.get("links", [])
        if link.get("rel") not in ("latest-version", "predecessor-version", "successor-version")
    ]
    older = [n for n in published if n < version.version]
    newer = [n for n in published if n > version.version]
    if older:
        links.append({"rel": "predecessor-version", "href": f"{base}?version={older[-1]}"})
    if newer:
        links.append({"rel": "successor-version", "href": f"{base}?version={newer[0]}"})
    if latest != version.version:
        links.append({"rel": "latest-version", "href": base})
    links = [link for link in links if link.get("rel") != "derived_from"]
    links.append(
        {
            "rel": "derived_from",
            "href": f"/lineage/{version.collection_id}/{version.item_id}?version={version.version}",
            "type": "application/json",
            "title": "The source file, job and workflow this version was made from",
        }
    )
    doc["links"] = links
    return doc


def refresh_current(platform: Platform, collection_id: str, item_id: str) -> Version | None:
    """Serve the highest published version (or nothing); returns it.

    Idempotent: the catalog item and the feature collections are written from the
    versions table, so running it again after a crash gives the same state.
    """
    history = platform.versions.history(collection_id, item_id)
    published = [v for v in history if v.status == "published"]
    current = published[-1] if published else None
    vector = any(v.kind == "vector" for v in history)
    if current is None:
        platform.catalog.delete_item(collection_id, item_id)
    else:
        platform.catalog.ensure_collection(collection_id, current.access_level)
        platform.catalog.upsert_item(versioned_item(current, history), current.access_level)
    if vector:
        keep: set[str] = set()
        if current is not None:
            for fc in current.feature_collections or []:
                platform.feature_registry.upsert(FeatureCollection.model_validate(fc))
                keep.add(fc["collection_id"])
        stale = {v.storage_id for v in history if v.storage_id} - {
            current.storage_id if current else None
        }
        for storage_id in sorted(s for s in stale if s):
            platform.feature_registry.delete_dataset(storage_id)
        from geoetl.auth.dbroles import sync_reader_grants

        sync_reader_grants(platform)
    return current


def publish(platform: Platform, version: Version, job_id: str) -> Version:
    """Serve a staged draft: it becomes the current version. Idempotent."""
    row = platform.versions.get(version.collection_id, version.item_id, version.version)
    if row.status not in ("draft", "published"):
        raise InputError(f"{row.ref} is {row.status}; resubmit the job to publish it again")
    previous = platform.versions.current(row.collection_id, row.item_id)
    if row.status == "draft":
        platform.versions.update(
            row.collection_id,
            row.item_id,
            row.version,
            only_from=("draft",),
            status="published",
            published_at=time.time(),
        )
    refresh_current(platform, row.collection_id, row.item_id)
    if row.status == "draft":
        try:
            submitter = platform.queries.job(job_id).submitted_by
        except NotFound:
            submitter = None
        replaced = previous.version if previous and previous.version != row.version else None
        platform.audit.record(
            submitter or "local",
            "replace" if replaced else "publish",
            row.ref,
            job_id=job_id,
            details={
                "kind": row.kind,
                "version": row.version,
                "access_level": row.access_level,
                "source": row.source_key,
                "replaced_version": replaced,
            },
        )
    return platform.versions.get(row.collection_id, row.item_id, row.version)


# -- approval ---------------------------------------------------------------------------------


def approve(platform: Platform, principal: Principal, job_id: str, note: str | None) -> None:
    """An admin lets a parked job publish."""
    _check_admin(principal)
    platform.store.approve(job_id, by=principal.name, note=note)
    for v in platform.versions.by_job(job_id):
        platform.audit.record(
            principal.name, "approve", v.ref, job_id=job_id, details={"note": note}
        )


def reject(platform: Platform, principal: Principal, job_id: str, note: str | None) -> None:
    """An admin refuses a parked job: it ends, and its staged outputs are deleted."""
    _check_admin(principal)
    platform.store.reject(job_id, by=principal.name, note=note)
    end_drafts(platform, job_id, actor=principal.name, status="rejected", note=note)


def end_drafts(
    platform: Platform, job_id: str, *, actor: str, status: str, note: str | None = None
) -> None:
    """Delete what an ended job staged but never published, and say so in the audit log.

    ``status`` is ``rejected`` (an admin refused it) or ``discarded`` (cancelled while
    awaiting approval). Only for jobs no task of which runs any more.
    """
    for v in platform.versions.by_job(job_id):
        if v.status not in ("staging", "draft"):
            continue
        report = delete_version_data(platform, v)
        platform.versions.update(
            v.collection_id,
            v.item_id,
            v.version,
            only_from=("staging", "draft"),
            status=status,
        )
        platform.audit.record(
            actor,
            "reject" if status == "rejected" else "discard",
            v.ref,
            job_id=job_id,
            details={"note": note, "deleted": report},
        )


def cancel(platform: Platform, job_id: str, *, actor: str) -> None:
    """Cancel a job; one awaiting approval also loses what it staged at once.

    A running job's drafts are left to the janitor's sweep: its tasks may still be
    writing until they notice the cancellation.
    """
    waiting = platform.store.job_status(job_id) == JobStatus.awaiting_approval
    platform.store.cancel(job_id)
    if waiting:
        end_drafts(platform, job_id, actor=actor, status="discarded", note="cancelled")


def _check_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden(f"only an admin may approve or reject jobs; {principal.name} is not")


# -- unpublish --------------------------------------------------------------------------------


@dataclass
class UnpublishPlan:
    """What an unpublish removes (or would remove)."""

    collection_id: str
    item_id: str
    versions: list[int]
    objects: list[dict[str, Any]] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    remaining_current: int | None = None

    @classmethod
    def from_json(cls, report: dict[str, Any]) -> UnpublishPlan:
        """A plan back from its report (a task's checkpoint)."""
        return cls(
            collection_id=str(report["collection_id"]),
            item_id=str(report["item_id"]),
            versions=[int(v) for v in report["versions"]],
            objects=list(report["objects"]),
            tables=list(report["tables"]),
            items=list(report["items"]),
            collections=list(report["collections"]),
            remaining_current=report.get("current_version_after"),
        )

    def as_json(self, dry_run: bool) -> dict[str, Any]:
        """The report users see."""
        return {
            "dry_run": dry_run,
            "collection_id": self.collection_id,
            "item_id": self.item_id,
            "versions": self.versions,
            "objects": self.objects,
            "bytes": sum(int(o.get("size") or 0) for o in self.objects),
            "tables": self.tables,
            "items": self.items,
            "collections": self.collections,
            "current_version_after": self.remaining_current,
        }


def _object_facts(platform: Platform, key: str) -> dict[str, Any]:
    try:
        return {"key": key, "size": platform.objects.size(key)}
    except NotFound:
        return {"key": key, "size": 0, "missing": True}


def _tables_of(platform: Platform, storage_id: str | None) -> list[str]:
    if not storage_id:
        return []
    try:
        return [f"{storage_id}/{t}" for t in platform.features.tables(storage_id)]
    except NotFound:
        return []


def plan_unpublish(
    platform: Platform, collection_id: str, item_id: str, version: int | None
) -> UnpublishPlan:
    """Exactly what unpublishing ``version`` (None: every version) deletes."""
    adopt_legacy(platform, collection_id, item_id)
    history = platform.versions.history(collection_id, item_id)
    removable = ("published", "unpublishing")
    if version is None:
        chosen = [v for v in history if v.status in removable]
    else:
        chosen = [v for v in history if v.version == version and v.status in removable]
        if not chosen:
            known = [v.version for v in history if v.status == "published"]
            raise NotFound(
                f"{collection_id}/{item_id} has no published version {version}"
                + (f"; published versions: {known}" if known else "")
            )
    if not chosen:
        raise NotFound(f"{collection_id}/{item_id} has no published version")
    numbers = {v.version for v in chosen}
    left = [v for v in history if v.status == "published" and v.version not in numbers]
    shared = {k for v in left for k in v.objects}
    plan = UnpublishPlan(collection_id, item_id, sorted(numbers))
    for v in chosen:
        plan.objects.extend(_object_facts(platform, k) for k in v.objects if k not in shared)
        if v.storage_id and v.storage_id not in {w.storage_id for w in left}:
            plan.tables.extend(_tables_of(platform, v.storage_id))
        plan.items.append(v.ref)
    plan.remaining_current = left[-1].version if left else None
    if not left and collection_id not in SYSTEM_COLLECTIONS:
        others, _ = platform.catalog.search(
            _collection_items(collection_id, exclude=item_id, limit=1)
        )
        if not others:
            plan.collections.append(collection_id)
    return plan


def _collection_items(collection_id: str, *, exclude: str, limit: int) -> Any:
    from geoetl.catalog.models import SearchRequest

    return SearchRequest(
        collections=[collection_id],
        filter={"op": "<>", "args": [{"property": "id"}, exclude]},
        filter_lang="cql2-json",
        limit=limit,
        count=False,
    )


def delete_version_data(platform: Platform, version: Version) -> dict[str, Any]:
    """Delete a version's objects and feature tables (never bronze); idempotent."""
    others = [
        v
        for v in platform.versions.history(version.collection_id, version.item_id)
        if v.version != version.version and v.status in ("staging", "draft", "published")
    ]
    shared = {k for v in others for k in v.objects}
    removed: list[str] = []
    for key in version.objects:
        if key in shared or not key.startswith(("silver/", "tmp/")):
            continue
        if platform.objects.delete(key):
            removed.append(key)
    dropped = False
    if version.storage_id and version.storage_id not in {v.storage_id for v in others}:
        dropped = platform.features.drop(version.storage_id)
    return {"objects": removed, "dataset_dropped": version.storage_id if dropped else None}


def unpublish(
    platform: Platform,
    plan: UnpublishPlan,
    *,
    one_version: bool,
    actor: str,
    job_id: str | None,
) -> dict[str, Any]:
    """Take the planned versions out of serving, then delete their data; the report.

    Order: (1) the versions are marked ``unpublishing`` and the catalog and feature
    registry are pointed at what remains (or emptied) — from here nothing served refers
    to them; (2) their objects and feature tables are deleted; (3) they are marked
    ``unpublished``; (4) an emptied non-system collection is deleted; (5) the audit log
    records the report, once per job. Each step repeats safely: a rerun with the same
    ``plan`` (the task keeps it as a checkpoint) after a crash at any step converges.
    """
    collection_id, item_id = plan.collection_id, plan.item_id
    report = plan.as_json(dry_run=False)
    for number in plan.versions:
        platform.versions.update(
            collection_id, item_id, number, only_from=("published",), status="unpublishing"
        )
    fault_point(platform, "unpublish:marked")
    refresh_current(platform, collection_id, item_id)
    fault_point(platform, "unpublish:unserved")
    for number in plan.versions:
        delete_version_data(platform, platform.versions.get(collection_id, item_id, number))
        fault_point(platform, "unpublish:deleted")
        platform.versions.update(
            collection_id, item_id, number, only_from=("unpublishing",), status="unpublished"
        )
    for cid in plan.collections:
        try:
            platform.catalog.delete_collection(cid)
        except (NotFound, Conflict) as exc:  # gone already, or an item arrived meanwhile
            log.info("collection %s kept: %s", cid, exc)
    fault_point(platform, "unpublish:collections")
    done = job_id is not None and platform.audit.entries(action="unpublish", job_id=job_id, limit=1)
    if not done:
        target = f"{collection_id}/{item_id}"
        platform.audit.record(
            actor,
            "unpublish",
            f"{target}@v{plan.versions[0]}" if one_version else target,
            job_id=job_id,
            details=report,
        )
    return report


def check_unpublish(
    platform: Platform, principal: Principal, collection_id: str, item_id: str
) -> None:
    """Forbidden unless ``principal`` is an admin or published the item's versions."""
    if principal.is_admin:
        return
    if not principal.has_role("publisher"):
        raise Forbidden(f"unpublishing needs the publisher role; {principal.name} is a reader")
    adopt_legacy(platform, collection_id, item_id)
    history = platform.versions.history(collection_id, item_id)
    if not history:
        raise NotFound(f"no dataset {collection_id}/{item_id}")
    for v in history:
        if v.status != "published":
            continue
        try:
            owner = platform.queries.job(v.job_id).submitted_by
        except NotFound:
            owner = None
        if owner != principal.name:
            raise Forbidden(
                f"{v.ref} was published by someone else; only its publisher or an admin "
                "may unpublish it"
            )


def job_is_active(platform: Platform, job_id: str) -> bool:
    """Whether a job may still publish (queued, running or awaiting approval)."""
    try:
        return platform.store.job_status(job_id) in ACTIVE_JOB
    except NotFound:
        return False


# -- reading versions ---------------------------------------------------------------------


def item_version(
    platform: Platform,
    collection_id: str,
    item_id: str,
    version: int,
    audience: list[str] | None,
    *,
    drafts: bool = False,
) -> dict[str, Any]:
    """The STAC item of one version; NotFound unless published (or a draft, if allowed)."""
    adopt_legacy(platform, collection_id, item_id)
    history = platform.versions.history(collection_id, item_id)
    found = next((v for v in history if v.version == version), None)
    allowed = ("published", "draft") if drafts else ("published",)
    if (
        found is None
        or found.item is None
        or found.status not in allowed
        or (audience is not None and found.access_level not in audience)
    ):
        raise NotFound(f"{collection_id}/{item_id} has no version {version}")
    return versioned_item(found, history)


def feature_collection_version(
    platform: Platform, collection_id: str, version: int, audience: list[str] | None
) -> FeatureCollection:
    """The OGC API collection as one published version served it."""
    found = platform.versions.feature_collection(collection_id, version)
    if found is None or (audience is not None and found.get("access_level") not in audience):
        raise NotFound(f"feature collection {collection_id!r} has no version {version}")
    return FeatureCollection.model_validate(found)
