"""Built-in workflows for testing and benchmarking the engine."""

from __future__ import annotations

import random
import time
from typing import Any

from pydantic import BaseModel, Field

from geoetl.engine.context import TaskContext
from geoetl.engine.workflow import Retry, Stage, StageResults, Workflow
from geoetl.errors import InputError, TransientError

DEMO_WORKFLOWS = ("hello", "fan_out_demo")
"""Demonstration workflows: offered over HTTP only with GEOETL_DEMO_WORKFLOWS."""


class HelloParams(BaseModel):
    """Who to greet."""

    name: str = Field(default="world", min_length=1, max_length=200)


def say_hello(params: HelloParams, ctx: TaskContext) -> dict[str, str]:
    """A greeting."""
    ctx.progress(1, 1, "greeted")
    return {"message": f"Hello, {params.name}!"}


hello = Workflow(
    "hello",
    params=HelloParams,
    stages=[Stage("greet", say_hello)],
    description="One stage that greets someone: the smallest possible job.",
)


class FanOutParams(BaseModel):
    """Shape of the fan-out demonstration."""

    n: int = Field(default=10, ge=0, le=1_000_000, description="Tasks in the work stage.")
    sleep_ms: float = Field(default=0, ge=0, le=3_600_000, description="Each work task sleeps.")
    fail_at: int | None = Field(
        default=None, ge=0, description="Index of a work task that raises InputError."
    )
    flaky: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Probability that a work attempt raises TransientError (seeded).",
    )
    seed: int = Field(default=0, description="Distinguishes otherwise identical runs.")


def plan_step(params: FanOutParams, ctx: TaskContext) -> dict[str, int]:
    """Decide how many work items there are."""
    return {"n": params.n}


def work_items(params: FanOutParams, results: StageResults) -> list[int]:
    """One work item per index."""
    return list(range(int(results["plan"]["n"])))


def work(params: FanOutParams, ctx: TaskContext) -> int:
    """Return the task's index, after the requested sleep, failure or flakiness."""
    index = int(ctx.item)
    if params.fail_at is not None and index == params.fail_at:
        raise InputError(f"work item {index} failed on purpose (fail_at={params.fail_at})")
    # Seeded per (seed, item, attempt): a run's faults are reproducible, retries differ.
    if params.flaky and random.Random(f"{params.seed}:{index}:{ctx.attempt}").random() < (
        params.flaky
    ):
        raise TransientError(f"work item {index} hit a simulated transient fault")
    if params.sleep_ms:
        deadline = time.monotonic() + params.sleep_ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            ctx.progress(params.sleep_ms - left * 1000, params.sleep_ms, "sleeping")
            time.sleep(min(left, 0.25))
    return index


def add_up(params: FanOutParams, ctx: TaskContext) -> dict[str, int]:
    """Sum the work stage's results."""
    values = ctx.results["work"]
    return {"sum": sum(values), "count": len(values)}


def summarize(params: FanOutParams, results: StageResults) -> dict[str, Any]:
    """The job result: the sum and count of the work results."""
    total = results["sum"]
    return {"sum": total["sum"], "count": total["count"]}


fan_out_demo = Workflow(
    "fan_out_demo",
    params=FanOutParams,
    stages=[
        Stage("plan", plan_step),
        Stage("work", work, plan=work_items, retry=Retry(attempts=5)),
        Stage("sum", add_up),
    ],
    finalize=summarize,
    description="plan -> n work tasks -> sum; for testing and benchmarking the engine.",
)
