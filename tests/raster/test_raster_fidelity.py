"""Raster fidelity (issue 14): sidecar files, local CRSs, STAC projection and footprint, types.

Every input is a real file made here with GDAL (through rasterio): world files, RRASTER
and EHdr pairs, rasters in zips, LOCAL_CS rasters, rotated grids, attribute tables.
"""

from __future__ import annotations

import itertools
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

from geoetl import gdalsafe
from geoetl.engine.models import JobStatus
from geoetl.errors import InputError
from geoetl.ingest import detect_kind, store_in_bronze
from geoetl.platform import Platform
from geoetl.raster.cog import write_cog
from geoetl.raster.inspect import (
    MAX_CATEGORIES,
    count_distinct,
    detect_type,
    inspect_raster,
    sample_windows,
)
from geoetl.raster.profiles import cog_profile
from geoetl.raster.source import VECTOR_SUFFIXES, find_sidecars, sidecar_names
from geoetl.raster.stac import build_item
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner

DATA = Path(__file__).parents[2] / "examples" / "data"
ORIGIN = (500000.0, 4000300.0)  # UTM 33N, in Italy
LOCAL_WKT = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'


def pixels(dtype: str = "uint16", shape: tuple[int, int] = (30, 40)) -> np.ndarray[Any, Any]:
    rows, cols = shape
    return (np.arange(rows * cols) % 4000).reshape(1, rows, cols).astype(dtype)


def plain_tif(path: Path, data: np.ndarray[Any, Any] | None = None) -> Path:
    """A GeoTIFF with neither geotransform nor CRS (a scan)."""
    data = pixels() if data is None else data
    _, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype=data.dtype
    ) as ds:
        ds.write(data)
    return path


def world_file(path: Path, px: float = 10.0) -> Path:
    # Centre of the top-left pixel, as world files give it.
    x, y = ORIGIN
    path.write_text(f"{px}\n0\n0\n{-px}\n{x + px / 2}\n{y - px / 2}\n")
    return path


def georeferenced(path: Path, driver: str, dtype: str = "float32", **options: Any) -> Path:
    data = pixels(dtype)
    with rasterio.open(
        path,
        "w",
        driver=driver,
        width=40,
        height=30,
        count=1,
        dtype=dtype,
        crs="EPSG:32633",
        transform=from_origin(*ORIGIN, 10, 10),
        **options,
    ) as ds:
        ds.write(data)
    return path


