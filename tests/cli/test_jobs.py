"""``geoetl jobs list`` on an 80-column terminal, and how long jobs took."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from geoetl.engine.models import JobStatus, JobView
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import DATA, geoetl, start
from tests.engine.helpers import wait_for


def test_jobs_list_fits_80_columns_without_cutting_names(settings: Settings) -> None:
    ingest = geoetl(settings, "ingest", str(DATA / "elev.tif"), "--json")
    assert ingest.returncode == 0, ingest.stderr
    raster = json.loads(ingest.stdout)["job_id"]
    queued = geoetl(settings, "submit", "fan_out_demo", "--json")
    assert queued.returncode == 0, queued.stderr
    demo = json.loads(queued.stdout)["job_id"]

    listed = geoetl(settings, "jobs", "list", columns=80)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in listed.stdout
    rows = {line.split()[0]: line.split() for line in lines if line[:1].isalnum()}
    assert rows[raster[:8]][1:4] == ["process_raster", "1", "succeeded"]
    assert rows[demo[:8]][1:4] == ["fan_out_demo", "1", "queued"]
    # The short id is one `jobs show` takes.
    shown = geoetl(settings, "jobs", "show", raster[:8], "--json")
    assert json.loads(shown.stdout)["job_id"] == raster


def test_a_running_job_took_until_now(settings: Settings, platform: Platform) -> None:
    params = '{"n": 1, "sleep_ms": 4000}'
    proc = start(settings, "submit", "fan_out_demo", "--params", params, "--wait")

    def working() -> JobView | None:
        jobs = platform.queries.jobs(status=JobStatus.running).items
        return next(
            (j for j in jobs if any(s.name == "work" and s.running for s in j.stages)), None
        )

    job: JobView = wait_for(working, timeout=60, what="the work task to run")
    time.sleep(1.5)
    before = time.time()
    running = json.loads(geoetl(settings, "jobs", "list", "--json").stdout)["items"][0]
    after = time.time()
    assert (running["job_id"], running["status"]) == (job.job_id, "running")
    started = datetime.fromisoformat(running["started_at"]).timestamp()
    # Not the time until the last stage ended (the claim): the time until now.
    assert before - started - 0.05 <= running["duration_seconds"] <= after - started + 0.05
    assert running["duration_seconds"] >= 1.5

    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    done = json.loads(geoetl(settings, "jobs", "show", job.job_id, "--json").stdout)
    finished = datetime.fromisoformat(done["finished_at"]).timestamp()
    assert done["duration_seconds"] == pytest.approx(finished - started, abs=1e-3)
    assert done["duration_seconds"] >= 4.0
