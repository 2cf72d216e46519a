"""Hostile raster uploads: VRTs, disguised references, network paths, CRS strings that read files.

Each attack file is real: a control open with plain rasterio shows what GDAL would have
done with it; geoetl refuses it with an InputError that says what is wrong.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.transform import from_origin

from geoetl import gdalsafe
from geoetl.engine.models import JobStatus
from geoetl.errors import InputError
from geoetl.ingest import detect_kind
from geoetl.platform import Platform
from geoetl.raster.cog import write_cog
from geoetl.raster.inspect import inspect_raster
from geoetl.raster.profiles import cog_profile
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner
from tests.vector.loopback import Loopback, loopback

DATA = Path(__file__).parents[2] / "examples" / "data"
VRT_REFUSED = (
    "is a GDAL VRT file, which can read other files and URLs; geoetl does not accept VRT "
    "input — upload the raster it points to"
)


@pytest.fixture
def listener() -> Iterator[Loopback]:
    with loopback() as server:
        yield server


def raw_vrt(target: str, *, size: int = 16) -> str:
    """A VRT whose only band is the raw bytes of ``target`` (any file, not only rasters)."""
    return f"""<VRTDataset rasterXSize="{size}" rasterYSize="{size}">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>0, 1, 0, {size}, 0, -1</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">
    <SourceFilename relativeToVRT="0">{target}</SourceFilename>
    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{size}</LineOffset>
  </VRTRasterBand>