def make_zip(path: Path, members: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            if isinstance(content, Path):
                zf.write(content, name)
            else:
                zf.writestr(name, content)
    return path


def raw_vrt(target: str, size: int = 16) -> str:
    return f"""<VRTDataset rasterXSize="{size}" rasterYSize="{size}">
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">
    <SourceFilename relativeToVRT="0">{target}</SourceFilename>
    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{size}</LineOffset>
  </VRTRasterBand>
</VRTDataset>
"""


def run(platform: Platform, params: dict[str, Any]) -> tuple[str, JobStatus]:
    job_id, _ = platform.store.submit("process_raster", params)
    runner = make_runner(platform, "fidelity-test")
    try:
        return job_id, runner.run_job(job_id)
    finally:
        runner.close()


def error_of(platform: Platform, job_id: str) -> str:
    error = platform.queries.job(job_id).error
    assert error is not None
    return error.message


def cog_of(platform: Platform, job_id: str) -> Path:
    view = platform.queries.job(job_id)
    assert view.status == JobStatus.succeeded, view.error
    return Path(platform.objects.gdal_path(view.result["cog"]))


# --- item 5: sidecar files travel with their raster ------------------------------------------


def test_sidecar_names_follow_gdals_naming() -> None:
    tif = sidecar_names("Scan.TIF")
    assert {"scan.tfw", "scan.tifw", "scan.wld", "scan.tif.aux.xml", "scan.tif.ovr"} <= tif
    assert {"scan.tif.msk", "scan.prj", "scan.aux"} <= tif
    assert {"photo.jgw", "photo.jpgw", "photo.wld"} <= sidecar_names("photo.jpg")
    assert {"map.pgw", "map.pngw", "map.png.aux.xml"} <= sidecar_names("map.png")
    assert {"dem.gri", "dem.grd.aux.xml"} <= sidecar_names("dem.grd")
    assert {"e.hdr", "e.prj", "e.blw", "e.stx", "e.clr"} <= sidecar_names("e.bil")
    assert {"v.hdr", "v.dat.hdr"} <= sidecar_names("v.dat")
    assert "scan.tif" not in tif


def test_sidecars_are_found_next_to_the_file_in_any_case(tmp_path: Path) -> None:
    tif = plain_tif(tmp_path / "scan.tif")
    tfw = world_file(tmp_path / "SCAN.TFW")
    (tmp_path / "scan.tif.aux.xml").write_text("<PAMDataset/>")
    plain_tif(tmp_path / "other.tif")
    (tmp_path / "scanner.tfw").write_text("not ours")
    assert find_sidecars(tif) == sorted([tfw, tmp_path / "scan.tif.aux.xml"])


def test_a_geotiff_with_a_world_file_is_published(platform: Platform, tmp_path: Path) -> None:
    tif = plain_tif(tmp_path / "scan.tif")
    world_file(tmp_path / "scan.tfw")
    key = store_in_bronze(platform.objects, tif)
    folder = str(Path(key).parent)
    assert sorted(Path(k).name for k in platform.objects.list(folder)) == ["scan.tfw", "scan.tif"]
    params = {"source": key, "input_crs": "EPSG:32633", "target_crs": None}
    job_id, _ = run(platform, params)
    with rasterio.open(cog_of(platform, job_id)) as cog:
        assert cog.transform.almost_equals(from_origin(*ORIGIN, 10, 10))
        assert cog.crs == CRS.from_epsg(32633)
        assert np.array_equal(cog.read(), pixels())


def test_a_geotiff_without_its_world_file_says_which_file_to_add(
    platform: Platform, tmp_path: Path
) -> None:
    tif = plain_tif(tmp_path / "scan.tif")
    key = f"bronze/{sha256_file(tif)}/scan.tif"
    platform.objects.put_file(tif, key)
    job_id, status = run(platform, {"source": key, "input_crs": "EPSG:32633"})
    assert status == JobStatus.failed
    message = error_of(platform, job_id)
    assert "scan.tif has no georeferencing" in message
    assert "scan.tfw or scan.wld" in message
    assert platform.objects.list("silver") == []


def test_an_rraster_pair_is_published(platform: Platform, tmp_path: Path) -> None:
    grd = georeferenced(tmp_path / "dem.grd", "RRASTER")
    assert (tmp_path / "dem.gri").exists()
    assert detect_kind("dem.grd", str(grd)) == "raster"
    key = store_in_bronze(platform.objects, grd)
    job_id, _ = run(platform, {"source": key, "target_crs": None})
    with rasterio.open(cog_of(platform, job_id)) as cog:
        assert cog.crs == CRS.from_epsg(32633)
        assert np.array_equal(cog.read(), pixels("float32"))


def test_a_grd_without_its_gri_names_the_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "alone"
    folder.mkdir()
    grd = georeferenced(tmp_path / "dem.grd", "RRASTER")
    alone = folder / "dem.grd"
    alone.write_bytes(grd.read_bytes())
    with pytest.raises(InputError, match=r"dem\.grd cannot be read without dem\.gri"):
        inspect_raster(str(alone), "dem.grd")


@pytest.mark.parametrize(
    ("name", "driver", "options", "companions"),
    [
        ("e.bil", "EHdr", {}, {"e.hdr", "e.prj"}),
        ("v.dat", "ENVI", {}, {"v.hdr"}),
        ("p.png", "PNG", {"WORLDFILE": "YES"}, {"p.wld", "p.png.aux.xml"}),
    ],
)
def test_header_and_world_file_formats_keep_their_georeferencing(
    platform: Platform,
    tmp_path: Path,
    name: str,
    driver: str,
    options: dict[str, str],
    companions: set[str],
) -> None:
    dtype = "uint8" if driver == "PNG" else "int16"
    path = georeferenced(tmp_path / name, driver, dtype, **options)
    assert {p.name for p in find_sidecars(path)} >= companions
    key = store_in_bronze(platform.objects, path)
    job_id, _ = run(platform, {"source": key, "target_crs": None})
    with rasterio.open(cog_of(platform, job_id)) as cog:
        assert cog.crs == CRS.from_epsg(32633)
        assert cog.transform.almost_equals(from_origin(*ORIGIN, 10, 10))


def test_a_zip_with_a_raster_and_its_sidecars_is_a_raster_upload(
    platform: Platform, tmp_path: Path
) -> None:
    tif = plain_tif(tmp_path / "scan.tif")
    tfw = world_file(tmp_path / "scan.tfw")
    archive = make_zip(tmp_path / "scan.zip", {"data/scan.tif": tif, "data/scan.tfw": tfw})
    assert detect_kind("scan.zip", str(archive)) == "raster"
    key, _ = platform.objects.put_content_addressed(archive)
    job_id, _ = run(platform, {"source": key, "input_crs": "EPSG:32633", "target_crs": None})
    with rasterio.open(cog_of(platform, job_id)) as cog:
        assert cog.transform.almost_equals(from_origin(*ORIGIN, 10, 10))
    assert platform.queries.job(job_id).result["item_id"] == "scan"


def test_a_zip_with_only_a_geotiff_is_a_raster_upload(platform: Platform, tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "elev.zip", {"elev.tif": DATA / "elev.tif"})
    assert detect_kind("elev.zip", str(archive)) == "raster"
    key, _ = platform.objects.put_content_addressed(archive)
    job_id, _ = run(platform, {"source": key})
    assert cog_of(platform, job_id).name == "elev_analysis.tif"


def test_zips_with_vector_data_or_several_rasters(platform: Platform, tmp_path: Path) -> None:
    shapes = make_zip(tmp_path / "lux.zip", {f"lux{s}": DATA / f"lux{s}" for s in (".shp", ".dbf")})
    assert detect_kind("lux.zip", str(shapes)) == "vector"
    mixed = make_zip(tmp_path / "mixed.zip", {"a.tif": DATA / "elev.tif", "a.csv": b"x,y\n"})
    assert detect_kind("mixed.zip", str(mixed)) == "vector"
    two = make_zip(tmp_path / "two.zip", {"a.tif": DATA / "elev.tif", "b.tif": DATA / "lc.tif"})
    assert detect_kind("two.zip", str(two)) == "raster"
    key, _ = platform.objects.put_content_addressed(two)
    job_id, status = run(platform, {"source": key})
    assert status == JobStatus.failed
    assert "two.zip holds several rasters (a.tif, b.tif)" in error_of(platform, job_id)


def test_vector_suffixes_match_the_vector_pipeline() -> None:
    from geoetl.vector.read import DATASET_SUFFIXES

    assert set(DATASET_SUFFIXES) == set(VECTOR_SUFFIXES)


# --- hostile sidecars ----------------------------------------------------------------------


def test_a_vrt_disguised_as_overviews_is_refused(tmp_path: Path) -> None:
    tif = georeferenced(tmp_path / "x.tif", "GTiff", "uint8")
    ovr = tmp_path / "x.tif.ovr"
    ovr.write_text(raw_vrt("/etc/passwd"))
    with rasterio.open(tif) as control:  # GDAL alone opens it as the overview
        assert str(ovr) in control.files
    with pytest.raises(InputError, match=r"x\.tif\.ovr \(a sidecar file of x\.tif\) is a GDAL VRT"):
        gdalsafe.user_file(tif)
    with pytest.raises(InputError, match="is a GDAL VRT file"):
        detect_kind("x.tif", str(tif))
    with pytest.raises(InputError, match="is a GDAL VRT file"):
        inspect_raster(str(tif), "x.tif")


@pytest.mark.parametrize("suffix", [".tif.msk", ".tif.ovr", ".aux"])
def test_a_sidecar_gdal_opens_as_a_dataset_must_have_its_format(
    tmp_path: Path, suffix: str
) -> None:
    tif = georeferenced(tmp_path / "x.tif", "GTiff", "uint8")
    georeferenced(tmp_path / f"x{suffix}", "PNG", "uint8")  # a PNG under that name
    with pytest.raises(InputError, match="GDAL would open it as a dataset of its own"):
        inspect_raster(str(tif), "x.tif")


def test_a_sidecar_linking_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    tif = georeferenced(folder / "x.tif", "GTiff", "uint8")
    world_file(tmp_path / "x.tfw")
    os.symlink(tmp_path / "x.tfw", folder / "x.tfw")
    with pytest.raises(InputError, match=r"x\.tfw next to x\.tif is a link to a file outside"):
        gdalsafe.user_file(tif)


def test_a_zip_with_a_vrt_sidecar_publishes_nothing(platform: Platform, tmp_path: Path) -> None:
    tif = georeferenced(tmp_path / "x.tif", "GTiff", "uint8")
    archive = make_zip(
        tmp_path / "x.zip", {"x.tif": tif, "x.tif.msk": raw_vrt("/etc/passwd").encode()}
    )
    key, _ = platform.objects.put_content_addressed(archive)
    job_id, status = run(platform, {"source": key})
    assert status == JobStatus.failed
    assert "x.tif.msk (a sidecar file of x.tif in x.zip) is a GDAL VRT file" in error_of(
        platform, job_id
    )
    assert platform.objects.list("silver") == []


# --- item 6: input_crs overrides a local (engineering) CRS ---------------------------------


def local_cs_raster(path: Path) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=40,
        height=30,
        count=1,
        dtype="float32",
        crs=CRS.from_wkt(LOCAL_WKT),
        transform=from_origin(*ORIGIN, 10, 10),
    ) as ds:
        ds.write(pixels("float32"))
    return path


