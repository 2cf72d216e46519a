"""Lineage: where every published output came from, and what every source became.

Each version of a dataset is a lineage record (its id is the version's reference,
``collection/item@vN``): the source's bronze key and SHA-256, the job, the workflow and
its version, the params hash, when it was made and published, the batch it came in,
and its outputs (objects, feature tables, the STAC item). :func:`trace` walks it from
either end: a source (bronze key or SHA-256) to everything made from it, an output
(object key) to what made it, or a dataset (``collection/item[@vN]``) to its records.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from geoetl.errors import InputError, NotFound
from geoetl.versions import Version

if TYPE_CHECKING:
    from geoetl.platform import Platform

SHA256 = re.compile(r"^[0-9a-f]{64}$")
ITEM_REF = re.compile(
    r"^(?P<collection>[A-Za-z0-9_][A-Za-z0-9_.-]{0,99})/(?P<item>[A-Za-z0-9_][A-Za-z0-9_.-]{0,149})"
    r"(?:@v(?P<version>[0-9]{1,7}))?$"
)
SHOWN = ("draft", "published", "unpublishing", "unpublished", "rejected", "discarded")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def record(platform: Platform, version: Version) -> dict[str, Any]:
    """One version's lineage record."""
    tables: list[str] = []
    if version.storage_id and version.status in ("draft", "published"):
        try:
            tables = [
                f"{version.storage_id}/{t}" for t in platform.features.tables(version.storage_id)
            ]
        except NotFound:
            tables = []
    return {
        "lineage_id": version.ref,
        "collection_id": version.collection_id,
        "item_id": version.item_id,
        "version": version.version,
        "status": version.status,
        "access_level": version.access_level,
        "source": {"key": version.source_key, "sha256": version.source_sha},
        "job_id": version.job_id,
        "workflow": version.workflow,
        "workflow_version": version.workflow_version,
        "params_hash": version.params_hash,
        "batch_id": version.batch_id,
        "created": _iso(version.created_at),
        "published": _iso(version.published_at),
        "outputs": {
            "objects": list(version.objects),
            "feature_tables": tables,
            "feature_collections": [
                fc.get("collection_id") for fc in version.feature_collections or []
            ],
            "stac_item": (
                f"/stac/collections/{version.collection_id}/items/{version.item_id}"
                f"?version={version.version}"
            ),
        },
    }


def trace(
    platform: Platform, what: str, audience: list[str] | None = None, *, drafts: bool = True
) -> dict[str, Any]:
    """Lineage of ``what``: a bronze key or SHA-256, an object key, or a dataset reference.

    ``audience`` (None: everything) hides records above the caller's levels; without
    ``drafts``, versions not yet published are hidden too. NotFound when nothing is known.
    """
    what = what.strip()
    if what.startswith("bronze/") or SHA256.match(what):
        direction, versions = "source_to_outputs", platform.versions.derived_from(what)
    elif what.startswith(("silver/", "tmp/")):
        direction, versions = "output_to_source", platform.versions.producing(what)
    elif (ref := ITEM_REF.match(what)) is not None:
        from geoetl.lifecycle import adopt_legacy

        adopt_legacy(platform, ref["collection"], ref["item"])
        direction = "output_to_source"
        versions = platform.versions.history(ref["collection"], ref["item"])
        if ref["version"]:
            versions = [v for v in versions if v.version == int(ref["version"])]
    else:
        raise InputError(
            f"{what[:100]!r} is not a source (bronze/… key or SHA-256), an output "
            "(silver/… key) or a dataset (collection/item or collection/item@vN)"
        )
    shown = [
        v
        for v in versions
        if v.status in SHOWN
        and (drafts or v.status != "draft")
        and (audience is None or v.access_level in audience)
    ]
    if not shown:
        raise NotFound(f"no lineage known for {what[:200]!r}")
    return {
        "of": what,
        "direction": direction,
        "records": [record(platform, v) for v in shown],
    }
