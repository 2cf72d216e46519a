"""Raster requests are bounded: sizes and counts over their limits are 400 and say why.

One anonymous ``preview.png?width=100000&height=100000`` used to take the API process's
memory. Previews are limited to ``GEOETL_MAX_IMAGE_PX`` a side, statistics to
``GEOETL_MAX_STATISTICS_PX``, tiles, buffers, band lists, histogram bins and the like by
fixed limits (see ``geoetl.api.tiles``).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile

from geoetl.api.app import create_app
from geoetl.settings import Settings
from tests.api.conftest import platform_of
from tests.api.test_tiles import DATA, publish
from tests.conftest import geoetl_cmd, serve_pid, serving, settings_env

SAMPLE = "L7_ETMs.tif"  # 6 bands (7 in the COG: reprojecting added an alpha band)
ALL_BANDS = "&".join(f"bidx={b}" for b in range(1, 8))
FEATURE = {
    "type": "Feature",
    "properties": {},
    "geometry": {
        "type": "Polygon",
        "coordinates": [
            [[-35.0, -8.1], [-34.8, -8.1], [-34.8, -7.9], [-35.0, -7.9], [-35.0, -8.1]]
        ],
    },
}


@pytest.fixture
def base(client: TestClient) -> str:
    """The raster routes of the published sample."""
    result = publish(platform_of(client), SAMPLE)
    return str(result["urls"]["preview"]).rsplit("/preview", 1)[0]  # type: ignore[index]


def image_size(content: bytes) -> tuple[int, int, int]:
    with MemoryFile(content) as mem, mem.open() as img:
        return img.count, img.width, img.height


GIANT = "preview.png?width=100000&height=100000"
PREVIEW_CAP = "a preview is at most 2048 px a side (setting GEOETL_MAX_IMAGE_PX)"
STATS_CAP = "statistics are read onto at most 1024 px a side (setting GEOETL_MAX_STATISTICS_PX)"
TILE = "tiles/WebMercatorQuad/14/6605/8557.png"  # inside the sample

REFUSED: list[tuple[str, str]] = [
    (GIANT, f"width='100000' is too large: {PREVIEW_CAP}"),
    ("preview.png?height=5000", f"height='5000' is too large: {PREVIEW_CAP}"),
    ("preview/4096x4096.png", f"width='4096' is too large: {PREVIEW_CAP}"),
    ("preview.png?max_size=2049", f"max_size='2049' is too large: {PREVIEW_CAP}"),
    ("preview.png?width=abc", f"width='abc' is not a whole number: {PREVIEW_CAP}"),
    ("preview.png?width=0&height=10", "width='0' is too small: the least is 1"),
    # A width alone keeps the aspect ratio: this raster is taller than wide.
    ("preview.png?width=2048", "the image would be 2048 x"),
    ("statistics?max_size=2048", f"max_size='2048' is too large: {STATS_CAP}"),
    ("statistics?width=1024&height=4096", f"height='4096' is too large: {STATS_CAP}"),
    ("statistics?width=1024", "the image would be 1024 x"),
    (
        f"{TILE}?tilesize=4096",
        "tilesize='4096' is too large: tiles are at most 1024 px a side (a fixed limit)",
    ),
    (f"{TILE}?buffer=65", "buffer='65' is too large: a tile buffer is at most 64 px"),
    (f"{TILE}?padding=1000", "padding='1000' is too large: a tile padding is at most 64 px"),
    ("tiles/WebMercatorQuad/40/0/0.png", "z='40' is too large: zoom levels go up to 30"),
    ("WebMercatorQuad/tilejson.json?tilesize=2048", "tilesize='2048' is too large"),
    ("WebMercatorQuad/map.html?maxzoom=99", "maxzoom='99' is too large"),
    ("tiles/WebMercatorQuad?maxzoom=100000", "maxzoom='100000' is too large"),
    ("statistics?histogram_bins=1000000", "histogram_bins='1000000' is too large"),
    ("statistics?p=101", "p='101' is too large: a percentile (p) is from 0 to 100"),
    ("preview.png?" + "&".join(["bidx=1"] * 17), "17 bidx values are too many: at most 16"),
    ("preview.png?expression=" + "b1%2B" * 400 + "b1", "expression has 1202 characters"),
    ("preview.png?expression=" + "b1;" * 16 + "b1", "17 expression values are too many"),
    ("preview.png?bidx=9", "band 9 does not exist: this raster has bands 1 to 7"),
    ("preview.png?colormap=" + "[" * 9 + "]" * 9, "colormap is nested too deep"),
]


def test_oversize_and_malformed_requests_are_400_and_say_why(client: TestClient, base: str) -> None:
    for path, message in REFUSED:
        r = client.get(f"{base}/{path}")
        assert r.status_code == 400, (path, r.text)
        body = r.json()
        assert body["code"] == "InputError", (path, body)
        assert message in body["detail"], (path, body["detail"])
        assert set(body) == {"code", "detail"}, path


def test_statistics_for_features_are_bounded(client: TestClient, base: str) -> None:
    refused = [
        ("statistics?cover_scale=1000", FEATURE, "cover_scale='1000' is too large"),
        ("statistics?max_size=4096", FEATURE, f"max_size='4096' is too large: {STATS_CAP}"),
        ("statistics?width=512", FEATURE, "give both width and height, or max_size"),
        (
            "statistics",
            {"type": "FeatureCollection", "features": [FEATURE] * 101},
            "101 features are too many: statistics take at most 100 features per request",
        ),
    ]
    for path, body, message in refused:
        r = client.post(f"{base}/{path}", json=body)
        assert r.status_code == 400, (path, r.text)
        assert message in r.json()["detail"], (path, r.json())
    # Without a size, a feature is read onto at most the statistics cap, not its full window.
    r = client.post(f"{base}/statistics", json=FEATURE)
    assert r.status_code == 200, r.text
    stats = r.json()["properties"]["statistics"]
    assert 0 < stats["b3"]["count"] <= 1024 * 1024


def test_largest_allowed_requests_succeed(client: TestClient, base: str) -> None:
    r = client.get(f"{base}/preview.png?width=2048&height=2048")
    assert r.status_code == 200, r.text
    assert image_size(r.content)[1:] == (2048, 2048)
    r = client.get(f"{base}/preview/2048x2048.tif?{ALL_BANDS}")
    assert r.status_code == 200, r.text
    assert image_size(r.content) == (7 + 1, 2048, 2048)  # the bands and titiler's mask
    r = client.get(f"{base}/preview.png?height=2048")  # narrower than tall: fits
    assert r.status_code == 200, r.text
    r = client.get(f"{base}/statistics?max_size=1024&{ALL_BANDS}&histogram_bins=1000&p=1&p=99")
    assert r.status_code == 200, r.text
    assert set(r.json()) == {f"b{b}" for b in range(1, 8)}
    r = client.get(f"{base}/{TILE}?tilesize=1024&buffer=64&padding=64")
    assert r.status_code == 200, r.text
    assert image_size(r.content)[1:] == (1024 + 128, 1024 + 128)  # tilesize + 2 x buffer
    # The defaults still work: preview (titiler's max_size 1024), statistics, a tile.
    r = client.get(f"{base}/preview.png")
    assert r.status_code == 200, r.text
    assert max(image_size(r.content)[1:]) <= 1024  # a small raster keeps its own size
    assert client.get(f"{base}/statistics").status_code == 200
    assert client.get(f"{base}/WebMercatorQuad/tilejson.json").status_code == 200


def test_the_settings_set_the_image_limits(api_settings: Settings) -> None:
    small = api_settings.model_copy(update={"max_image_px": 300, "max_statistics_px": 200})
    with TestClient(create_app(small)) as c:
        secret = platform_of(c).tokens.create("limits-admin", "admin", "restricted")
        c.headers["Authorization"] = f"Bearer {secret}"
        base = str(publish(platform_of(c), SAMPLE)["urls"]["preview"]).rsplit("/", 1)[0]
        r = c.get(f"{base}/preview.png?width=301&height=301")
        assert r.status_code == 400
        assert "at most 300 px a side (setting GEOETL_MAX_IMAGE_PX)" in r.json()["detail"]
        # titiler's default max_size (1024) is lowered to the limit, not refused.
        r = c.get(f"{base}/preview.png")
        assert r.status_code == 200, r.text
        assert max(image_size(r.content)[1:]) == 300
        r = c.get(f"{base}/statistics")
        assert r.status_code == 200, r.text
        assert r.json()["b3"]["count"] <= 200 * 200
        r = c.get(f"{base}/statistics?max_size=201")
        assert "at most 200 px a side (setting GEOETL_MAX_STATISTICS_PX)" in r.json()["detail"]


# -- memory of a live server ---------------------------------------------------------------


class PeakRss:
    """Samples a process's resident memory every few milliseconds; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str, int]]:
    """``geoetl serve --workers 0`` with the sample ingested: (base URL, raster path, pid)."""
    out = subprocess.run(
        geoetl_cmd("ingest", str(DATA / SAMPLE), "--access-level", "public", "--json"),
        env=settings_env(settings),
        capture_output=True,
        check=True,
        timeout=300,
    )
    preview = json.loads(out.stdout)["result"]["urls"]["preview"]
    with serving(settings, tmp_path / "serve.log", "--workers", "0") as url:
        yield url, preview.rsplit("/preview", 1)[0], serve_pid(url)