def test_a_local_crs_needs_input_crs_and_the_message_says_so(tmp_path: Path) -> None:
    path = local_cs_raster(tmp_path / "site.tif")
    with pytest.raises(InputError) as caught:
        inspect_raster(str(path), "site.tif")
    message = str(caught.value)
    assert "site.tif has a local (engineering) coordinate system ('site grid')" in message
    assert "pass input_crs (geoetl ingest --input-crs)" in message
    for dump in ("{", "$schema", "projjson", "LOCAL_CS[", "UNIT["):
        assert dump not in message


def test_input_crs_overrides_a_local_crs_with_a_warning(tmp_path: Path) -> None:
    path = local_cs_raster(tmp_path / "site.tif")
    info = inspect_raster(str(path), "site.tif", input_crs="EPSG:32633")
    assert (info.crs, info.crs_from_input) == ("EPSG:32633", True)
    assert info.warnings == [
        "input_crs EPSG:32633 used instead of the local (engineering) coordinate system "
        "'site grid' that site.tif declares"
    ]


def test_a_local_crs_raster_is_published_with_input_crs(platform: Platform, tmp_path: Path) -> None:
    path = local_cs_raster(tmp_path / "site.tif")
    key = store_in_bronze(platform.objects, path)
    failed, status = run(platform, {"source": key})
    assert status == JobStatus.failed
    assert "--input-crs" in error_of(platform, failed)
    job_id, _ = run(platform, {"source": key, "input_crs": "EPSG:32633"})
    result = platform.queries.job(job_id).result
    assert any("used instead of the local (engineering)" in w for w in result["warnings"])
    with rasterio.open(cog_of(platform, job_id)) as cog:
        assert cog.crs == CRS.from_epsg(4326)
        lon, lat = (cog.bounds.left + cog.bounds.right) / 2, cog.bounds.top
        assert 14.9 < lon < 15.1  # where UTM 33N puts these numbers
        assert 36.0 < lat < 36.2


