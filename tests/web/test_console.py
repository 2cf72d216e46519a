"""The web console in a real browser, with the network off.

Debian's Chromium (no browser download) driven by Playwright against a live ``geoetl
serve`` with two workers, on SQLite. Every host but the loopback fails to resolve.
Through the pages: sign in with a token, drop a GeoTIFF and a zipped shapefile on the
upload page and watch both jobs succeed on the jobs list without reloading, open a
failed upload's job page and read its error, open both item pages and check that the
map draws the data (its pixels are not uniform), search the catalog with a box drawn
on the map; a reader sees no write button and the API refuses its writes. No page may
log a console error or get an error answer from the server. Screenshots of every page
(laptop and phone widths) go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import base64
import io
import shutil
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.conftest import REPO, homes_outside_tmp, serving
from tests.web.test_maps_offline import browser as browser  # the fixture

DATA = REPO / "examples" / "data"
SHOTS = REPO / "test-artifacts" / "console"
JOB_TIMEOUT_MS = 90_000


@dataclass
class Site:
    base: str
    admin: str
    publisher: str
    reader: str
    jobs: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    home = homes_outside_tmp() / f"console-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        home=home,
        lease_seconds=10.0,
        heartbeat_seconds=1.0,
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        approval_collections="review",
    )
    platform = Platform.from_settings(settings)
    try:
        tokens = {
            role: platform.tokens.create(f"{role}-ui", role, "restricted")
            for role in ("admin", "publisher", "reader")
        }
    finally:
        platform.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with serving(settings, SHOTS / "serve.log", "--workers", "2") as base:
            yield Site(base, tokens["admin"], tokens["publisher"], tokens["reader"])
    finally:
        shutil.rmtree(home, ignore_errors=True)


class Tab:
    """A browser page that records everything that went wrong on it."""

    def __init__(
        self, browser: Any, site: Site, token: str | None, width: int = 1200, expect_404: str = ""
    ) -> None:
        self.site = site
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.problems: list[str] = []
        page = self.page
        page.on(
            "console",
            lambda m: (
                self.problems.append(m.text)
                if m.type == "error" and not (expect_404 and "404" in m.text)
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(str(e)))
        page.on(
            "requestfailed",
            lambda r: (
                self.problems.append(f"{r.url}: {r.failure}")
                if r.url.startswith(site.base) and "ERR_ABORTED" not in str(r.failure)
                else None
            ),  # requests cut short by leaving the page are no failure
        )
        page.on(
            "response",
            lambda r: (
                self.problems.append(f"{r.url}: HTTP {r.status}")
                if r.status >= 400 and not (expect_404 and expect_404 in r.url)
                else None
            ),
        )
        page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith((site.base, "data:", "blob:"))
                else self.problems.append(f"external request {r.url}")
            ),
        )
        if token:
            page.add_init_script(f"sessionStorage.setItem('geoetl.token', {token!r})")

    def go(self, path: str) -> Any:
        self.page.goto(self.site.base + path, wait_until="load")
        return self.page

    def shot(self, name: str) -> None:
        self.page.wait_for_load_state("networkidle", timeout=20_000)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()
        assert self.problems == []


# Visible links, buttons and form controls with no accessible name.
UNNAMED_CONTROLS = """() => [...document.querySelectorAll("a[href], button, input, select")]
  .filter((n) => n.offsetParent !== null)
  .filter((n) => !((n.labels && n.labels.length) || n.getAttribute("aria-label")
    || n.textContent.trim() || n.title))
  .map((n) => n.outerHTML.slice(0, 100))"""


def zipped_shapefile() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for ext in ("shp", "shx", "dbf", "prj"):
            z.write(DATA / f"lux.{ext}", f"lux.{ext}")
    return out.getvalue()


def pixels(png: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as mem, mem.open() as img:  # GDAL reads the PNG
            return img.read()[:3].transpose(1, 2, 0).reshape(-1, 3)


def test_sign_in_upload_two_files_and_watch_both_succeed(browser: Any, site: Site) -> None:
    tab = Tab(browser, site, None)
    page = tab.go("/ui/signin")
    tab.shot("signin")
    page.get_by_label("API token").fill(site.publisher)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/jobs")
    expect(page.locator("#whoami")).to_contain_text("publisher-ui (publisher)")

    page = tab.go("/ui/upload")
    page.wait_for_selector("#upload-form[data-ready]:not([hidden])")
    # Drop both files on the drop zone, as a drag and drop from the desktop does.
    files = [
        {"name": "lc.tif", "b64": base64.b64encode((DATA / "lc.tif").read_bytes()).decode()},
        {"name": "lux.zip", "b64": base64.b64encode(zipped_shapefile()).decode()},
    ]
    transfer = page.evaluate_handle(
        """(files) => { const dt = new DataTransfer();
          for (const f of files) {
            const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], f.name));
          }
          return dt; }""",
        files,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#chosen li")).to_have_count(2)
    # The options come from both workflows' params schemas.
    assert page.locator("#workflow-name").inner_text() == "process_raster + process_vector"
    for option in ("collection_id", "output_tier", "target_crs", "keep_z", "access_level"):
        expect(page.locator(f"#opt-{option}")).to_have_count(1)
    assert page.get_by_label("Output Tier (raster only)").input_value() == "analysis"
    page.get_by_label("Access Level").select_option("public")
    tab.shot("upload")
    page.get_by_role("button", name="Upload and publish").click()
    page.wait_for_url("**/ui/jobs")
    page.evaluate("window.__notReloaded = true")
    rows = page.locator("#jobs-table tbody tr")
    rows.first.wait_for()
    expect(rows).to_have_count(2)
    page.wait_for_function(
        "document.querySelectorAll('#jobs-table tr[data-status=succeeded]').length === 2",
        timeout=JOB_TIMEOUT_MS,
    )
    assert page.evaluate("window.__notReloaded") is True, "the list reloaded the page"
    text = page.locator("#jobs-table").inner_text()
    assert "process_raster" in text
    assert "system-vectors/lux" in text
    for tr in rows.all():
        site.jobs[tr.locator("td").nth(2).inner_text()] = str(tr.get_attribute("data-job"))
    tab.shot("jobs")
    # The list filters by status and workflow.
    page.get_by_label("Workflow").select_option("process_vector")
    page.wait_for_function("document.querySelectorAll('#jobs-table tbody tr').length === 1")

    page = tab.go(f"/ui/jobs/{site.jobs['process_raster']}")
    page.wait_for_selector("#outputs-box:not([hidden])")
    # Every stage the workflow declares is listed (assemble has no task for a small
    # raster); the four that ran have one task each.
    from geoetl.workflows.process_raster import process_raster

    expect(page.locator("#stages li")).to_have_count(len(process_raster.stages))
    expect(page.locator("#tasks tbody tr")).to_have_count(4)
    expect(page.locator("#events li").nth(4)).to_be_attached()
    expect(page.get_by_role("link", name="Item page: system-rasters/lc")).to_have_count(1)
    expect(page.get_by_role("button", name="Resubmit")).to_be_visible()
    tab.shot("job-succeeded")
    tab.close()


def test_a_failed_upload_shows_a_readable_error(browser: Any, site: Site) -> None:
    tab = Tab(browser, site, site.publisher)
    page = tab.go("/ui/upload")
    page.wait_for_selector("#upload-form[data-ready]:not([hidden])")
    payload = b"this is not a GeoTIFF, only text\n" * 20
    page.get_by_label("Files to publish").set_input_files(
        {"name": "broken.tif", "mimeType": "image/tiff", "buffer": payload}
    )
    page.get_by_label("Access Level").select_option("public")
    page.get_by_role("button", name="Upload and publish").click()
    page.wait_for_url("**/ui/jobs/*")
    page.wait_for_selector("#error-box:not([hidden])", timeout=JOB_TIMEOUT_MS)
    where = page.locator("#error-where").inner_text()
    message = page.locator("#error-message").inner_text()
    assert "validate" in where, where
    assert "broken.tif" in message or "not" in message.lower(), message
    assert "Traceback" not in message
    expect(page.locator("#events li.bad").first).to_be_attached()
    tab.shot("job-failed")
    tab.close()


def _map_pixels(page: Any) -> np.ndarray:
    """The map's pixels without the country outlines: what the data alone draws."""
    page.wait_for_selector(".leaflet-tile-loaded, path.leaflet-interactive", timeout=20_000)
    page.wait_for_load_state("networkidle", timeout=20_000)
    page.wait_for_selector(".leaflet-basemap-pane path", state="attached")  # background drawn
    page.evaluate("document.querySelector('.leaflet-basemap-pane').style.display = 'none'")
    try:
        return pixels(page.locator("#map").screenshot())
    finally:
        page.evaluate("document.querySelector('.leaflet-basemap-pane').style.display = ''")


