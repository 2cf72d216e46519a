"""Batch ingestion through a landing zone (SPEC "Batch ingestion through a landing zone").

Another team uploads files under ``landing/{batch_id}/…`` and commits the batch by
writing ``landing/manifests/{batch_id}.json`` last. :func:`watch_once` (run by
``geoetl watch``, and by the janitor's housekeeping in ``geoetl janitor`` and ``geoetl
serve``) picks each manifest up exactly once (:class:`~geoetl.batches.BatchStore`),
validates it — the schema, every file under the batch's own folder, present, and
matching its declared SHA-256 — and submits one job per file with the manifest's
intent, access level and metadata. A manifest with any error submits nothing and
keeps a report of every error, so the uploader fixes them all at once.

Whoever can write to ``landing/`` is trusted to publish (like an admin on this
machine): the manifest's ``uploader`` is recorded, not authenticated.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from geoetl.batches import Batch, BatchFile
from geoetl.catalog.models import AccessLevel
from geoetl.errors import GeoEtlError, InputError, NotFound
from geoetl.ingest import SHAPEFILE_SIDECARS, detect_kind, job_request, store_in_bronze
from geoetl.limits import loads
from geoetl.storage.objectstore import sha256_file

if TYPE_CHECKING:
    from geoetl.platform import Platform

log = logging.getLogger(__name__)

MANIFESTS = "landing/manifests"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_FILES = 10_000
BATCH_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
# Intents the vector pipeline knows; ``ingest`` (or a raster intent) detects the kind.
VECTOR_INTENTS = {"ingest_vector", "ingest_road_network", "ingest_boundaries"}
RASTER_INTENTS = {"ingest_raster"}
SIDECARS = (*SHAPEFILE_SIDECARS, ".aux.xml", ".ovr", ".msk", ".tfw", ".wld", ".jgw", ".pgw")


class ManifestFile(BaseModel):
    """One file of a manifest."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=1000, description="landing/{batch_id}/… key of the file.")
    type: Literal["raster", "vector"] | None = None
    format: str | None = Field(default=None, max_length=50)
    crs: str | None = Field(default=None, max_length=200, description="Its CRS if it has none.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("sha256")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v


class Manifest(BaseModel):
    """What a batch's manifest says."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(pattern=BATCH_ID)
    uploader: str = Field(min_length=1, max_length=200)
    intent: str = Field(default="ingest", max_length=100)
    files: list[ManifestFile] = Field(min_length=1, max_length=MAX_FILES)
    metadata: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, max_length=50
    )
    access_level: AccessLevel = "ouo"
    collection_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")

    @field_validator("access_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


def _schema_errors(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors()[:50]:
        where = ".".join(str(p) for p in error["loc"]) or "manifest"
        out.append(f"{where}: {error['msg']}")
    return out


def read_manifest(platform: Platform, key: str, batch_id: str) -> tuple[Manifest | None, list[str]]:
    """The manifest at ``key`` and every problem found in it (schema, files, hashes)."""
    objects = platform.objects
    try:
        size = objects.size(key)
    except NotFound:
        return None, [f"{key} disappeared before it was read"]
    if size > MAX_MANIFEST_BYTES:
        return None, [
            f"{key} is {size:,} bytes; a manifest may have at most {MAX_MANIFEST_BYTES:,}"
        ]
    with objects.open(key) as fh:
        raw = fh.read(MAX_MANIFEST_BYTES + 1)
    try:
        doc = loads(raw, what=key, max_depth=10)
    except InputError as exc:
        return None, [str(exc)]
    try:
        manifest = Manifest.model_validate(doc)
    except ValidationError as exc:
        return None, _schema_errors(exc)
    errors = []
    if manifest.batch_id != batch_id:
        errors.append(
            f"batch_id is {manifest.batch_id!r} but the manifest is named {batch_id}.json"
        )
    seen = set()
    for i, f in enumerate(manifest.files):
        path = PurePosixPath(f.path)
        if f.path in seen:
            errors.append(f"files.{i}.path: {f.path} is listed twice")
        seen.add(f.path)
        if (
            path.parts[:2] != ("landing", manifest.batch_id)
            or len(path.parts) < 3
            or ".." in path.parts
        ):
            errors.append(
                f"files.{i}.path: {f.path} is not under landing/{manifest.batch_id}/ "
                "(a batch may only name its own files)"
            )
            continue
        if not objects.exists(f.path):
            errors.append(f"files.{i}.path: {f.path} does not exist; upload it before the manifest")
    return manifest, errors


def _is_sidecar(name: str, names: set[str]) -> bool:
    lower = name.lower()
    for suffix in SIDECARS:
        if lower.endswith(suffix):
            stem = name[: -len(suffix)]
            base = stem.lower()
            if any(
                other != name
                and (other.lower() == base or other.lower().startswith(base + "."))
                and not other.lower().endswith(SIDECARS)
                for other in names
            ):
                return True
    return False


def submit_batch(
    platform: Platform, manifest: Manifest, scratch: Path
) -> tuple[list[BatchFile], list[str]]:
    """Copy the files into bronze (hashes checked) and submit one job per dataset."""
    from geoetl.auth.principal import Principal
    from geoetl.publish import authorize

    objects = platform.objects
    files: list[BatchFile] = []
    errors: list[str] = []
    local: dict[str, Path] = {}
    for f in manifest.files:
        target = scratch / PurePosixPath(f.path).relative_to(f"landing/{manifest.batch_id}")
        target.parent.mkdir(parents=True, exist_ok=True)
        objects.get_file(f.path, target)
        digest = sha256_file(target)
        local[f.path] = target
        entry = BatchFile(path=f.path, sha256=digest)
        if f.sha256 and f.sha256 != digest:
            entry.error = f"SHA-256 is {digest}, not the {f.sha256} the manifest declares"
            errors.append(f"{f.path}: {entry.error}")
        files.append(entry)
    if errors:
        return files, errors
    by_folder: dict[Path, set[str]] = {}
    for path in local.values():
        by_folder.setdefault(path.parent, set()).add(path.name)
    principal = Principal(f"landing:{manifest.uploader}", "admin", "restricted", True, via="local")
    for f, entry in zip(manifest.files, files, strict=True):
        path = local[f.path]
        if _is_sidecar(path.name, by_folder[path.parent]):
            entry.kind = "sidecar"  # goes to bronze with its dataset
            continue
        try:
            kind = f.type or (
                "vector"
                if manifest.intent in VECTOR_INTENTS
                else "raster"
                if manifest.intent in RASTER_INTENTS
                else detect_kind(path.name, str(path))
            )
            entry.kind = kind
            entry.source_key = store_in_bronze(objects, path)
            options: dict[str, Any] = {
                "access_level": manifest.access_level,
                "input_crs": f.crs,
                "collection_id": manifest.collection_id,
            }
            workflow_name, params = job_request(kind, entry.source_key, options)
            params["batch_id"] = manifest.batch_id
            if kind == "vector" and manifest.intent in VECTOR_INTENTS:
                params["intent"] = manifest.intent
            workflow = platform.workflows.get(workflow_name)
            params, level = authorize(platform, principal, workflow, params)
            entry.job_id, _ = platform.store.submit(
                workflow_name, params, submitted_by=principal.name, access_level=level
            )
        except (GeoEtlError, OSError) as exc:
            entry.error = str(exc)
            errors.append(f"{f.path}: {exc}")
    return files, errors


def watch_once(platform: Platform, worker: str) -> list[str]:
    """Pick up every new manifest; returns the batch ids this call handled."""
    store = platform.batches
    try:
        keys = [k for k in platform.objects.list(MANIFESTS) if k.endswith(".json")]
    except NotFound:
        return []
    known = store.known()
    handled = []
    for key in sorted(keys):
        batch_id = PurePosixPath(key).stem
        if batch_id in known or PurePosixPath(key).parent.as_posix() != MANIFESTS:
            continue
        if not store.claim(batch_id, key, worker):
            continue
        handled.append(batch_id)
        manifest, errors = read_manifest(platform, key, batch_id)
        files: list[BatchFile] = []
        if manifest is not None and not errors:
            platform.settings.scratch_dir.mkdir(parents=True, exist_ok=True)
            scratch = Path(
                tempfile.mkdtemp(
                    prefix=f"batch-{batch_id[:40]}-", dir=platform.settings.scratch_dir
                )
            )
            try:
                files, errors = submit_batch(platform, manifest, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        status = "invalid" if errors and not any(f.job_id for f in files) else "submitted"
        store.finish(
            batch_id,
            status=status,
            manifest=manifest.model_dump(mode="json") if manifest else None,
            errors=errors,
            files=files,
        )
        if errors:
            log.warning("batch %s: %d problem(s): %s", batch_id, len(errors), "; ".join(errors[:3]))
        else:
            log.info("batch %s: %d job(s) submitted", batch_id, sum(1 for f in files if f.job_id))
    return handled


def batch_view(
    platform: Platform, batch: Batch, audience: list[str] | None = None
) -> dict[str, Any]:
    """A batch with each file's job status, as the API and CLI show it."""
    files = []
    counts: dict[str, int] = {}
    for f in batch.files:
        status = None
        if f.job_id:
            try:
                view = platform.queries.job(f.job_id, audience)
                status = view.status.value
            except NotFound:
                status = "hidden"
        elif f.error:
            status = "refused"
        elif f.kind == "sidecar":
            status = "sidecar"
        if status:
            counts[status] = counts.get(status, 0) + 1
        files.append({**f.__dict__, "status": status})
    return {
        "batch_id": batch.batch_id,
        "status": batch.status,
        "manifest": batch.manifest_key,
        "uploader": batch.uploader,
        "intent": batch.intent,
        "access_level": batch.access_level,
        "errors": batch.errors or [],
        "counts": counts,
        "files": files,
    }