def test_bounds_errors_name_the_crs_briefly(tmp_path: Path) -> None:
    path = georeferenced(tmp_path / "far.tif", "GTiff")  # UTM numbers
    sphere = "+proj=longlat +a=6000000 +b=6000000 +no_defs"  # a CRS without a code
    with rasterio.open(path, "r+") as ds:
        ds.crs = CRS.from_proj4(sphere)
    with pytest.raises(InputError) as caught:
        inspect_raster(str(path), "far.tif")
    message = str(caught.value)
    assert message.startswith("far.tif: bounds (500000.0, 4000000.0, 500400.0, 4000300.0)")
    assert "the CRS is probably wrong" in message
    for dump in ("{", "GEOGCS[", "GEOGCRS[", "+proj"):
        assert dump not in message


# --- item 8: STAC proj:wkt2 is WKT2, a rotated grid's footprint is rotated --------------------


def test_a_custom_crs_is_written_as_wkt2(tmp_path: Path) -> None:
    custom = "+proj=tmerc +lat_0=0 +lon_0=15.5 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m"
    src = tmp_path / "custom.tif"
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=40,
        height=30,
        count=1,
        dtype="float32",
        crs=CRS.from_proj4(custom),
        transform=from_origin(*ORIGIN, 10, 10),
    ) as ds:
        ds.write(pixels("float32"))
    info = inspect_raster(str(src), "custom.tif")
    cog = tmp_path / "cog.tif"
    write_cog(str(src), cog, info, cog_profile("dem", "analysis", "float32", 85), None, tmp_path)
    item = build_item(cog, item_id="c", collection_id="x", href="silver/c.tif", properties={})
    wkt2 = item["properties"]["proj:wkt2"]
    assert wkt2.startswith("PROJCRS[")
    assert "PROJCS[" not in wkt2
    assert ProjCRS.from_wkt(wkt2).equals(ProjCRS.from_proj4(custom), ignore_axis_order=True)
    assert "proj:code" not in item["properties"] or item["properties"]["proj:code"] is None


