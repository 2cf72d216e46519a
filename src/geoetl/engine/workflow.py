"""Workflow declarations: ordered stages, optional fan-out plans, a finalize step."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from geoetl.errors import InputError, NotFound

if TYPE_CHECKING:
    from geoetl.engine.context import TaskContext

JSON = Any
Handler = Callable[[Any, "TaskContext"], Any]
"""``(params, ctx) -> result``; the result is JSON-able or a pydantic model."""
Plan = Callable[[Any, "StageResults"], Sequence[JSON]]
"""``(params, results of earlier stages) -> one item per task``; must be deterministic."""
Finalize = Callable[[Any, "StageResults"], JSON]
Hold = Callable[[Any, "StageResults"], "str | None"]
"""``(params, results of earlier stages) -> reason``: a reason parks the job before the
stage in ``awaiting_approval`` until :meth:`JobStore.approve` (or ``reject``)."""


class StageResults(Mapping[str, Any]):
    """Results of finished stages by name: one value per single-task stage, a list for fan-out."""

    def __init__(self, loader: Callable[[str], Any], names: Sequence[str]) -> None:
        self._loader = loader
        self._names = list(names)
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._cache:
            self._cache[name] = self._loader(name)
        return self._cache[name]

    def __iter__(self) -> Any:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class Retry:
    """How often a task of a stage may run, and how long to wait between attempts."""

    attempts: int = 3
    base_delay: timedelta | None = None
    max_delay: timedelta | None = None


@dataclass(frozen=True)
class Stage:
    """One step of a workflow: a single task, or one task per item of ``plan``."""

    name: str
    handler: Handler
    plan: Plan | None = None
    queue: str = "default"
    retry: Retry = field(default_factory=Retry)
    lease: timedelta | None = None
    hold: Hold | None = None
    """Asked before the stage starts; a reason (str) waits for a person's approval."""


@dataclass(frozen=True)
class Workflow:
    """A named, versioned sequence of stages with a params model."""

    name: str
    params: type[BaseModel]
    stages: Sequence[Stage]
    version: int = 1
    finalize: Finalize | None = None
    description: str = ""

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if not names:
            raise ValueError(f"workflow {self.name!r} has no stages")
        if len(set(names)) != len(names):
            raise ValueError(f"workflow {self.name!r} repeats a stage name: {names}")

    def stage_names(self) -> list[str]:
        """Names of the stages, in order."""
        return [s.name for s in self.stages]


class Registry:
    """The workflows a platform knows, by name.

    A workflow may be registered by reference (``"package.module:attribute"``): its
    module, and the libraries it needs, are imported the first time the workflow is
    used. ``geoetl ingest photo.tif`` then never imports the vector stack.
    """

    def __init__(
        self, workflows: Sequence[Workflow] = (), lazy: Mapping[str, str] | None = None
    ) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._lazy: dict[str, str] = {}
        for wf in workflows:
            self.add(wf)
        for name, ref in (lazy or {}).items():
            self.add_lazy(name, ref)

    def add(self, workflow: Workflow) -> None:
        """Register ``workflow``; names are unique."""
        self._check_new(workflow.name)
        self._workflows[workflow.name] = workflow

    def add_lazy(self, name: str, ref: str) -> None:
        """Register the workflow ``name`` found at ``ref`` (``"module:attribute"``)."""
        if ":" not in ref:
            raise ValueError(f"workflow reference {ref!r} is not 'module:attribute'")
        self._check_new(name)
        self._lazy[name] = ref

    def _check_new(self, name: str) -> None:
        if name in self._workflows or name in self._lazy:
            raise ValueError(f"workflow {name!r} is already registered")

    def get(self, name: str) -> Workflow:
        """The workflow called ``name``, or NotFound listing the known ones."""
        ref = self._lazy.get(name)
        if ref is None:
            # Resolved already (perhaps by another API thread just now), or unknown.
            if name in self._workflows:
                return self._workflows[name]
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown workflow {name!r}; known workflows: {known}")
        module_name, _, attribute = ref.partition(":")
        workflow = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(workflow, Workflow) or workflow.name != name:
            raise ValueError(f"{ref} is not the workflow {name!r}")
        # Threads resolving the same name at once each store the same object.
        self._workflows[name] = workflow
        self._lazy.pop(name, None)
        return workflow

    def __contains__(self, name: object) -> bool:
        return name in self._workflows or name in self._lazy

    def names(self) -> list[str]:
        """Known workflow names, sorted (nothing is imported)."""
        return sorted({*self._workflows, *self._lazy})

    def __iter__(self) -> Any:
        return iter(self.get(n) for n in self.names())


class ParamsError(InputError):
    """Workflow params failed validation; ``errors`` lists each field's problem."""

    def __init__(self, workflow: str, errors: list[dict[str, Any]]) -> None:
        self.workflow = workflow
        self.errors = errors
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'params'}: {e.get('msg')}"
            for e in errors
        )
        super().__init__(f"invalid params for workflow {workflow!r}: {details}")


def validate_params(workflow: Workflow, raw: Any) -> BaseModel:
    """``raw`` validated into the workflow's params model, or ParamsError."""
    try:
        return workflow.params.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise ParamsError(workflow.name, errors) from None


def to_json(value: Any) -> JSON:
    """A handler's or finalize's return value as plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