</VRTDataset>
"""


def simple_vrt(source: str) -> str:
    """A VRT that republishes another raster (another bronze COG, a URL, …)."""
    with rasterio.open(DATA / "elev.tif") as ds:
        width, height, gt = ds.width, ds.height, ds.transform.to_gdal()
    return f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>{", ".join(map(str, gt))}</GeoTransform>
  <VRTRasterBand dataType="Int16" band="1">
    <SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>
      <SourceBand>1</SourceBand></SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


def write_raster(path: Path, crs: str | None = "EPSG:4326") -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=32,
        height=32,
        count=1,
        dtype="float32",
        crs=crs,
        transform=from_origin(10, 50, 0.01, 0.01),
    ) as ds:
        ds.write(np.ones((1, 32, 32), dtype="float32"))
    return path


# Disguises: the content decides, not the name; GDAL finds the root element after a
# BOM, whitespace, an XML declaration or comments.
DISGUISES = [
    ("passwd.vrt", ""),
    ("passwd.tif", ""),
    ("passwd.png", ""),
    ("passwd.csv", ""),
    ("passwd.tif", "\ufeff  \n"),
    ("passwd.tif", '<?xml version="1.0"?>\n<!-- a map -->\n'),
]


@pytest.mark.parametrize(("name", "prefix"), DISGUISES)
def test_vrt_reading_etc_passwd_is_refused_by_validate_and_detect_kind(
    tmp_path: Path, name: str, prefix: str
) -> None:
    path = tmp_path / name
    path.write_text(prefix + raw_vrt("/etc/passwd"), encoding="utf-8")
    with rasterio.open(path) as control:  # what GDAL alone does with it
        assert "/etc/passwd" in control.files
        assert bytes(control.read(1)[0][:5]) == Path("/etc/passwd").read_bytes()[:5]
    with pytest.raises(InputError) as refused:
        inspect_raster(str(path), name)
    assert str(refused.value) == f"{name} {VRT_REFUSED}"
    with pytest.raises(InputError, match="is a GDAL VRT file"):
        detect_kind(name, str(path))


def test_utf16_vrt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.tif"
    path.write_bytes(codecs.BOM_UTF16_LE + raw_vrt("/etc/passwd").encode("utf-16-le"))
    with pytest.raises(InputError, match="is a GDAL VRT file"):
        inspect_raster(str(path), "wide.tif")


def test_vrt_republishing_another_bronze_cog_is_refused_by_the_cog_writer(
    tmp_path: Path,
) -> None:
    other = tmp_path / "bronze" / "a" / "secret.tif"
    other.parent.mkdir(parents=True)
    write_raster(other)
    mine = tmp_path / "bronze" / "b" / "mine.tif"
    mine.parent.mkdir(parents=True)
    mine.write_text(simple_vrt(str(other)))
    info = inspect_raster(str(other), "secret.tif")  # what validate learned from a real file
    with pytest.raises(InputError, match=re.escape(VRT_REFUSED)):
        write_cog(
            str(mine),
            tmp_path / "out.tif",
            info,
            cog_profile("dem", "analysis", "float32", 85),
            None,
            tmp_path / "scratch",
        )
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize(
    ("marker", "what"),
    [
        ("<GDAL_WMS><Service name='TMS'><ServerUrl>{url}</ServerUrl></Service></GDAL_WMS>", "WMS"),
        ("<GDALTileIndexDataset><IndexDataset>{url}</IndexDataset></GDALTileIndexDataset>", "GTI"),
    ],
)
def test_service_descriptions_are_refused_without_a_connection(
    tmp_path: Path, listener: Loopback, marker: str, what: str
) -> None:
    path = tmp_path / "tiles.tif"
    path.write_text(marker.format(url=listener.url()))
    with pytest.raises(InputError, match=what):
        inspect_raster(str(path), "tiles.tif")
    with pytest.raises(InputError, match=what):
        detect_kind("tiles.tif", str(path))
    assert listener.connections() == 0


def test_vsicurl_vrt_never_reaches_the_network(tmp_path: Path, listener: Loopback) -> None:
    path = tmp_path / "remote.tif"
    path.write_text(simple_vrt(f"/vsicurl/{listener.url()}"))
    with pytest.raises(InputError, match=re.escape(VRT_REFUSED)):
        inspect_raster(str(path), "remote.tif")
    with pytest.raises(InputError, match=re.escape(VRT_REFUSED)):
        detect_kind("remote.dat", str(path))
    assert listener.connections() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/vsicurl/{url}",
        "{url}",
        "vrt://{tmp}/elev.tif",
        "PG:host=127.0.0.1 dbname=geoetl",
        "GPKG:{tmp}/x.gpkg:tiles",
        "/vsizip/{tmp}/x.zip/elev.tif",
    ],
)
def test_network_and_driver_prefixed_paths_are_refused(
    tmp_path: Path, listener: Loopback, path: str
) -> None:
    given = path.format(url=listener.url(), tmp=tmp_path)
    with pytest.raises(InputError, match="network path, URL or GDAL connection string"):
        inspect_raster(given, "x.tif")
    with pytest.raises(InputError, match="network path, URL or GDAL connection string"):
        detect_kind("x.dat", given)
    assert listener.connections() == 0


def test_the_gdal_configuration_blocks_network_reads(listener: Loopback) -> None:
    # Control: the listener sees GDAL when nothing stops it.
    with pytest.raises(RasterioIOError):
        rasterio.open(f"/vsicurl/{listener.url()}")
    seen = listener.connections()
    assert seen > 0
    # Inside geoetl's configuration neither /vsicurl/ nor plain HTTP reaches it, even for
    # a path that got past the checks.
    with gdalsafe.safe_gdal(vector=False):
        with pytest.raises(RasterioIOError):
            rasterio.open(f"/vsicurl/{listener.url()}")
        with pytest.raises(RasterioIOError):
            rasterio.open(f"/vsis3/bucket/{listener.url()}")
    assert listener.connections() == seen
    from rasterio.env import getenv, hasenv

    assert not hasenv() or "CPL_VSIL_CURL_ALLOWED_FILENAME" not in getenv()


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "bronze" / "f"
    folder.mkdir(parents=True)
    (folder / "elev.tif").symlink_to(DATA / "elev.tif")
    with pytest.raises(InputError, match="outside its own folder"):
        inspect_raster(str(folder / "elev.tif"), "elev.tif")


def test_files_gdal_touches_must_stay_in_the_folder(tmp_path: Path) -> None:
    source = gdalsafe.user_file(write_raster(tmp_path / "a.tif"))
    gdalsafe.check_files([str(tmp_path / "a.tif"), str(tmp_path / "a.tif.aux.xml")], source)
    for outside in ("/etc/passwd", str(tmp_path.parent / "other.tif"), "/vsicurl/http://x/y"):
        with pytest.raises(InputError, match="outside its own folder"):
            gdalsafe.check_files([str(tmp_path / "a.tif"), outside], source)
    # A remote store's platform-made path: only its own folder, and only it over the network.
    remote = gdalsafe.UserFile("/vsis3/b/bronze/f/a.tif", "/vsis3/b/bronze/f", "a.tif", True)
    gdalsafe.check_files(["/vsis3/b/bronze/f/a.tif", "/vsis3/b/bronze/f/a.tif.ovr"], remote)
    for outside in ("/vsis3/b/bronze/g/x.tif", "/vsis3/b/bronze/f2/x.tif", "/etc/passwd"):
        with pytest.raises(InputError, match="outside its own folder"):
            gdalsafe.check_files([outside], remote)
    options = gdalsafe.gdal_options(remote.path)
    assert options["CPL_VSIL_CURL_ALLOWED_FILENAME"] == remote.path
    assert gdalsafe.gdal_options()["CPL_VSIL_CURL_ALLOWED_FILENAME"] == "/geoetl-no-network/"


def test_a_format_off_the_allow_list_is_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "image.pgm"  # PNM: a fine format, but not one geoetl accepts
    with rasterio.open(path, "w", driver="PNM", width=8, height=8, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 8, 8), dtype="uint8"))
    with rasterio.open(path) as control:
        assert control.driver == "PNM"
    with pytest.raises(InputError, match="raster format geoetl accepts"):
        inspect_raster(str(path), "image.pgm")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("+init=epsg:4326", "input_crs uses +init=, which makes PROJ read init files"),
        ("+proj=longlat +nadgrids=/etc/passwd", "input_crs parameter +nadgrids names a file"),
        ("/etc/passwd", "input_crs '/etc/passwd' looks like a file path"),
        ("{url}", "is a URL; geoetl does not fetch CRS definitions"),
    ],
)
def test_crs_strings_that_read_files_or_urls_are_refused(
    tmp_path: Path, listener: Loopback, value: str, message: str
) -> None:
    src = write_raster(tmp_path / "nocrs.tif", crs=None)
    given = value.format(url=listener.url("/crs"))
    with pytest.raises(InputError, match=re.escape(message)):
        inspect_raster(str(src), "nocrs.tif", input_crs=given)
    info = inspect_raster(str(src), "nocrs.tif", input_crs="EPSG:4326")
    with pytest.raises(InputError, match=re.escape(message.replace("input_crs", "target_crs"))):
        write_cog(
            str(src),
            tmp_path / "out.tif",
            info,
            cog_profile("dem", "analysis", "float32", 85),
            given,
            tmp_path / "scratch",
        )
    assert listener.connections() == 0


def test_usual_crs_strings_still_work(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "nocrs.tif", crs=None)
    for value in ("EPSG:4326", "epsg:4326", "OGC:CRS84", "+proj=longlat +datum=WGS84 +no_defs"):
        assert inspect_raster(str(src), "nocrs.tif", input_crs=value).crs_from_input
    info = inspect_raster(str(src), "nocrs.tif", input_crs="EPSG:4326")
    out = tmp_path / "out.tif"
    write_cog(
        str(src), out, info, cog_profile("dem", "analysis", "float32", 85), "EPSG:3857", tmp_path
    )
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857


@pytest.mark.parametrize("name", ["elev.tif", "lc.tif", "L7_ETMs.tif", "olinda_dem_utm25s.tif"])
def test_samples_still_open(name: str) -> None:
    assert detect_kind(name, str(DATA / name)) == "raster"
    assert inspect_raster(str(DATA / name), name).width > 0


# --- the workflow --------------------------------------------------------------------------


def put(platform: Platform, path: Path) -> str:
    key = f"bronze/{sha256_file(path)}/{path.name}"
    platform.objects.put_file(path, key)
    return key


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    job_id, _ = platform.store.submit("process_raster", params)
    runner = make_runner(platform, "hostile-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def published(platform: Platform) -> list[str]:
    return platform.objects.list("silver")


def test_process_raster_refuses_a_vrt_disguised_as_tif(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "innocent.tif"
    path.write_text(raw_vrt("/etc/passwd"))
    job_id, status = run(platform, {"source": put(platform, path), "access_level": "public"})
    error = platform.queries.job(job_id).error
    assert status == JobStatus.failed
    assert error is not None
    assert error.stage == "validate"
    assert error.message == f"innocent.tif {VRT_REFUSED}"
    assert published(platform) == []


def test_process_raster_refuses_keys_outside_a_bronze_folder(
    platform: Platform, tmp_path: Path
) -> None:
    src = write_raster(tmp_path / "a.tif")
    key = "bronze/x/nested/a.tif"
    platform.objects.put_file(src, key)
    job_id, status = run(platform, {"source": key})
    assert status == JobStatus.failed
    assert "must be a file directly inside its bronze folder" in (
        platform.queries.job(job_id).error.message  # type: ignore[union-attr]
    )


def test_process_raster_refuses_init_target_crs(platform: Platform) -> None:
    job_id, status = run(
        platform, {"source": put(platform, DATA / "elev.tif"), "target_crs": "+init=epsg:3857"}
    )
    error = platform.queries.job(job_id).error
    assert status == JobStatus.failed
    assert error is not None
    assert error.stage == "validate"
    assert "target_crs uses +init=" in error.message
    assert published(platform) == []


def test_process_raster_still_publishes_samples(platform: Platform) -> None:
    job_id, status = run(platform, {"source": put(platform, DATA / "elev.tif")})
    assert status == JobStatus.succeeded, platform.queries.job(job_id).error
    assert platform.queries.job(job_id).result["cog"].endswith("/elev_analysis.tif")