def test_a_rotated_rasters_geometry_is_its_footprint(tmp_path: Path) -> None:
    transform = Affine.translation(*ORIGIN) * Affine.rotation(30) * Affine.scale(10, -10)
    src = tmp_path / "rotated.tif"
    width, height = 400, 200
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=transform,
    ) as ds:
        ds.write(np.full((1, height, width), 7, dtype="uint8"))
    info = inspect_raster(str(src), "rotated.tif")
    cog = tmp_path / "cog.tif"
    profile = cog_profile(info.raster_type, "analysis", "uint8", 85)
    write_cog(str(src), cog, info, profile, None, tmp_path)
    item = build_item(cog, item_id="r", collection_id="x", href="silver/r.tif", properties={})
    corners = [transform * c for c in ((0, 0), (width, 0), (width, height), (0, height))]
    lons, lats = warp_transform("EPSG:32633", "EPSG:4326", *zip(*corners, strict=True))
    ring = item["geometry"]["coordinates"][0]
    for lon, lat in zip(lons, lats, strict=True):  # every corner is a vertex of the footprint
        assert min(math.dist((lon, lat), tuple(p)) for p in ring) < 1e-9
    assert item["bbox"] == pytest.approx([min(lons), min(lats), max(lons), max(lats)])
    shoelace = abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring))) / 2
    west, south, east, north = item["bbox"]
    assert shoelace < 0.8 * (east - west) * (north - south)  # not the envelope
    native = item["properties"]["proj:geometry"]["coordinates"][0]
    for corner in corners:
        assert min(math.dist(corner, tuple(p)) for p in native) < 1e-6
    xs, ys = zip(*corners, strict=True)
    assert item["properties"]["proj:bbox"] == pytest.approx([min(xs), min(ys), max(xs), max(ys)])


