"""Who may publish what, and onto which ids: the rules every submission goes through.

Shared by the HTTP API (``POST /jobs/{workflow}``, ``POST /ingest``) and the local CLI
(``geoetl ingest``, which acts as an admin):

- the job's access level (the params' ``access_level``, else the workflow's default,
  else public) may not be above the caller's clearance, nor above what the deployment
  serves;
- a bronze ``source`` must have been uploaded by the caller, unless it is an admin;
- a publication onto an existing item or dataset id that came from a different source
  needs ``replace`` — by the owner of what is there (who submitted its job) or an admin.
  When the id was derived from the file name rather than chosen, a different file
  whose name gives the same id gets the id with a short content hash instead: two
  files never silently replace each other.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from geoetl.auth.principal import Principal, level_above
from geoetl.catalog.models import AccessLevel, SearchRequest, normalize_access_level
from geoetl.engine.workflow import Workflow, validate_params
from geoetl.errors import Conflict, Forbidden, InputError, NotFound

if TYPE_CHECKING:
    from geoetl.platform import Platform

_SLUG = re.compile(r"[^a-z0-9_-]+")


def slug(text: str) -> str:
    """A lowercase id from a file name: ``L7 ETMs.tif`` → ``l7_etms``, ``Río`` → ``rio``.

    Accents are dropped (NFKD) rather than the letters; a name with nothing left gives
    ``raster`` — distinct files that slug alike get distinct ids at submission
    (:func:`geoetl.publish.authorize`).
    """
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG.sub("_", plain.lower()).strip("_") or "raster"


@dataclass(frozen=True)
class Target:
    """Where a job publishes: an item id in a collection (None: ids are global)."""

    collection_id: str | None
    item_id: str
    field: str
    """The params field that names the id (``item_id``, ``dataset_id``)."""
    explicit: bool
    """Whether the caller chose the id (else it came from the file name)."""
    max_length: int = 150


class Publishes(Protocol):
    """Params of a workflow that publishes an item (process_raster, process_vector)."""

    source: str
    replace: bool

    def publication_target(self) -> Target:
        """Where this job publishes."""


def job_access_level(workflow: Workflow, params: dict[str, Any]) -> AccessLevel:
    """The access level of what a job publishes: its params', its default, or public."""
    given = params.get("access_level")
    if isinstance(given, str):
        return normalize_access_level(given)
    field = workflow.params.model_fields.get("access_level")
    if field is not None and isinstance(field.default, str):
        return normalize_access_level(field.default)
    return "public"


def source_sha(source: str) -> str:
    """The content hash in a bronze key ``bronze/{sha256}/{name}``."""
    parts = PurePosixPath(source).parts
    return parts[1] if len(parts) > 2 else ""


def existing_items(platform: Platform, target: Target) -> list[dict[str, Any]]:
    """Items already published at ``target`` (whatever their access level)."""
    request = SearchRequest(
        ids=[target.item_id],
        collections=[target.collection_id] if target.collection_id else None,
        limit=10,
        count=False,
    )
    items, _ = platform.catalog.search(request)
    return items


def _source_of(item: dict[str, Any]) -> str | None:
    source = item.get("properties", {}).get("geoetl:source")
    return source.get("key") if isinstance(source, dict) else None


def _owner_of(platform: Platform, item: dict[str, Any]) -> str | None:
    job_id = item.get("properties", {}).get("geoetl:job_id")
    if not isinstance(job_id, str):
        return None
    try:
        return platform.queries.job(job_id).submitted_by
    except NotFound:
        return None


