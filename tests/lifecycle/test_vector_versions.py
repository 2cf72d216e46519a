"""Vector versions: OGC API features of each version, then unpublishing every version."""

from __future__ import annotations

import pytest

from geoetl.catalog.models import SYSTEM_COLLECTIONS
from geoetl.errors import NotFound
from geoetl.platform import Platform
from tests.lifecycle.helpers import DATA, TestClient, no_item, platform_of, put, submit_run


def publish_vector(platform: Platform, name: str, **params: object) -> str:
    return submit_run(
        platform,
        "process_vector",
        {"source": put(platform, DATA / name), "access_level": "public", **params},
    )


def unpublish_all(platform: Platform, collection: str, item: str) -> dict:
    job_id = submit_run(
        platform,
        "unpublish",
        {"collection_id": collection, "item_id": item, "dry_run": False},
    )
    return platform.queries.job(job_id).result


def test_vector_versions_are_served_then_unpublished_completely(client: TestClient) -> None:
    platform = platform_of(client)
    first = publish_vector(platform, "nc.gpkg", collection_id="places", dataset_id="shapes")
    second = publish_vector(
        platform, "buildings.gpkg", collection_id="places", dataset_id="shapes", replace=True
    )
    r1, r2 = platform.queries.job(first).result, platform.queries.job(second).result
    assert (r1["version"], r2["version"]) == (1, 2)
    [t1], [t2] = r1["tables"], r2["tables"]
    assert t1["collection_id"] == t2["collection_id"]  # OGC ids stay across versions
    cid = t1["collection_id"]
    assert (t1["features"], t2["features"]) == (100, 158)

    items = client.get(f"/collections/{cid}/items", params={"limit": 5})
    assert items.status_code == 200, items.text
    assert items.json()["numberMatched"] == 158
    old = client.get(f"/collections/{cid}/items", params={"limit": 5, "version": 1})
    assert old.status_code == 200, old.text
    assert old.json()["numberMatched"] == 100
    assert "name" in old.json()["features"][0]["properties"]  # nc.gpkg's county names
    assert client.get(f"/collections/{cid}", params={"version": 1}).status_code == 200
    assert client.get(f"/collections/{cid}/items", params={"version": 3}).status_code == 404
    stac = client.get("/stac/collections/places/items/shapes")
    assert stac.json()["properties"]["version"] == "2"

    storage = [v.storage_id for v in platform.versions.history("places", "shapes")]
    assert storage == ["shapes", "shapes__v2"]
    parquet = [k for v in platform.versions.history("places", "shapes") for k in v.objects]
    assert len(parquet) == 2
    assert all(platform.objects.exists(k) for k in parquet)

    report = unpublish_all(platform, "places", "shapes")
    assert report["versions"] == [1, 2]
    assert report["collections"] == ["places"]
    assert sorted(o["key"] for o in report["objects"]) == sorted(parquet)

    assert client.get(f"/collections/{cid}").status_code == 404
    assert client.get(f"/collections/{cid}/items").status_code == 404
    assert client.get(f"/collections/{cid}/items", params={"version": 1}).status_code == 404
    assert cid not in {c["id"] for c in client.get("/collections").json()["collections"]}
    for dataset in storage:
        with pytest.raises(NotFound):
            platform.features.tables(dataset)
    assert platform.objects.list("silver") == []
    assert no_item(platform, "places", "shapes")
    assert client.get("/stac/collections/places/items/shapes").status_code == 404
    with pytest.raises(NotFound):
        platform.catalog.get_collection("places")
    assert client.get("/stac/collections/places").status_code == 404
    assert platform.objects.list("bronze") != []  # sources stay


def test_system_collections_are_never_deleted(client: TestClient) -> None:
    platform = platform_of(client)
    assert "system-vectors" in SYSTEM_COLLECTIONS
    publish_vector(platform, "nc.gpkg", dataset_id="counties")  # into system-vectors
    report = unpublish_all(platform, "system-vectors", "counties")
    assert report["collections"] == []
    assert no_item(platform, "system-vectors", "counties")
    assert platform.catalog.get_collection("system-vectors")["id"] == "system-vectors"
    assert client.get("/stac/collections/system-vectors").status_code == 200
