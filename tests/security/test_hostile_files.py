"""Hostile uploads: files that make GDAL read elsewhere, fetch URLs, or blow up.

A refused file either answers 400 at upload, or its job fails with an input error; in
both cases nothing is published, no file outside the source's folder is opened (a FIFO
tripwire outside the home records any open), and no loopback listener the test starts
is contacted. Archives that expand too much or hold too many members, CSVs with
thousands of columns and SQL in index column names are refused with a clear message.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.conftest import (
    DATA,
    Api,
    FifoTripwire,
    Harness,
    LoopbackListener,
    assert_alive,
    geojson_bytes,
    nothing_published,
    uniq,
)


def gdal_vrt(source: str, relative: bool = False) -> bytes:
    """A GDAL raster VRT whose only band reads ``source``."""
    return f"""<VRTDataset rasterXSize="32" rasterYSize="32">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>10, 0.01, 0, 10, 0, -0.01</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
""".encode()


def ogr_vrt(source: str, layer: str | None = None, x: str = "lon", y: str = "lat") -> bytes:
    """An OGR VRT layer over ``source`` (points from two columns)."""
    src_layer = f"<SrcLayer>{layer}</SrcLayer>" if layer else ""
    return f"""<OGRVRTDataSource>
  <OGRVRTLayer name="stolen">
    <SrcDataSource>{source}</SrcDataSource>{src_layer}
    <GeometryType>wkbPoint</GeometryType>
    <LayerSRS>EPSG:4326</LayerSRS>
    <GeometryField encoding="PointFromColumns" x="{x}" y="{y}"/>
  </OGRVRTLayer>
