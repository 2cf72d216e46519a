"""Stages both publishing workflows end with: wait for approval if required, publish."""

from __future__ import annotations

from typing import Any

from geoetl import lifecycle
from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import StageResults
from geoetl.errors import NotFound
from geoetl.versions import Version


def previous_result(ctx: TaskContext, version: Version) -> dict[str, Any] | None:
    """The result of the job that published ``version`` (for an unchanged re-publication)."""
    try:
        result = ctx.platform.queries.job(version.job_id).result
    except NotFound:
        return None
    return dict(result) if isinstance(result, dict) else None


def hold_for_approval(params: Any, results: StageResults) -> str | None:
    """The publish stage waits for an admin where the deployment or collection says so."""
    if results["catalog"].get("approval"):
        return f"publishing into {params.collection_id} needs an admin's approval"
    return None


def publish(params: Any, ctx: TaskContext) -> dict[str, Any]:
    """Serve the draft version: the catalog (and feature collections) now show it."""
    catalog = ctx.results["catalog"]
    if catalog.get("unchanged"):
        return {"version": int(catalog["version"]), "unchanged": True}
    version = ctx.platform.versions.get(
        params.collection_id, catalog["item_id"], int(catalog["version"])
    )
    done = lifecycle.publish(ctx.platform, version, ctx.job_id)
    return {"version": done.version, "status": done.status}


def publish_all(params: Any, ctx: TaskContext) -> dict[str, Any]:
    """Serve every draft version the catalog stage staged (a collection of items)."""
    published = []
    for staged in ctx.results["catalog"].get("versions", []):
        version = ctx.platform.versions.get(
            params.collection_id, staged["item_id"], int(staged["version"])
        )
        done = lifecycle.publish(ctx.platform, version, ctx.job_id)
        published.append({"item_id": done.item_id, "version": done.version})
        ctx.progress(len(published), len(ctx.results["catalog"]["versions"]), "publishing")
    return {"published": published}