def check_target(platform: Platform, params: Publishes, principal: Principal | None) -> None:
    """Conflict when ``params`` would replace another source's item without ``replace``.

    With ``replace``, Forbidden unless ``principal`` (None: not checked, the job runs
    with what was authorized at submission) owns what is there or is an admin.
    """
    target = params.publication_target()
    for item in existing_items(platform, target):
        if _source_of(item) == params.source:
            continue  # the same file again (a retry, a resubmit, other options)
        where = f"{item.get('collection')}/{item.get('id')}"
        if not params.replace:
            raise Conflict(
                f"{where} already exists, published from another file; pass replace=true "
                f"(--replace) to replace it, or choose another {target.field}"
            )
        if principal is not None and not principal.is_admin:
            owner = _owner_of(platform, item)
            if owner != principal.name:
                raise Forbidden(
                    f"{where} was published by someone else; only its owner or an admin "
                    "may replace it"
                )


def ensure_target_free(platform: Platform, params: Publishes) -> None:
    """:func:`check_target` inside a job: a conflict fails the job as an input error.

    Submission checked it already; this catches what changed since (another job that
    published the same id meanwhile) and jobs submitted without the API's checks.
    """
    try:
        check_target(platform, params, None)
    except Conflict as exc:
        raise InputError(str(exc)) from None


def _distinct_id(target: Target, source: str) -> str:
    suffix = source_sha(source)[:8] or "x"
    return f"{target.item_id[: target.max_length - len(suffix) - 1]}_{suffix}"


def authorize(
    platform: Platform, principal: Principal, workflow: Workflow, params: dict[str, Any]
) -> tuple[dict[str, Any], AccessLevel]:
    """The params to submit (an id may be made distinct) and the job's access level.

    Forbidden, Conflict or InputError (with what to do) when ``principal`` may not
    submit this job.
    """
    if workflow.name == "unpublish":
        params = dict(params)
        return params, _authorize_unpublish(platform, principal, workflow, params)
    level = job_access_level(workflow, params)
    ceiling = platform.settings.audience
    if level_above(level, principal.clearance):
        raise Forbidden(
            f"{principal.name} may publish up to {principal.clearance}, not {level}; "
            f"pass access_level={principal.clearance} or use a token with that clearance"
        )
    if principal.via != "local" and level_above(level, ceiling):
        raise Forbidden(
            f"this deployment serves data up to {ceiling}; publish {level} data through a "
            "deployment whose GEOETL_AUDIENCE includes it"
        )
    source = params.get("source")
    sources = params.get("sources")
    given = [source] if isinstance(source, str) else []
    if isinstance(sources, list):
        given += [s for s in sources if isinstance(s, str)]
    if not principal.is_admin:
        for key in given:
            if not platform.tokens.uploaded_by(key, principal.name):
                raise Forbidden(
                    f"{principal.name} did not upload {key}; upload the file with POST "
                    "/ingest (only its uploader or an admin may publish it)"
                )
    checked = validate_params(workflow, params)
    if not hasattr(checked, "publication_target"):
        return params, level
    target: Target = checked.publication_target()
    if not target.explicit and not getattr(checked, "replace", False):
        taken = [i for i in existing_items(platform, target) if _source_of(i) != source]
        if taken:
            params = {**params, target.field: _distinct_id(target, str(source))}
            checked = validate_params(workflow, params)
    check_target(platform, checked, principal)  # type: ignore[arg-type]
    return params, level


def _authorize_unpublish(
    platform: Platform, principal: Principal, workflow: Workflow, params: dict[str, Any]
) -> AccessLevel:
    """Who may unpublish: an admin, or the publisher of every published version.

    The job takes the item's most sensitive level, so only those who may see the
    item see the job and its report.
    """
    from geoetl import lifecycle

    checked = validate_params(workflow, params)
    collection_id = str(checked.collection_id)  # type: ignore[attr-defined]
    item_id = str(checked.item_id)  # type: ignore[attr-defined]
    lifecycle.check_unpublish(platform, principal, collection_id, item_id)
    history = platform.versions.history(collection_id, item_id)
    params["seen_versions"] = [v.version for v in history if v.status == "published"]
    levels = {v.access_level for v in history}
    level: AccessLevel = "public"
    for candidate in levels:
        if level_above(candidate, level):
            level = normalize_access_level(candidate)
    if level_above(level, principal.clearance):
        raise NotFound(f"no dataset {collection_id}/{item_id}")
    return level