</OGRVRTDataSource>
""".encode()


def gdal_wms(url: str) -> bytes:
    """A GDAL WMS/TMS service description that fetches tiles from ``url``."""
    return f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{url}/${{z}}/${{x}}/${{y}}.png</ServerUrl></Service>
  <DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34</UpperLeftY>
    <LowerRightX>20037508.34</LowerRightX><LowerRightY>-20037508.34</LowerRightY>
    <TileLevel>1</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin></DataWindow>
  <Projection>EPSG:3857</Projection><BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY>
  <BandsCount>3</BandsCount><Cache/>
</GDAL_WMS>
""".encode()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def assert_refused(
    api: Api, response: httpx.Response, *, words: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """The upload was refused (400), or its job failed with an input error.

    ``words``: one of them must appear in the message (it says what was wrong).
    """
    if response.status_code == 400:
        message = response.json()["detail"]
        view = None
    else:
        assert response.status_code == 202, response.text
        view = api.wait(response.json()["job_id"])
        assert view["status"] == "failed", f"a hostile file was published: {view['result']}"
        assert view["error"]["kind"] == "input_error", view["error"]
        message = view["error"]["message"]
        for word in ("Traceback", 'File "/'):
            assert word not in message, message
    if words:
        assert any(w in message.lower() for w in words), message
    return view


@pytest.fixture
def csv_tripwire(harness: Harness) -> Any:
    """A FIFO tripwire named like a CSV file."""
    wire = FifoTripwire(harness.outside / uniq("csv") / "secret.csv")
    yield wire
    wire.close()


# -- GDAL VRT ---------------------------------------------------------------------------

VRT_CASES = {
    # name: (upload file name, what the VRT points at)
    "as-tif-absolute-outside": ("{u}.tif", "tripwire"),
    "as-vrt-absolute-outside": ("{u}.vrt", "tripwire"),
    "as-csv-absolute-outside": ("{u}.csv", "tripwire"),
    "as-gpkg-absolute-outside": ("{u}.gpkg", "tripwire"),
    "as-tif-restricted-cog-absolute": ("{u}.tif", "cog"),
    "as-tif-restricted-cog-relative": ("{u}.tif", "cog-relative"),
    "as-tif-platform-database": ("{u}.tif", "database"),
}


@pytest.mark.parametrize("case", sorted(VRT_CASES))
def test_gdal_vrt_uploads_are_refused(
    harness: Harness, tokens: dict[str, str], tripwire: FifoTripwire, case: str
) -> None:
    name, target = VRT_CASES[case]
    cog = harness.seeds["olinda_restricted"].result["cog"]
    body = {
        "tripwire": gdal_vrt(str(tripwire.path)),
        "cog": gdal_vrt(str(harness.home / "storage" / cog)),
        # From bronze/{sha}/ up to storage/ and into silver.
        "cog-relative": gdal_vrt(f"../../{cog}", relative=True),
        "database": gdal_vrt(str(harness.home / "geoetl.db")),
    }[target]
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        response = api.upload(name.format(u=uniq("vrt")), body, access_level="public")
        assert_refused(api, response)
    assert tripwire.opened == 0, "a file outside the source's folder was opened"
    assert_alive(harness.ouo)


# -- OGR VRT ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["{u}.vrt", "{u}.csv", "{u}.gpkg", "{u}.geojson", "zip"])
def test_ogr_vrt_uploads_are_refused(
    harness: Harness, tokens: dict[str, str], csv_tripwire: FifoTripwire, name: str
) -> None:
    body = ogr_vrt(str(csv_tripwire.path))
    filename = name.format(u=uniq("ogrvrt"))
    if name == "zip":
        body, filename = zipped({"data.vrt": body}), f"{uniq('ogrvrt')}.zip"
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        assert_refused(api, api.upload(filename, body, access_level="public"))
    assert csv_tripwire.opened == 0, "a file outside the source's folder was opened"
    assert_alive(harness.ouo)


def test_ogr_vrt_over_the_platform_database_is_refused(
    harness: Harness, tokens: dict[str, str]
) -> None:
    # Would publish the token table (names, hashes) as points if VRTs were followed.
    body = ogr_vrt(str(harness.home / "geoetl.db"), "api_tokens", "created_at", "created_at")
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        response = api.upload(f"{uniq('tokens')}.vrt", body, access_level="public")
        assert_refused(api, response)
    listed = api.get("/collections").text
    assert "token_hash" not in listed
    assert_alive(harness.ouo)


# -- SSRF -------------------------------------------------------------------------------

SSRF_CASES = {
    "gdal-vrt-vsicurl-as-tif": ("{u}.tif", lambda url: gdal_vrt(f"/vsicurl/{url}/x.tif")),
    "gdal-vrt-vsicurl-as-vrt": ("{u}.vrt", lambda url: gdal_vrt(f"/vsicurl/{url}/x.tif")),
    "gdal-vrt-plain-url": ("{u}.tif", lambda url: gdal_vrt(f"{url}/x.tif")),
    "gdal-wms-as-tif": ("{u}.tif", gdal_wms),
    "gdal-wms-as-xml": ("{u}.xml", gdal_wms),
    "ogr-vrt-vsicurl-as-csv": ("{u}.csv", lambda url: ogr_vrt(f"/vsicurl/{url}/x.csv")),
    "ogr-vrt-vsicurl-in-zip": (
        "{u}.zip",
        lambda url: zipped({"data.vrt": ogr_vrt(f"/vsicurl/{url}/x.csv")}),
    ),
    "geojson-url-as-geojson": ("{u}.geojson", lambda url: f"{url}/x.geojson".encode()),
}


@pytest.mark.parametrize("case", sorted(SSRF_CASES))
def test_uploads_never_reach_a_loopback_listener(
    harness: Harness, tokens: dict[str, str], listener: LoopbackListener, case: str
) -> None:
    name, make = SSRF_CASES[case]
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        response = api.upload(
            name.format(u=uniq("ssrf")), make(listener.url), access_level="public"
        )
        assert_refused(api, response)
    assert not listener.hits, f"the server connected to {listener.url}: {listener.hits}"
    assert_alive(harness.ouo)


@pytest.mark.parametrize("param", ["target_crs", "input_crs"])
def test_crs_options_naming_files_or_urls_read_nothing(
    harness: Harness,
    tokens: dict[str, str],
    tripwire: FifoTripwire,
    listener: LoopbackListener,
    param: str,
) -> None:
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    for value in (str(tripwire.path), f"/vsicurl/{listener.url}/crs.wkt", f"{listener.url}/crs"):
        response = api.upload(
            f"{uniq('crs')}.tif",
            (DATA / "elev.tif").read_bytes(),
            access_level="public",
            collection_id="sec-crs",
            item_id=uniq("crs"),
            **{param: value},
        )
        if response.status_code == 202:
            view = api.wait(response.json()["job_id"])
            if param == "target_crs":  # input_crs is unused for a file that has a CRS
                assert view["status"] == "failed", view
        else:
            assert response.status_code in (400, 422), response.text
    assert tripwire.opened == 0, "a CRS option opened a file outside the home"
    assert not listener.hits, listener.hits
    assert_alive(harness.ouo)


# -- archives ---------------------------------------------------------------------------


def test_zip_bomb_is_refused(harness: Harness, tokens: dict[str, str]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("bomb.csv", b"lon,lat\n" + b"0" * 40_000_000)
    body = buffer.getvalue()
    assert len(body) * 200 < 40_000_000
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        assert_refused(
            api,
            api.upload(f"{uniq('bomb')}.zip", body, access_level="public"),
            words=("bomb", "expand", "ratio", "compress"),
        )
    assert not list((harness.home / "scratch").rglob("bomb.csv"))
    assert_alive(harness.ouo)


def test_zip_with_too_many_members_is_refused(harness: Harness, tokens: dict[str, str]) -> None:
    members = {f"f/{i:05d}.txt": b"x" for i in range(10_050)}
    members["points.geojson"] = geojson_bytes()
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        assert_refused(
            api,
            api.upload(f"{uniq('many')}.zip", zipped(members), access_level="public"),
            words=("files", "members", "entries"),
        )
    assert_alive(harness.ouo)


@pytest.mark.parametrize("member", ["../../../../../outside/{u}.geojson", "/tmp/{u}.geojson"])
def test_zip_slip_is_refused(harness: Harness, tokens: dict[str, str], member: str) -> None:
    marker = uniq("slip")
    body = zipped({member.format(u=marker): geojson_bytes()})
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        assert_refused(api, api.upload(f"{marker}.zip", body, access_level="public"))
    assert not list(harness.root.rglob(f"{marker}.geojson"))
    assert not Path(f"/tmp/{marker}.geojson").exists()
    assert_alive(harness.ouo)


# -- wide and injected ------------------------------------------------------------------


def test_csv_with_thousands_of_columns_is_refused(harness: Harness, tokens: dict[str, str]) -> None:
    names = ["lon", "lat", *[f"c{i}" for i in range(5_000)]]
    rows = [",".join(names), ",".join(["10.5", "20.5", *["1"] * 5_000])]
    body = ("\n".join(rows) + "\n").encode()
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    with nothing_published(harness.home):
        assert_refused(
            api,
            api.upload(
                f"{uniq('wide')}.csv", body, csv_lon="lon", csv_lat="lat", access_level="public"
            ),
            words=("column",),
        )
    assert_alive(harness.ouo)


INJECTIONS = [
    'name"); DROP TABLE feature_collections; --',
    "name) WHERE 1=1; ATTACH DATABASE '/tmp/sec.db' AS x; --",
    'name" ON "x',
    "n\x00ame",
]


@pytest.mark.parametrize("column", INJECTIONS, ids=range(len(INJECTIONS)))
def test_sql_in_index_column_names_is_refused(
    harness: Harness, tokens: dict[str, str], column: str
) -> None:
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    first = api.upload("points.geojson", geojson_bytes(), access_level="public")
    assert first.status_code == 202, first.text
    source = api.wait(first.json()["job_id"])["params"]["source"]
    with nothing_published(harness.home):
        response = api.post(
            "/jobs/process_vector",
            json={
                "source": source,
                "dataset_id": uniq("inject"),
                "index_columns": [column],
                "access_level": "public",
            },
        )
        if response.status_code == 202:
            assert_refused(api, response)
        else:
            assert response.status_code in (400, 422), response.text
    assert not Path("/tmp/sec.db").exists()
    # The feature registry is intact: the seeded collections still answer.
    for dataset in ("nc_public", "xss_public"):
        assert api.get(f"/collections/{dataset}/items").status_code == 200
    assert_alive(harness.ouo)


# -- malformed --------------------------------------------------------------------------

MALFORMED = {
    "random-bytes.tif": os.urandom(20_000),
    "tiff-header-then-junk.tif": b"II*\x00\x08\x00\x00\x00" + os.urandom(5_000),
    "truncated.tif": (DATA / "elev.tif").read_bytes()[:3_000],
    "random-bytes.gpkg": os.urandom(20_000),
    "truncated.gpkg": (DATA / "nc.gpkg").read_bytes()[:20_000],
    "broken.geojson": b'{"type": "FeatureCollection", "features": [{"type": "Feat',
    "header-only.csv": b"lon,lat\n",
    "not-a-zip.zip": b"PK\x03\x04" + os.urandom(1_000),
    "empty-zip.zip": zipped({}),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_fail_cleanly(harness: Harness, tokens: dict[str, str], name: str) -> None:
    api = harness.api("ouo", tokens["sec-pub-ouo"])
    extra = {"csv_lon": "lon", "csv_lat": "lat"} if name.endswith(".csv") else {}
    with nothing_published(harness.home):
        response = api.upload(
            f"{uniq('bad')}-{name}", MALFORMED[name], access_level="public", **extra
        )
        assert_refused(api, response)
    assert_alive(harness.ouo)