def test_item_pages_draw_the_data(browser: Any, site: Site) -> None:
    tab = Tab(browser, site, site.admin)
    page = tab.go("/ui/items/system-rasters/lc")
    colours = {tuple(p) for p in _map_pixels(page)[::5]}
    assert len(colours) > 10, f"the raster map shows {len(colours)} colours: no tiles drawn"
    expect(page.locator("#meta")).to_contain_text("EPSG:4326")
    expect(page.locator("#meta")).to_contain_text("public")
    expect(page.locator("#fields tbody tr")).to_have_count(1)  # one band, with statistics
    expect(page.locator("#downloads a").first).to_be_attached()
    expect(page.locator("#urls input").nth(3)).to_be_attached()
    tab.shot("item-raster")

    page = tab.go("/ui/items/system-vectors/lux")
    colours = {tuple(p) for p in _map_pixels(page)[::5]}
    assert len(colours) > 5, "the vector map is uniform: no features drawn"
    expect(page.locator("path.leaflet-interactive")).to_have_count(12)
    expect(page.locator("#downloads")).to_contain_text("GeoParquet")
    expect(page.locator("#fields")).to_contain_text("name_2")
    tab.shot("item-vector")
    tab.close()


def test_catalog_search_by_a_drawn_box(browser: Any, site: Site) -> None:
    tab = Tab(browser, site, site.admin)
    page = tab.go("/ui/catalog")
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 2")
    # Drag a box around Luxembourg (Puerto Rico's raster stays outside).
    page.get_by_role("button", name="Draw box").click()
    x0, y0, x1, y1 = page.evaluate(
        """() => { const m = geoetl.catalogMap;
          const a = m.latLngToContainerPoint([51.5, 3.5]), b = m.latLngToContainerPoint([48, 8.5]);
          return [a.x, a.y, b.x, b.y]; }"""
    )
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2, steps=4)
    page.mouse.move(box["x"] + x1, box["y"] + y1, steps=4)
    page.mouse.up()
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 1")
    assert page.locator("#results tbody tr").get_attribute("data-item") == "system-vectors/lux"
    drawn = page.get_by_label("Bounding box").input_value()
    west, south, east, north = map(float, drawn.split(","))
    assert west < 5.8 < 6.5 < east
    assert south < 49.5 < 50.1 < north
    tab.shot("catalog-bbox")
    # Text and property filters.
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 2")
    page.get_by_label("Property filter").fill("\"geoetl:raster_type\" = 'categorical'")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 1")
    assert page.locator("#results tbody tr").get_attribute("data-item") == "system-rasters/lc"
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Text (item id contains)").fill("lu")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function(
        "document.querySelector('#results tbody tr')?.dataset.item === 'system-vectors/lux'"
        " && document.querySelectorAll('#results tbody tr').length === 1"
    )
    tab.close()


