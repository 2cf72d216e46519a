"""``geoetl demo``: the README's first command, on the sample data."""

from __future__ import annotations

from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import DATA, geoetl
from tests.engine.helpers import helper_pids

RASTERS = {"l7_etms", "elev", "lc", "olinda_dem_utm25s"}
VECTORS = {"buildings", "lux", "naturalearth_lowres", "nc", "storms_xyz"}


def test_demo_publishes_every_sample_with_one_set_of_helpers(settings: Settings) -> None:
    run = geoetl(settings, "demo", "--data", str(DATA), "--no-serve")
    assert run.returncode == 0, run.stderr
    published = run.stdout[run.stdout.index("published:") :].splitlines()[1:]
    maps = {line.split()[1] for line in published if line.split()[0] == "map"}
    features = {line.split()[1].rstrip(":") for line in published if line.split()[0] == "features"}
    assert (maps, features) == (RASTERS, VECTORS)
    platform = Platform.from_settings(settings)
    try:
        jobs = platform.queries.jobs(limit=100).items
        assert sorted(job.status for job in jobs) == [JobStatus.succeeded] * 9
        assert {c.collection_id for c in platform.feature_registry.all()} == VECTORS
        # Helpers (GEOETL_RUN_WORKERS=2) are forked once, before the first job: one
        # forked after a raster had been warped here waited forever for GDAL's threads.
        helpers = set().union(*(helper_pids(platform, job.job_id) for job in jobs))
    finally:
        platform.close()
    assert len(helpers) <= 1, helpers
