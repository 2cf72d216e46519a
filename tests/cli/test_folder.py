"""``geoetl ingest FOLDER``: every dataset in it, one job each, and a summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from shapely.geometry import LineString

from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import DATA, geoetl, parcels
from tests.engine.helpers import helper_pids


def make_folder(root: Path) -> Path:
    """A folder as users have them: sidecars, notes, a subfolder, a geodatabase, hidden bits."""
    folder = root / "survey"
    (folder / "sub").mkdir(parents=True)
    for name in ("elev.tif", "lc.tif", "lc.tif.aux.xml", "README.md"):
        shutil.copy(DATA / name, folder / name)
    for suffix in (".shp", ".shx", ".dbf", ".prj"):
        shutil.copy(DATA / f"lux{suffix}", folder / f"lux{suffix}")
    (folder / "elev.tfw").write_text("30.0\n0.0\n0.0\n-30.0\n-78.0\n36.0\n")
    (folder / "settings.json").write_text('{"owner": "survey team"}\n')
    (folder / "._lux.shp").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS litter
    (folder / ".cache").mkdir()
    shutil.copy(DATA / "elev.tif", folder / ".cache" / "copy.tif")
    shutil.copy(DATA / "nc.gpkg", folder / "sub" / "nc.gpkg")
    roads = gpd.GeoDataFrame(
        {"name": ["a", "b"]},
        geometry=[LineString([(5.9, 49.5), (6.1, 49.7)]), LineString([(6.0, 49.6), (6.2, 49.8)])],
        crs="EPSG:4326",
    )
    pyogrio.write_dataframe(roads, folder / "sub" / "roads.gdb", driver="OpenFileGDB")
    return folder


def test_a_folder_publishes_each_dataset_once(settings: Settings, tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    run = geoetl(settings, "ingest", str(folder), "--access-level", "public", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    found = {d["file"]: (d["kind"], d["status"], d["published"]) for d in report["datasets"]}
    assert found == {
        "elev.tif": ("raster", "succeeded", "system-rasters/elev"),
        "lc.tif": ("raster", "succeeded", "system-rasters/lc"),
        "lux.shp": ("vector", "succeeded", "system-vectors/lux"),
        "sub/nc.gpkg": ("vector", "succeeded", "system-vectors/nc"),
        "sub/roads.gdb": ("vector", "succeeded", "system-vectors/roads"),
    }
    assert report["not_datasets"] == ["README.md", "settings.json"]
    # The options applied to each; one job per dataset, nothing else.
    assert {d["job"]["access_level"] for d in report["datasets"]} == {"public"}
    roads = report["datasets"][4]["job"]["result"]["tables"]
    assert [(t["collection_id"], t["features"]) for t in roads] == [("roads", 2)]
    platform = Platform.from_settings(settings)
    try:
        assert platform.queries.jobs().total == 5
        collections = {c.collection_id for c in platform.feature_registry.all()}
        assert collections == {"lux", "nc", "roads"}
    finally:
        platform.close()

    # Again without --json: the summary table, every job found as it was.
    again = geoetl(settings, "ingest", str(folder), "--access-level", "public")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].startswith(f"5 datasets in {folder}: 5 succeeded")
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:7]}
    assert rows["lux.shp"] == ["vector", "succeeded", "system-vectors/lux"]
    assert rows["sub/roads.gdb"] == ["vector", "succeeded", "system-vectors/roads"]
    assert "not datasets, left alone: README.md, settings.json" in again.stdout
    assert "Traceback" not in again.stderr

    # A .gdb folder on its own is one dataset too, and the same one (the same job).
    gdb = geoetl(
        settings, "ingest", str(folder / "sub" / "roads.gdb"), "--access-level", "public", "--json"
    )
    assert gdb.returncode == 0, gdb.stderr
    job = json.loads(gdb.stdout)
    assert (job["job_id"], job["idempotent"]) == (report["datasets"][4]["job"]["job_id"], True)


def test_a_failed_dataset_is_reported_and_the_exit_code_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(DATA / "elev.tif", folder / "elev.tif")
    (folder / "notes.tif").write_text("not a raster\n")
    run = geoetl(settings, "ingest", str(folder))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"2 datasets in {folder}: 1 succeeded, 1 failed")
    elev = next(line for line in lines if line.startswith("elev.tif"))
    assert elev.split() == ["elev.tif", "raster", "succeeded", "system-rasters/elev"]
    notes = next(line for line in lines if line.startswith("notes.tif"))
    assert "failed" in notes
    assert "notes.tif is not a raster GDAL can read" in " ".join(run.stdout.split())


def test_one_id_for_a_whole_folder_is_refused(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    shutil.copy(DATA / "elev.tif", folder / "elev.tif")
    for flag in ("--item-id", "--dataset-id"):
        run = geoetl(settings, "ingest", str(folder), flag, "one")
        assert run.returncode == 2, run.stderr
        assert f"{flag} names one dataset, and {folder} is a folder" in " ".join(run.stderr.split())
        assert "Traceback" not in run.stderr
    empty = tmp_path / "empty"
    (empty / ".git").mkdir(parents=True)
    (empty / "notes.txt").write_text("nothing here\n")
    run = geoetl(settings, "ingest", str(empty))
    assert run.returncode == 2
    assert "holds no dataset geoetl reads" in run.stderr


@pytest.mark.parametrize("as_json", [False, True], ids=["terminal", "json"])
def test_every_dataset_of_a_folder_is_helped_by_the_same_processes(
    settings: Settings, tmp_path: Path, as_json: bool
) -> None:
    """GEOETL_RUN_WORKERS=2: one helper, forked before the folder's first job, helps them all.

    A helper forked after a job had run in the command waited forever for GDAL's worker
    threads (which a fork does not copy) on its first raster warp: the folder hung.
    Here the command warps a raster first, then two vector files that take 8 chunks each.
    """
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(DATA / "elev.tif", folder / "a_elev.tif")
    shutil.copy(DATA / "lc.tif", folder / "b_lc.tif")
    parcels(folder / "c_parcels.gpkg", 40_000)
    shutil.copy(folder / "c_parcels.gpkg", folder / "d_parcels.gpkg")
    # In a terminal, a progress display runs on a thread: helpers all the same.
    args = ("--chunk-size", "5000", "--access-level", "public", *(["--json"] if as_json else []))
    run = geoetl(settings, "ingest", str(folder), *args)
    assert run.returncode == 0, run.stderr
    if as_json:
        assert [d["status"] for d in json.loads(run.stdout)["datasets"]] == ["succeeded"] * 4
    else:
        assert run.stdout.splitlines()[0].startswith(f"4 datasets in {folder}: 4 succeeded")
    platform = Platform.from_settings(settings)
    try:
        jobs = sorted(platform.queries.jobs().items, key=lambda job: job.created_at)
        assert [job.status for job in jobs] == [JobStatus.succeeded] * 4
        helpers = {job.job_id: helper_pids(platform, job.job_id) for job in jobs}
        vectors = [job.job_id for job in jobs if job.workflow == "process_vector"]
    finally:
        platform.close()
    # Both vector jobs had help (8 chunks each), from the one helper process.
    assert len(vectors) == 2
    assert all(helpers[job] for job in vectors), helpers
    assert len(set().union(*helpers.values())) == 1, helpers