MIB = 1024 * 1024


# Measured on the sample (2 CPUs, glibc; geoetl serve --workers 0): baseline RSS after a
# first raster request about 171 MiB; the largest allowed requests, one at a time, peaked at
# baseline + 265 MiB (2048 x 2048 GeoTIFF of all 7 bands: +207 MiB the first time, then
# about +120 MiB; 2048 x 2048 PNG: +110 MiB; statistics at 1024: +2 MiB); six at once at
# baseline + 700 MiB. Before the limits, one 6000 x 6000 preview took +1,856 MiB, and the
# 100000 x 100000 one asks for about 500 GiB.
SEQUENTIAL_BOUND_MIB = 512
CONCURRENT_BOUND_MIB = 1280


@pytest.mark.parametrize("backend", ["sqlite"])  # the server's memory, not the job store
def test_largest_requests_keep_the_server_within_its_memory_bound(
    live: tuple[str, str, int],
) -> None:
    """The largest allowed requests keep ``geoetl serve`` within a memory bound.

    Bounds (peak RSS over the RSS after a warm-up request, sampled every 2 ms): 512 MiB
    for the largest preview and statistics requests sent one after the other, five times
    over (measured: +265 MiB); 1,280 MiB for six of them at once (measured: +700 MiB).
    Memory grows with the number of requests served at once: each is bounded, their
    number only by the server's thread pool.
    """
    url, raster, pid = live
    largest = [
        f"{raster}/preview.png?width=2048&height=2048",
        f"{raster}/preview/2048x2048.tif?{ALL_BANDS}",
        f"{raster}/statistics?max_size=1024&{ALL_BANDS}&histogram_bins=1000",
    ]
    with httpx.Client(base_url=url, timeout=120) as http:
        # Warm up: the first raster request imports and opens what later ones reuse.
        assert http.get(f"{raster}/preview.png?max_size=64").status_code == 200
        time.sleep(0.5)
        baseline = psutil.Process(pid).memory_info().rss
        with PeakRss(pid) as sequential:
            r = http.get(f"{raster}/{GIANT}")
            assert r.status_code == 400, r.text
            for _ in range(5):
                for path in largest:
                    r = http.get(path)
                    assert r.status_code == 200, (path, r.text)
        statuses: list[int] = []
        with PeakRss(pid) as concurrent:
            threads = [
                threading.Thread(target=lambda p=p: statuses.append(http.get(p).status_code))
                for p in largest * 2
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert statuses == [200] * 6
    one_by_one = (sequential.peak - baseline) / MIB
    at_once = (concurrent.peak - baseline) / MIB
    report = (
        f"baseline {baseline / MIB:.0f} MiB, +{one_by_one:.0f} one by one, +{at_once:.0f} at once"
    )
    assert one_by_one < SEQUENTIAL_BOUND_MIB, report
    assert at_once < CONCURRENT_BOUND_MIB, report