def test_north_up_geometry_is_unchanged(tmp_path: Path) -> None:
    src = DATA / "elev.tif"
    info = inspect_raster(str(src), "elev.tif")
    cog = tmp_path / "cog.tif"
    write_cog(str(src), cog, info, cog_profile("dem", "analysis", info.dtype, 85), None, tmp_path)
    item = build_item(cog, item_id="e", collection_id="x", href="silver/e.tif", properties={})
    with rasterio.open(cog) as ds:
        assert item["bbox"] == pytest.approx(list(ds.bounds))  # EPSG:4326 already
    assert item["properties"]["proj:code"] == "EPSG:4326"


# --- item 11: categorical needs a colour table, an attribute table or few values -------------


def single_band(path: Path, data: np.ndarray[Any, Any], **extra: Any) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[-1],
        height=data.shape[-2],
        count=1,
        dtype=data.dtype,
        crs="EPSG:32633",
        transform=from_origin(*ORIGIN, 10, 10),
        **extra,
    ) as ds:
        ds.write(data.reshape(1, *data.shape[-2:]))
    return path


def continuous(dtype: str, size: int = 300) -> np.ndarray[Any, Any]:
    y, x = np.mgrid[0:size, 0:size]
    top = 250 if dtype == "uint8" else 60000
    return ((np.sin(x / 17) + np.cos(y / 23) + 2) / 4 * top).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_a_continuous_single_band_image_is_not_categorical(tmp_path: Path, dtype: str) -> None:
    path = single_band(tmp_path / "scan.tif", continuous(dtype))
    info = inspect_raster(str(path), "scan.tif")
    assert info.raster_type == "dem"
    profile = cog_profile(info.raster_type, "analysis", dtype, 85)
    assert (profile.resampling, profile.overview_resampling) == ("bilinear", "average")


def test_few_distinct_values_are_categorical(tmp_path: Path) -> None:
    classes = (continuous("uint8") // 50).astype("uint8")  # 5 classes, no colour table
    assert len(np.unique(classes)) <= MAX_CATEGORIES
    info = inspect_raster(str(single_band(tmp_path / "zones.tif", classes)), "zones.tif")
    assert info.raster_type == "categorical"
    profile = cog_profile(info.raster_type, "analysis", "uint8", 85)
    assert (profile.resampling, profile.overview_resampling) == ("nearest", "mode")


def test_a_colour_table_or_an_attribute_table_makes_it_categorical(tmp_path: Path) -> None:
    data = continuous("uint8")
    with_table = single_band(tmp_path / "palette.tif", data)
    with rasterio.open(with_table, "r+") as ds:
        ds.write_colormap(1, {i: (i, 255 - i, 0, 255) for i in range(256)})
    assert inspect_raster(str(with_table), "palette.tif").raster_type == "categorical"
    rat = single_band(tmp_path / "classes.tif", data)
    (tmp_path / "classes.tif.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1">'
        '<GDALRasterAttributeTable tableType="thematic">'
        '<FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>5</Usage></FieldDefn>'
        '<FieldDefn index="1"><Name>Class</Name><Type>2</Type><Usage>2</Usage></FieldDefn>'
        '<Row index="0"><F>1</F><F>forest</F></Row><Row index="1"><F>2</F><F>water</F></Row>'
        "</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>"
    )
    assert inspect_raster(str(rat), "classes.tif").raster_type == "categorical"
    athematic = tmp_path / "classes.tif.aux.xml"
    athematic.write_text(athematic.read_text().replace('"thematic"', '"athematic"'))
    assert inspect_raster(str(rat), "classes.tif").raster_type == "dem"


def test_the_sample_is_bounded_whatever_the_size() -> None:
    windows = sample_windows(200_000, 150_000)
    assert sum(w.width * w.height for w in windows) <= 1024 * 1024
    assert max(w.col_off + w.width for w in windows) == 200_000
    assert max(w.row_off + w.height for w in windows) == 150_000
    assert sample_windows(300, 200) == [rasterio.windows.Window(0, 0, 300, 200)]


def test_values_outside_the_sample_windows_are_still_found(tmp_path: Path) -> None:
    data = np.zeros((2000, 2000), dtype="uint8")
    data[950:1050, 950:1050] = np.random.default_rng(3).integers(1, 250, (100, 100))
    path = single_band(tmp_path / "blob.tif", data, nodata=0)
    with rasterio.open(path) as ds:
        assert count_distinct(ds) > MAX_CATEGORIES
    assert inspect_raster(str(path), "blob.tif").raster_type == "dem"


def test_detect_type_rules() -> None:
    assert detect_type(1, "uint8", ["gray"], False) == "dem"
    assert detect_type(1, "uint8", ["gray"], False, distinct_values=12) == "categorical"
    assert detect_type(1, "uint16", ["gray"], False, distinct_values=5000) == "dem"
    assert detect_type(1, "uint8", ["palette"], True, distinct_values=5000) == "categorical"
    assert detect_type(1, "int16", ["gray"], False, has_attribute_table=True) == "categorical"
    assert detect_type(1, "float32", ["gray"], False) == "dem"


# --- item 13: a COG write stops when told to -----------------------------------------------


class Stop(Exception):
    """What a cancelled task's progress report raises."""


def noise(path: Path, size: int = 1500, crs: str = "EPSG:32633", **extra: Any) -> Path:
    data = np.random.default_rng(7).random((1, size, size), dtype=np.float32)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs=crs,
        transform=from_origin(*ORIGIN, 10, 10),
        nodata=-1,
        **extra,
    ) as ds:
        ds.write(data)
        ds.set_band_description(1, "noise")
    return path


