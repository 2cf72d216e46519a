"""Map pages draw the data in a real browser with the network off.

Debian's Chromium (no browser download) driven by Playwright, against a live
``geoetl serve``. Every host but the loopback fails to resolve, as on a machine
without internet: the pages must load everything they need from geoetl itself, raise
no console errors, and show the data — checked on the screenshot's pixels.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from rasterio.io import MemoryFile

from geoetl.engine.models import JobStatus
from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.workers import make_runner
from tests.conftest import IN_CI, serving

DATA = Path(__file__).parents[2] / "examples" / "data"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OFFLINE = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
# Leaflet's default vector stroke colour (#3388ff).
LEAFLET_BLUE = np.array([51, 136, 255])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--host-resolver-rules={OFFLINE}",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def served(settings: Settings, platform: Platform, tmp_path: Path) -> Iterator[str]:
    runner = make_runner(platform, "web")
    for workflow, name in (("process_raster", "lc.tif"), ("process_vector", "nc.gpkg")):
        key, _ = platform.objects.put_content_addressed(DATA / name)
        job_id, _ = platform.store.submit(workflow, {"source": key, "access_level": "public"})
        assert runner.run_job(job_id) == JobStatus.succeeded, platform.queries.job(job_id).error
    runner.close()
    with serving(settings, tmp_path / "serve.log", "--workers", "0") as base:
        yield base


def visit(browser: Any, url: str, tmp_path: Path, name: str) -> tuple[np.ndarray, list[str]]:
    """Open ``url``; the screenshot's pixels and what went wrong on the way."""
    page = browser.new_page(viewport={"width": 900, "height": 700})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def failed(request: Any) -> None:
        if request.url.startswith(url.split("/", 3)[0] + "//" + url.split("/", 3)[2]):
            problems.append(f"{request.url}: {request.failure}")

    page.on("requestfailed", failed)
    page.on(
        "response",
        lambda r: problems.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None,
    )
    page.goto(url, wait_until="load")
    page.wait_for_selector(".leaflet-tile-loaded, path.leaflet-interactive", timeout=20_000)
    page.wait_for_load_state("networkidle", timeout=20_000)
    png = page.screenshot(path=str(tmp_path / f"{name}.png"))
    page.close()
    # The OpenStreetMap background cannot load offline; nothing else may fail.
    problems = [p for p in problems if "openstreetmap" not in p and "ERR_NAME_NOT" not in p]
    with MemoryFile(png) as mem, mem.open() as img:  # GDAL reads the PNG
        rgb = img.read()[:3].transpose(1, 2, 0).astype(int)
    return rgb, problems


def test_raster_viewer_draws_the_tiles_offline(browser: Any, served: str, tmp_path: Path) -> None:
    url = f"{served}/raster/collections/system-rasters/items/lc/WebMercatorQuad/map.html"
    pixels, problems = visit(browser, url, tmp_path, "viewer")
    assert problems == []
    # lc.tif is a land-cover map with a colour table: many distinct saturated colours,
    # where an empty offline map is one flat grey.
    colours = {tuple(p) for p in pixels[100:600, 100:800].reshape(-1, 3)[::7]}
    assert len(colours) > 20, f"the map shows {len(colours)} colours: no tiles drawn"


def test_features_page_draws_the_features_offline(
    browser: Any, served: str, tmp_path: Path
) -> None:
    pixels, problems = visit(
        browser, f"{served}/collections/nc/items?f=html&limit=100", tmp_path, "features"
    )
    assert problems == []
    near_blue = np.abs(pixels - LEAFLET_BLUE).sum(axis=2) < 60
    assert near_blue.sum() > 500, "no feature outlines drawn on the map"


def test_html_pages_link_html_pages(served: str) -> None:
    page = httpx.get(f"{served}/collections/nc/items", params={"f": "html", "limit": 10}).text
    assert ">self</a> text/html" in page
    assert ">next</a> text/html" in page
    assert ">alternate</a> application/geo+json" in page
    assert "unpkg.com" not in page
