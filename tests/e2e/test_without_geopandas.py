"""geoetl runs where GeoPandas and pandas are not installed: they are not dependencies.

pyogrio imports both when they are there (0.3 s and 75 MiB per process), so geoetl
keeps features as Arrow and shapely arrays. These runs import geoetl in a process where
importing either fails, as on a machine with only geoetl's own dependencies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest

from geoetl.settings import Settings
from tests.cli.helpers import DATA, env
from tests.conftest import geoetl_cmd

BLOCK = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("pandas", "geopandas"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


@pytest.fixture
def no_geopandas(tmp_path: Path) -> Path:
    """A folder whose sitecustomize makes pandas and GeoPandas impossible to import."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCK)
    return folder


def run(settings: Settings, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = env(settings)
    repo = Path(__file__).parents[2]
    environment["PYTHONPATH"] = f"{site}:{repo}"
    return subprocess.run(
        geoetl_cmd(*args), env=environment, capture_output=True, text=True, timeout=180
    )


def test_the_blocker_blocks(settings: Settings, no_geopandas: Path) -> None:
    done = run(settings, no_geopandas, "--help")
    assert done.returncode == 0, done.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import pandas"],
        env={"PYTHONPATH": str(no_geopandas)},
        capture_output=True,
        text=True,
    )
    assert "blocked by the test" in probe.stderr


def test_vector_ingest_and_migration_need_no_geopandas(
    settings: Settings, no_geopandas: Path, pg_database_url: str, tmp_path: Path
) -> None:
    # A GeoPackage, and a GeoParquet in a native GeoArrow encoding.
    nc = gpd.read_file(DATA / "nc.gpkg")
    native = tmp_path / "counties.parquet"
    nc.to_parquet(native, geometry_encoding="geoarrow")
    for path in (DATA / "nc.gpkg", native):
        done = run(settings, no_geopandas, "ingest", str(path), "--json")
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert job["status"] == "succeeded", job
        assert job["result"]["tables"][0]["features"] == len(nc)
    if settings.database_url.startswith("postgresql"):
        return  # migrate-data moves an embedded deployment
    moved = run(settings, no_geopandas, "migrate-data", "--to", pg_database_url, "--json")
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["features"] == 2 * len(nc)
