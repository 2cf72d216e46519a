"""unpublish: take a dataset's versions out of serving and delete their data.

``dry_run`` (the default) changes nothing and reports exactly what a real run would
delete: objects with their sizes, feature tables, STAC items and emptied collections.
A real run follows :func:`geoetl.lifecycle.unpublish`: out of serving first, then the
data, so no served item ever points at missing data; a run killed at any step finishes
the job when it runs again (the task is retried after its lease runs out). Bronze
sources and system collections are never deleted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from geoetl import lifecycle
from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import Retry, Stage, Workflow
from geoetl.errors import NotFound


class UnpublishParams(BaseModel):
    """What to unpublish."""

    collection_id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
    item_id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,149}$")
    version: int | None = Field(
        default=None, ge=1, description="One version; default every version of the item."
    )
    dry_run: bool = Field(
        default=True, description="Only report what would be deleted (the default)."
    )
    seen_versions: list[int] = Field(
        default_factory=list,
        description=(
            "Set at submission: the published versions the request saw, so a later "
            "request (after a new publication) is a new job, not the earlier one again."
        ),
    )


def run(params: UnpublishParams, ctx: TaskContext) -> dict[str, Any]:
    """Report (dry run) or unpublish."""
    platform = ctx.platform
    if params.dry_run:
        plan = lifecycle.plan_unpublish(
            platform, params.collection_id, params.item_id, params.version
        )
        return plan.as_json(dry_run=True)
    # The plan is kept: a retry after a crash finishes exactly the same work, even once
    # some of it is done (those versions are no longer "published" to a new plan).
    saved = ctx.checkpoints.get("plan")
    if saved is None:
        plan = lifecycle.plan_unpublish(
            platform, params.collection_id, params.item_id, params.version
        )
        ctx.checkpoint("plan", plan.as_json(dry_run=False))
    else:
        plan = lifecycle.UnpublishPlan.from_json(saved)
    try:
        actor = platform.queries.job(ctx.job_id).submitted_by or "local"
    except NotFound:
        actor = "local"
    return lifecycle.unpublish(
        platform,
        plan,
        one_version=params.version is not None,
        actor=actor,
        job_id=ctx.job_id,
    )


unpublish = Workflow(
    "unpublish",
    params=UnpublishParams,
    stages=[Stage("unpublish", run, retry=Retry(attempts=5))],
    description=(
        "Withdraw a dataset (one version or all): dry run by default; for real, takes it "
        "out of serving and deletes its COGs, feature tables and STAC item."
    ),
)
