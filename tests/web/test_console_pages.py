"""The web console's pages without a browser: every page answers HTML that loads
nothing from another host, and the landing page links to it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from geoetl.api.app import create_app
from geoetl.settings import Settings

PAGES = [
    "/ui",
    "/ui/signin",
    "/ui/upload",
    "/ui/jobs",
    "/ui/jobs/0123456789abcdef",
    "/ui/catalog",
    "/ui/items/system-rasters/lc",
]
# Every URL a page loads or links a style from: script src, link href, img src.
ASSET = re.compile(r"<(script|link|img|iframe)\b[^>]*?\b(src|href)=\"([^\"]*)\"", re.I)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_loading_only_this_server(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert re.search(r"<title>[^<]+</title>", html)
    assert '<meta name="viewport"' in html
    assert "<nav" in html
    assert '<main id="main">' in html
    assets = [m.group(3) for m in ASSET.finditer(html)]
    assert assets, "the page loads its styles and scripts"
    for url in assets:
        if re.match(r"(?i)^(https?:)?//", url):
            assert url.startswith("http://testserver/"), f"{path} loads {url} from elsewhere"
    # Every form control has a label.
    for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
        if 'type="hidden"' in control:
            continue
        found = re.search(r'\bid="([^"]+)"', control)
        assert found, f"{path}: control without id: {control}"
        assert f'for="{found.group(1)}"' in html or "aria-label=" in control, control


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_static_scripts_reference_no_external_url(client: TestClient) -> None:
    scripts = ("console.js", "signin.js", "jobs.js", "job.js", "upload.js", "catalog.js", "item.js")
    for name in scripts:
        r = client.get(f"/static/ui/{name}")
        assert r.status_code == 200, name
        assert not re.search(r"https?://(?!127\.0\.0\.1)", r.text), name


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_landing_page_links_the_console(client: TestClient) -> None:
    page = client.get("/", headers={"Accept": "text/html"}).text
    assert 'href="http://testserver/ui"' in page
    links = client.get("/").json()["links"]
    assert {"rel": "console", "href": "http://testserver/ui", "type": "text/html"} in links


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_pages_render_no_data_server_side(client: TestClient) -> None:
    # The pages are shells: what a caller may see is fetched by the scripts with its
    # token, so a page never holds data above the public level.
    html = client.get("/ui/jobs/abc").text
    assert '"job_id": "abc"' in html


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_ids_from_the_url_are_escaped(client: TestClient) -> None:
    hostile = "%3C%2Fscript%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    for path in (f"/ui/items/{hostile}/x", f"/ui/items/c/{hostile}", f"/ui/jobs/{hostile}"):
        html = client.get(path).text
        assert "<script>alert(1)" not in html
        assert html.count("<script") == html.count("</script>")
