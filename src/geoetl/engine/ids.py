"""Deterministic identities: job ids from canonical params, task ids from position."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def job_id(workflow: str, version: int, params: dict[str, Any], run: int = 1) -> str:
    """SHA-256 hex of (workflow, version, params); runs after the first add their number."""
    doc: dict[str, Any] = {"workflow": workflow, "version": version, "params": params}
    if run > 1:
        doc["run"] = run
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def task_id(job: str, stage: str, index: int) -> str:
    """``{job_id[:16]}-{stage}-{index:05d}``."""
    return f"{job[:16]}-{stage}-{index:05d}"