def test_a_reader_sees_no_write_buttons_and_the_api_refuses_its_writes(
    browser: Any, site: Site
) -> None:
    tab = Tab(browser, site, site.reader)
    page = tab.go("/ui/jobs")
    page.wait_for_function("document.querySelectorAll('#jobs-table tbody tr').length >= 3")
    expect(page.locator("#whoami")).to_contain_text("reader-ui (reader)")
    assert not page.get_by_role("link", name="Upload").is_visible()
    expect(page.locator("#jobs-table button")).to_have_count(0)
    page = tab.go(f"/ui/jobs/{site.jobs['process_vector']}")
    page.wait_for_selector("#stages li")
    for name in ("Cancel", "Resubmit", "Approve", "Reject"):
        assert not page.get_by_role("button", name=name).is_visible(), name
    page = tab.go("/ui/upload")
    page.wait_for_selector("text=Uploading needs a publisher token")
    assert not page.locator("#upload-form").is_visible()
    tab.close()
    auth = {"Authorization": f"Bearer {site.reader}"}
    job = site.jobs["process_vector"]
    assert httpx.post(f"{site.base}/jobs/{job}/resubmit", headers=auth).status_code == 403
    refused = httpx.post(f"{site.base}/ingest?filename=x.tif", content=b"x", headers=auth)
    assert refused.status_code == 403


