"""The STAC API as standard clients see it: stac-api-validator, pystac-client, GDAL STACIT.

The sample rasters are published (one collection of DEMs, the land cover as
official-use-only, the Landsat scene in ``system-rasters``) and ``geoetl serve`` runs
on a real port.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rasterio
from fastapi.testclient import TestClient
from pystac_client import Client
from rasterio.windows import Window, from_bounds

from geoetl.api.app import create_app
from geoetl.catalog.models import SearchRequest
from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_runner
from tests.conftest import serving

DATA = Path(__file__).parents[2] / "examples" / "data"
PUBLISH = [
    ("elev.tif", "dems", "public"),
    ("olinda_dem_utm25s.tif", "dems", "public"),
    ("L7_ETMs.tif", "system-rasters", "public"),
    ("lc.tif", "landcover", "ouo"),
]
# Errors that only say the validator could not download JSON schemas (no internet here).
OFFLINE = re.compile(r"schemas\.stacspec\.org|stac-extensions\.github\.io")


def _halves(tmp_path: Path) -> list[Path]:
    """elev.tif cut into a west and an east half: two tiles of one mosaic."""
    out = []
    with rasterio.open(DATA / "elev.tif") as src:
        half = src.width // 2
        for name, window in (
            ("elev_west.tif", Window(0, 0, half, src.height)),
            ("elev_east.tif", Window(half, 0, src.width - half, src.height)),
        ):
            profile = {
                **src.profile,
                "width": window.width,
                "height": window.height,
                "transform": src.window_transform(window),
            }
            with rasterio.open(tmp_path / name, "w", **profile) as dst:
                dst.write(src.read(window=window))
            out.append(tmp_path / name)
    return out


@pytest.fixture
def published(platform: Platform, tmp_path: Path) -> dict[str, dict[str, Any]]:
    runner = make_runner(platform, "stac-loader")
    items = {}
    tiles = [(str(p), "elev-tiles", "public") for p in _halves(tmp_path)]
    for name, collection, level in PUBLISH + tiles:
        key, _ = platform.objects.put_content_addressed(DATA / name)
        job_id, _ = platform.store.submit(
            "process_raster",
            {"source": key, "collection_id": collection, "access_level": level},
        )
        assert runner.run_job(job_id) == JobStatus.succeeded, platform.queries.job(job_id).error
        result = platform.queries.job(job_id).result
        items[Path(name).name] = platform.catalog.get_item(collection, result["item_id"])
    runner.close()
    return items


@pytest.fixture
def served(settings: Settings, published: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    with serving(settings, tmp_path / "serve.log", "--workers", "0") as base:
        yield base


def test_stac_api_validator_passes(served: str) -> None:
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "stac-api-validator"),
            "--root-url",
            f"{served}/stac",
            "--collection",
            "dems",
            "--geometry",
            '{"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], '
            "[180, 90], [-180, 90], [-180, -90]]]}",
            "--fields-nested-property",
            "properties.geoetl:raster_type",
            "--log-level",
            "INFO",
            *[
                f"--conformance={c}"
                for c in (
                    "core",
                    "collections",
                    "features",
                    "item-search",
                    "filter",
                    "item-search#fields",
                    "item-search#sort",
                    "features#fields",
                    "features#sort",
                )
            ],
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert "Validating STAC API - Item Search - Filter Extension" in output, output
    assert "\nErrors:" in output, output
    errors = [
        line
        for line in output.split("\nErrors:", 1)[1].splitlines()
        if line.startswith("- ") and not OFFLINE.search(line)
    ]
    assert errors == [], "\n".join(errors)


def test_pystac_client_searches(served: str, platform: Platform) -> None:
    client = Client.open(f"{served}/stac")
    everything = {i["id"] for i in platform.catalog.search(SearchRequest(limit=100))[0]}
    assert len(everything) == len(PUBLISH) + 2

    pages = list(client.search(max_items=None, limit=1).pages())
    assert len(pages) == len(everything) > 3
    assert {item.id for page in pages for item in page.items} == everything

    dems = client.search(collections=["dems"]).item_collection()
    assert sorted(i.id for i in dems) == ["elev", "olinda_dem_utm25s"]

    elev = platform.catalog.get_item("dems", "elev")
    query = elev["bbox"]

    def overlaps(b: list[float]) -> bool:
        return b[0] <= query[2] and b[2] >= query[0] and b[1] <= query[3] and b[3] >= query[1]

    docs = platform.catalog.search(SearchRequest(limit=100))[0]
    expected = {d["id"] for d in docs if overlaps(d["bbox"])}
    hits = client.search(bbox=query).item_collection()
    assert {i.id for i in hits} == expected
    assert "elev" in expected
    assert expected != everything

    filtered = client.search(
        filter="\"geoetl:raster_type\" = 'dem'", filter_lang="cql2-text"
    ).item_collection()
    assert sorted(i.id for i in filtered) == ["elev", "elev_east", "elev_west", "olinda_dem_utm25s"]

    future = client.search(datetime=f"{datetime.now(UTC).year + 1}-01-01T00:00:00Z/..")
    assert list(future.items()) == []
    today = client.search(datetime=f"{datetime.now(UTC).date()}T00:00:00Z/..")
    assert {i.id for i in today.items()} == everything

    collection = client.get_collection("dems")
    assert collection.id == "dems"
    assert {i.id for i in collection.get_items()} == {"elev", "olinda_dem_utm25s"}


def test_gdal_stacit_opens_a_mosaic_of_the_cogs(
    served: str, published: dict[str, Any], platform: Platform
) -> None:
    url = f'STACIT:"{served}/stac/search?collections=elev-tiles":asset=data'
    whole = published["elev.tif"]
    with rasterio.open(url) as mosaic:
        assert mosaic.count == 1
        assert mosaic.crs.to_epsg() == 4326
        assert mosaic.nodata == -32768
        west, south, east, north = mosaic.bounds
        x0, y0, x1, y1 = whole["bbox"]
        assert abs(west - x0) < 1e-3
        assert abs(east - x1) < 1e-3
        assert abs(south - y0) < 1e-3
        assert abs(north - y1) < 1e-3
        # The mosaic read our asset URLs with range requests; the stored COG compares.
        key = platform.objects.key_of(whole["assets"]["data"]["href"])
        assert key is not None
        with rasterio.open(platform.objects.gdal_path(key)) as cog:
            original = cog.read(1, masked=True)
            window = from_bounds(*cog.bounds, transform=mosaic.transform)
            mosaicked = mosaic.read(1, window=window, out_shape=original.shape, masked=True)
    # The two tiles, mosaicked by GDAL from our search results, give back the whole DEM.
    assert abs(int(mosaicked.count()) - int(original.count())) < 0.01 * original.count()
    assert abs(float(mosaicked.mean()) - float(original.mean())) < 0.01 * float(original.mean())


def test_public_deployment_hides_official_use_only_rasters(
    settings: Settings, published: dict[str, Any]
) -> None:
    lc = published["lc.tif"]
    tiles = f"/raster/collections/landcover/items/{lc['id']}/WebMercatorQuad/tilejson.json"
    with TestClient(create_app(settings.model_copy(update={"audience": "public"}))) as client:
        assert client.get(tiles).status_code == 404
        assert client.get(f"/stac/collections/landcover/items/{lc['id']}").status_code == 404
        r = client.get("/stac/search", params={"ids": lc["id"]})
        assert r.json()["numberMatched"] == 0
        elev = published["elev.tif"]
        ok = f"/raster/collections/dems/items/{elev['id']}/WebMercatorQuad/tilejson.json"
        assert client.get(ok).status_code == 200
    with TestClient(create_app(settings)) as client:
        assert client.get(tiles).status_code == 200
