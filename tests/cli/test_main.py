"""Running a job in the ``geoetl`` process: cancelling it says so, in one line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from geoetl.engine.models import JobStatus, JobView
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import geoetl, slow_raster, start
from tests.engine.helpers import wait_for


@pytest.fixture(scope="session")
def slow_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raster whose COG takes seconds: time to cancel its ingest midway."""
    return slow_raster(tmp_path_factory.mktemp("slow") / "slow.tif")


def writing_cog(platform: Platform) -> JobView:
    """The ingest job once its COG is being written (its ``cog`` task runs)."""

    def check() -> JobView | None:
        for job in platform.queries.jobs(status=JobStatus.running).items:
            if any(s.name == "cog" and s.running for s in job.stages):
                return job
        return None

    found: JobView = wait_for(check, timeout=120, what="the COG task to run")
    return found


def assert_one_cancelled_line(stderr: str, expected: str) -> None:
    """No traceback or error log: the last line says the job was cancelled."""
    assert "Traceback" not in stderr
    assert " ERROR " not in stderr
    assert " WARNING " not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(expected), stderr
    assert sum(line.startswith("cancelled") for line in lines) == 1, stderr


def test_ctrl_c_cancels_the_ingest(settings: Settings, platform: Platform, slow_tif: Path) -> None:
    proc = start(settings, "ingest", str(slow_tif))
    job = writing_cog(platform)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert_one_cancelled_line(stderr, f"cancelled: job {job.job_id[:8]} (Ctrl+C)")
    assert platform.queries.job(job.job_id).status == JobStatus.cancelled

    # Asking again runs it again (a new run), instead of reporting the cancelled one.
    again = geoetl(settings, "ingest", str(slow_tif), "--json")
    assert again.returncode == 0, again.stderr
    view = json.loads(again.stdout)
    assert (view["status"], view["run"], view["idempotent"]) == ("succeeded", 2, False)
    assert view["base_id"] == job.job_id


def test_cancel_from_another_shell(settings: Settings, platform: Platform, slow_tif: Path) -> None:
    proc = start(settings, "ingest", str(slow_tif))
    job = writing_cog(platform)
    cancel = geoetl(settings, "jobs", "cancel", job.job_id[:8])
    assert cancel.returncode == 0, cancel.stderr
    assert f"{job.job_id} cancelled" in cancel.stdout
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stdout + stderr
    assert_one_cancelled_line(
        stderr, f"cancelled: job {job.job_id[:8]} (process_raster) was cancelled"
    )
    assert stdout == ""
    assert platform.queries.job(job.job_id).status == JobStatus.cancelled


def test_ingest_and_submit_say_whether_the_job_existed(settings: Settings) -> None:
    elev = str(Path(__file__).parents[2] / "examples" / "data" / "elev.tif")
    seen = []
    for args in (
        ("ingest", elev, "--json"),
        ("ingest", elev, "--json"),
        ("submit", "hello", "--params", '{"name": "cli"}', "--wait", "--json"),
        ("submit", "hello", "--params", '{"name": "cli"}', "--wait", "--json"),
    ):
        run = geoetl(settings, *args)
        assert run.returncode == 0, run.stderr
        view = json.loads(run.stdout)
        seen.append((view["workflow"], view["status"], view["idempotent"]))
    assert seen == [
        ("process_raster", "succeeded", False),
        ("process_raster", "succeeded", True),
        ("hello", "succeeded", False),
        ("hello", "succeeded", True),
    ]
    # A run that is not a submit is never one that existed.
    job_id = json.loads(geoetl(settings, "jobs", "list", "--json").stdout)["items"][0]["job_id"]
    resubmitted = geoetl(settings, "jobs", "resubmit", job_id, "--wait", "--json")
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert json.loads(resubmitted.stdout)["idempotent"] is False


def test_interrupting_submit_wait_keeps_the_job(settings: Settings, platform: Platform) -> None:
    """`submit --wait` only runs a queued job here: Ctrl+C leaves it for a worker."""
    params = '{"n": 1, "sleep_ms": 3000}'
    proc = start(settings, "submit", "fan_out_demo", "--params", params, "--wait")

    def working() -> JobView | None:
        jobs = platform.queries.jobs(status=JobStatus.running).items
        return next(
            (j for j in jobs if any(s.name == "work" and s.running for s in j.stages)), None
        )

    job: JobView = wait_for(working, timeout=60, what="the work task to run")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"interrupted; job {job.job_id[:12]} keeps its state" in stderr
    assert platform.queries.job(job.job_id).status == JobStatus.running