@pytest.mark.parametrize(
    ("target", "memory"),
    [(None, None), ("EPSG:4326", None), ("EPSG:4326", 0)],
    ids=["native", "warped-in-memory", "warped-by-the-cog-driver"],
)
def test_a_cog_write_stops_midway_when_progress_raises(
    tmp_path: Path, target: str | None, memory: int | None
) -> None:
    src = noise(tmp_path / "noise.tif")
    info = inspect_raster(str(src), "noise.tif")
    profile = cog_profile(info.raster_type, "analysis", info.dtype, 85)
    options: dict[str, Any] = {} if memory is None else {"warp_memory_bytes": memory}
    heard: list[float] = []
    write_cog(str(src), tmp_path / "full.tif", info, profile, target, tmp_path / "a", **options,
              progress=heard.append)  # fmt: skip
    assert heard[-1] == 1.0
    assert len(heard) > 10
    assert heard == sorted(heard)

    stopped: list[float] = []

    def stop(fraction: float) -> None:
        stopped.append(fraction)
        if fraction > 0.1:
            raise Stop(fraction)

    out = tmp_path / "stopped.tif"
    with pytest.raises(Stop):
        write_cog(str(src), out, info, profile, target, tmp_path / "b", progress=stop, **options)
    # GDAL stopped at once: the report that raised was the last, well before the end.
    assert [f for f in stopped if f > 0.1] == [stopped[-1]]
    assert stopped[-1] < 1.0
    assert len(stopped) < len(heard)
    assert not out.exists()


def test_rgb_warped_in_memory_keeps_colours_and_alpha(tmp_path: Path) -> None:
    src = tmp_path / "rgb.tif"
    data = np.random.default_rng(1).integers(0, 255, (3, 300, 400), dtype=np.uint8)
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=400,
        height=300,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(*ORIGIN, 10, 10),
        photometric="RGB",
    ) as ds:
        ds.write(data)
    info = inspect_raster(str(src), "rgb.tif")
    profile = cog_profile("rgb", "analysis", "uint8", 85)
    fast, streamed = tmp_path / "memory.tif", tmp_path / "streamed.tif"
    write_cog(str(src), fast, info, profile, "EPSG:4326", tmp_path / "a")
    write_cog(str(src), streamed, info, profile, "EPSG:4326", tmp_path / "b", warp_memory_bytes=0)
    with rasterio.open(fast) as a, rasterio.open(streamed) as b:
        names = [c.name for c in a.colorinterp]
        assert names == ["red", "green", "blue", "alpha"]
        assert a.colorinterp == b.colorinterp
        assert (a.width, a.height, a.transform) == (b.width, b.height, b.transform)
        assert np.array_equal(a.read(), b.read())