def test_every_page_at_phone_width(browser: Any, site: Site) -> None:
    tab = Tab(browser, site, site.admin, width=375)
    job = site.jobs["process_raster"]
    for name, path, ready in [
        ("home", "/ui", "main"),
        ("upload", "/ui/upload", "#upload-form[data-ready]:not([hidden])"),
        ("jobs", "/ui/jobs", "#jobs-table tbody tr"),
        ("job", f"/ui/jobs/{job}", "#stages li"),
        ("catalog", "/ui/catalog", "#results tbody tr"),
        ("item", "/ui/items/system-rasters/lc", ".leaflet-tile-loaded"),
    ]:
        page = tab.go(path)
        page.wait_for_selector(ready)
        tab.shot(f"phone-{name}")
        unnamed = page.evaluate(UNNAMED_CONTROLS)
        assert unnamed == [], f"{path}: controls without an accessible name"
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 376, f"{path} is {overflow} px wide on a 375 px phone"
        assert page.locator("nav[aria-label=Main]").is_visible()
        assert page.title().endswith("geoetl console")
    tab.close()
    # The laptop-width home page too, and the keyboard: the first Tab reaches the skip
    # link, and signing in needs no mouse.
    tab = Tab(browser, site, None)
    page = tab.go("/ui")
    tab.shot("home")
    page = tab.go("/ui/signin")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    page.focus("#token")
    page.keyboard.type(site.reader)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/jobs")
    expect(page.locator("#whoami")).to_contain_text("(reader)")
    tab.close()


def test_an_admin_approves_a_job_awaiting_approval(browser: Any, site: Site) -> None:
    # Runs late: it publishes a third item (ouo), into a collection that needs approval.
    tab = Tab(browser, site, site.publisher)
    page = tab.go("/ui/upload")
    page.wait_for_selector("#upload-form[data-ready]:not([hidden])")
    page.get_by_label("Files to publish").set_input_files(str(DATA / "elev.tif"))
    page.get_by_label("Collection Id").fill("review")
    page.get_by_label("Access Level").select_option("ouo")
    page.get_by_role("button", name="Upload and publish").click()
    page.wait_for_url("**/ui/jobs/*")
    job_url = page.url
    expect(page.locator("#summary .status")).to_have_text("awaiting approval", timeout=60_000)
    # The publisher may cancel its job, not approve it.
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_be_hidden()
    tab.close()

    tab = Tab(browser, site, site.admin)
    page = tab.go(job_url.removeprefix(site.base))
    expect(page.get_by_role("button", name="Approve")).to_be_visible()
    expect(page.get_by_role("button", name="Reject")).to_be_visible()
    tab.shot("job-awaiting-approval")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#summary .status")).to_have_text("succeeded", timeout=60_000)
    expect(page.get_by_role("link", name="Item page: review/elev")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_be_hidden()
    tab.close()


def test_pages_show_only_what_the_caller_may_see(browser: Any, site: Site) -> None:
    # review/elev is ouo: an admin sees it, anonymous callers (public clearance) do not.
    tab = Tab(browser, site, site.admin)
    page = tab.go("/ui/catalog")
    expect(page.locator("#results tbody tr")).to_have_count(3)
    expect(page.locator("#results tr[data-item='review/elev']")).to_have_count(1)
    tab.close()

    tab = Tab(browser, site, None, expect_404="/stac/collections/review/items/elev")
    page = tab.go("/ui/catalog")
    expect(page.locator("#results tbody tr")).to_have_count(2)
    expect(page.locator("#results tr[data-item='review/elev']")).to_have_count(0)
    expect(page.locator("#whoami")).to_have_text("Sign in")
    page = tab.go("/ui/jobs")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(3)  # lc, lux, broken.tif
    expect(page.locator("#jobs-table button")).to_have_count(0)
    expect(page.get_by_role("link", name="Upload")).to_be_hidden()
    page = tab.go("/ui/items/review/elev")
    expect(page.locator("#item-error")).to_contain_text("not one you may see")
    tab.close()
