"""Raster versions: replace, read older versions, re-publish unchanged, unpublish one version."""

from __future__ import annotations

import json
from pathlib import Path

import rasterio

from geoetl.settings import Settings
from tests.cli.helpers import geoetl
from tests.lifecycle.helpers import (
    DATA,
    TestClient,
    headers,
    platform_of,
    publish_raster,
    run,
)

BASE = "/stac/collections/terrain/items/dem"
PREVIEW = "/raster/collections/terrain/items/dem/preview.png"


def two_versions(client: TestClient) -> tuple[str, str]:
    platform = platform_of(client)
    first = publish_raster(platform, "elev.tif", collection="terrain", item="dem")
    second = publish_raster(
        platform, "olinda_dem_utm25s.tif", collection="terrain", item="dem", replace=True
    )
    return first, second


def rels(doc: dict) -> dict[str, str]:
    return {link["rel"]: link["href"] for link in doc["links"]}


def test_replace_makes_version_2_and_version_1_stays_readable(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    platform = platform_of(client)
    first, second = two_versions(client)
    assert platform.queries.job(first).result["version"] == 1
    assert platform.queries.job(second).result["version"] == 2

    current = client.get(BASE)
    assert current.status_code == 200, current.text
    doc = current.json()
    assert doc["properties"]["version"] == "2"
    assert doc["properties"]["deprecated"] is False
    assert "predecessor-version" in rels(doc)
    assert rels(doc)["predecessor-version"].endswith("?version=1")

    old = client.get(BASE, params={"version": 1})
    assert old.status_code == 200, old.text
    v1 = old.json()
    assert v1["properties"]["version"] == "1"
    assert v1["properties"]["deprecated"] is True
    assert rels(v1)["successor-version"].endswith("?version=2")
    assert "latest-version" in rels(v1)
    assert v1["assets"]["data"]["file:checksum"] != doc["assets"]["data"]["file:checksum"]
    assert v1["assets"]["data"]["href"].endswith("?version=1")

    # Both versions render.
    for params in ({}, {"version": 1}, {"version": 2}):
        response = client.get(PREVIEW, params=params)
        assert response.status_code == 200, (params, response.text)
        assert response.headers["content-type"] == "image/png"
    assert client.get(PREVIEW, params={"version": 3}).status_code == 404
    assert client.get(BASE, params={"version": 3}).status_code == 404

    # v1's asset downloads through the API and is v1's raster (elev.tif's grid).
    body = client.get(f"{BASE}/assets/data", params={"version": 1})
    assert body.status_code == 200
    path = tmp_path / "v1.tif"
    path.write_bytes(body.content)
    with rasterio.open(path) as v1_cog, rasterio.open(DATA / "elev.tif") as src:
        assert v1_cog.crs == src.crs
        assert (v1_cog.width, v1_cog.height) == (src.width, src.height)
    current_body = client.get(f"{BASE}/assets/data").content
    assert current_body != body.content

    # geoetl versions
    done = geoetl(settings, "versions", "terrain", "dem", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(v["version"], v["status"]) for v in listed] == [(1, "published"), (2, "published")]
    assert [v["job_id"] for v in listed] == [first, second]
    assert listed[1]["objects"] == ["silver/cogs/terrain/v2/dem_analysis.tif"]
    assert listed[0]["objects"] == ["silver/cogs/terrain/dem_analysis.tif"]


def test_identical_republication_is_a_no_op(client: TestClient) -> None:
    platform = platform_of(client)
    first = publish_raster(platform, "elev.tif", collection="terrain", item="dem")
    silver = platform.objects.list_info("silver")
    item = platform.catalog.get_item("terrain", "dem")

    again = platform.store.resubmit(first)
    assert again != first
    assert run(platform, again).value == "succeeded"
    result = platform.queries.job(again).result
    assert result["unchanged"] is True
    assert result["version"] == 1
    assert [v.version for v in platform.versions.history("terrain", "dem")] == [1]
    assert platform.objects.list_info("silver") == silver
    assert platform.catalog.get_item("terrain", "dem") == item

    # The same after a replacement: re-running the current version's job changes nothing.
    second = publish_raster(
        platform, "olinda_dem_utm25s.tif", collection="terrain", item="dem", replace=True
    )
    rerun = platform.store.resubmit(second)
    assert run(platform, rerun).value == "succeeded"
    assert platform.queries.job(rerun).result["unchanged"] is True
    assert platform.queries.job(rerun).result["version"] == 2
    assert [v.version for v in platform.versions.history("terrain", "dem")] == [1, 2]


def test_a_version_hashed_before_parameters_were_added_is_still_unchanged(
    client: TestClient,
) -> None:
    """Versions recorded before NetCDF's parameters existed hashed every parameter then
    known, defaults included; re-publishing the same file must not make a new version."""
    import hashlib

    import sqlalchemy as sa

    from geoetl.engine.ids import canonical_json
    from geoetl.versions import dataset_versions
    from geoetl.workflows.process_raster import ProcessRasterParams

    platform = platform_of(client)
    first = publish_raster(platform, "elev.tif", collection="terrain", item="dem")
    params = ProcessRasterParams.model_validate(platform.queries.job(first).params)
    full = params.model_dump(mode="json", exclude={"replace", "batch_id"})
    # Hashed before NetCDF's parameters came, and while they were there but not tiles'.
    before_netcdf = {
        k: v
        for k, v in full.items()
        if k not in ("variable", "time_as", "time_index", "layout", "tile_size")
    }
    before_tiles = {k: v for k, v in full.items() if k not in ("layout", "tile_size")}
    for era, old in enumerate((before_netcdf, before_tiles)):
        legacy = hashlib.sha256(canonical_json(old).encode()).hexdigest()
        with platform.versions.engine.begin() as conn:
            conn.execute(sa.update(dataset_versions).values(params_hash=legacy))

        again = platform.store.resubmit(first)
        assert run(platform, again).value == "succeeded"
        assert platform.queries.job(again).result["unchanged"] is True, era
        assert [v.version for v in platform.versions.history("terrain", "dem")] == [1]

    # Another option is another publication, whatever the hash was made of.
    other = publish_raster(
        platform, "elev.tif", collection="terrain", item="dem", replace=True, target_crs=None
    )
    assert platform.queries.job(other).result.get("unchanged") is not True


def test_unpublish_one_version_dry_run_then_for_real(
    client: TestClient, settings: Settings
) -> None:
    platform = platform_of(client)
    first, second = two_versions(client)
    v1 = platform.versions.get("terrain", "dem", 1)
    bronze = platform.objects.list_info("bronze")
    silver = set(platform.objects.list("silver"))
    assert set(v1.objects) <= silver

    # Dry run on the command line: exactly v1's objects, with their sizes; nothing changes.
    done = geoetl(settings, "unpublish", "terrain", "dem", "--version", "1", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["dry_run"] is True
    assert plan["versions"] == [1]
    assert {o["key"]: o["size"] for o in plan["objects"]} == {
        k: platform.objects.size(k) for k in v1.objects
    }
    assert plan["bytes"] == sum(platform.objects.size(k) for k in v1.objects)
    assert plan["items"] == ["terrain/dem@v1"]
    assert plan["collections"] == []
    assert plan["current_version_after"] == 2
    assert set(platform.objects.list("silver")) == silver
    assert client.get(BASE, params={"version": 1}).status_code == 200
    assert [v.status for v in platform.versions.history("terrain", "dem")] == [
        "published",
        "published",
    ]

    # The same dry run as a job (the workflow's default).
    job_id, _ = platform.store.submit(
        "unpublish", {"collection_id": "terrain", "item_id": "dem", "version": 1}
    )
    assert run(platform, job_id).value == "succeeded"
    as_job = platform.queries.job(job_id).result
    assert as_job["dry_run"] is True
    assert as_job["objects"] == plan["objects"]
    assert set(platform.objects.list("silver")) == silver

    # For real.
    done = geoetl(settings, "unpublish", "terrain", "dem", "--version", "1", "--execute", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is False
    assert report["objects"] == plan["objects"]
    assert set(platform.objects.list("silver")) == silver - set(v1.objects)
    assert platform.objects.list_info("bronze") == bronze  # sources untouched

    # v2 is served on: STAC, its asset, tiles; v1 is gone everywhere.
    admin = headers(platform, "admin")
    current = client.get(BASE)
    assert current.status_code == 200
    assert current.json()["properties"]["version"] == "2"
    assert "predecessor-version" not in rels(current.json())
    assert client.get(f"{BASE}/assets/data").status_code == 200
    assert client.get(PREVIEW).status_code == 200
    for h in ({}, admin):
        assert client.get(BASE, params={"version": 1}, headers=h).status_code == 404
        assert (
            client.get(f"{BASE}/assets/data", params={"version": 1}, headers=h).status_code == 404
        )
        assert client.get(PREVIEW, params={"version": 1}, headers=h).status_code == 404
    statuses = [v.status for v in platform.versions.history("terrain", "dem")]
    assert statuses == ["unpublished", "published"]

    # The audit log: publish, replace, unpublish (with the report).
    entries = platform.audit.entries(target="terrain/dem")
    by_action = {e.action: e for e in entries}
    assert set(by_action) == {"publish", "replace", "unpublish"}
    assert by_action["publish"].target == "terrain/dem@v1"
    assert by_action["publish"].job_id == first
    assert by_action["replace"].target == "terrain/dem@v2"
    assert by_action["replace"].job_id == second
    assert by_action["replace"].details["replaced_version"] == 1
    unpublished = by_action["unpublish"]
    assert unpublished.target == "terrain/dem@v1"
    assert unpublished.details == report
