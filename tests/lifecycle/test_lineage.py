"""Lineage: from a published output back to its source, and from a source to its outputs."""

from __future__ import annotations

from geoetl.storage.objectstore import LINEAGE, sha256_file
from tests.lifecycle.helpers import (
    DATA,
    TestClient,
    headers,
    platform_of,
    publish_raster,
    put,
    submit_run,
)


def test_lineage_walks_both_ways_for_rasters_and_vectors(client: TestClient) -> None:
    platform = platform_of(client)
    job_v1 = publish_raster(platform, "elev.tif", collection="terrain", item="dem")
    job_v2 = publish_raster(
        platform, "olinda_dem_utm25s.tif", collection="terrain", item="dem", replace=True
    )
    vector_job = submit_run(
        platform,
        "process_vector",
        {
            "source": put(platform, DATA / "nc.gpkg"),
            "dataset_id": "counties",
            "access_level": "public",
        },
    )

    # Dataset -> its versions, each with source, job, workflow and outputs.
    found = client.get("/lineage", params={"of": "terrain/dem"})
    assert found.status_code == 200, found.text
    records = found.json()["records"]
    assert [r["lineage_id"] for r in records] == ["terrain/dem@v1", "terrain/dem@v2"]
    assert [r["job_id"] for r in records] == [job_v1, job_v2]
    v1, v2 = records
    assert v1["source"]["sha256"] == sha256_file(DATA / "elev.tif")
    assert v2["source"]["key"].endswith("/olinda_dem_utm25s.tif")
    assert v1["workflow"] == "process_raster"
    assert v1["workflow_version"] == 1
    assert len(v1["params_hash"]) == 64
    assert v1["published"] is not None
    assert all(
        platform.objects.exists(k) for k in v1["outputs"]["objects"] + v2["outputs"]["objects"]
    )
    assert set(v1["outputs"]["objects"]).isdisjoint(v2["outputs"]["objects"])

    # Output (a COG) -> the version and source that made it; the object says so too.
    cog = v2["outputs"]["objects"][0]
    assert platform.objects.metadata(cog)[LINEAGE] == "terrain/dem@v2"
    assert platform.objects.metadata(v1["outputs"]["objects"][0])[LINEAGE] == "terrain/dem@v1"
    back = client.get("/lineage", params={"of": cog}).json()
    assert back["direction"] == "output_to_source"
    assert [r["lineage_id"] for r in back["records"]] == ["terrain/dem@v2"]

    # Source (bronze key, or its SHA-256) -> everything made from it.
    for source in (v1["source"]["key"], v1["source"]["sha256"]):
        onward = client.get("/lineage", params={"of": source}).json()
        assert onward["direction"] == "source_to_outputs"
        assert [r["lineage_id"] for r in onward["records"]] == ["terrain/dem@v1"]

    # Vectors: the feature tables and GeoParquet are outputs too.
    counties = client.get("/lineage", params={"of": "system-vectors/counties@v1"}).json()["records"]
    assert counties[0]["job_id"] == vector_job
    assert counties[0]["outputs"]["feature_tables"]
    assert counties[0]["outputs"]["feature_collections"] == ["counties"]
    parquet = counties[0]["outputs"]["objects"][0]
    assert parquet.endswith(".parquet")
    assert platform.objects.metadata(parquet)[LINEAGE] == "system-vectors/counties@v1"
    assert (
        client.get("/lineage", params={"of": parquet}).json()["records"][0]["item_id"] == "counties"
    )

    # The STAC item links its lineage (derived_from), and the link resolves.
    item = client.get("/stac/collections/terrain/items/dem").json()
    (link,) = [link for link in item["links"] if link["rel"] == "derived_from"]
    resolved = client.get(link["href"])
    assert resolved.status_code == 200, resolved.text
    assert [r["lineage_id"] for r in resolved.json()["records"]] == ["terrain/dem@v2"]


def test_lineage_hides_what_the_caller_may_not_see_and_refuses_nonsense(
    client: TestClient,
) -> None:
    platform = platform_of(client)
    publish_raster(platform, "elev.tif", collection="secret", item="dem", access_level="ouo")
    assert client.get("/lineage", params={"of": "secret/dem"}).status_code == 404
    assert client.get("/lineage/secret/dem").status_code == 404
    reader = headers(platform, "reader", clearance="ouo")
    seen = client.get("/lineage", params={"of": "secret/dem"}, headers=reader)
    assert seen.status_code == 200, seen.text
    source = seen.json()["records"][0]["source"]["key"]
    assert client.get("/lineage", params={"of": source}).status_code == 404  # anonymous
    bad = client.get("/lineage", params={"of": "../../etc/passwd"})
    assert bad.status_code == 400
    assert "is not a source" in bad.json()["detail"]
    assert client.get("/lineage", params={"of": "nowhere/nothing"}).status_code == 404
