"""The janitor's scratch cleanup removes ended jobs' folders and nothing else."""

from __future__ import annotations

from pathlib import Path

from geoetl.engine.janitor import clean_scratch
from geoetl.platform import Platform


def test_only_the_folders_of_ended_or_unknown_jobs_are_removed(
    platform: Platform, tmp_path: Path
) -> None:
    root = tmp_path / "scratch"
    running, _ = platform.store.submit("hello", {"name": "running"})
    ended, _ = platform.store.submit("hello", {"name": "ended"})
    platform.store.cancel(ended)
    unknown = "ab" * 32
    # What else lives under the scratch root while a job runs: an API upload being
    # received, a landing-zone batch being copied in, a manifest being written.
    others = ["uploads", "batch-nightly-2026-k3j4", "manifest-nightly.json"]
    for name in (running, ended, unknown, *others):
        path = root / name
        if name.endswith(".json"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        else:
            (path / "part").mkdir(parents=True)
            (path / "part" / "data.bin").write_bytes(b"x" * 10)

    assert clean_scratch(platform.store, root) == 2

    left = sorted(p.name for p in root.iterdir())
    assert left == sorted([running, *others])
    assert (root / "uploads" / "part" / "data.bin").read_bytes() == b"x" * 10
