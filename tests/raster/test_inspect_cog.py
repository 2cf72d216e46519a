"""Raster validation and COG writing on the sample rasters, checked with plain rasterio/GDAL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

from geoetl.errors import InputError
from geoetl.raster.cog import write_cog
from geoetl.raster.inspect import inspect_raster
from geoetl.raster.profiles import cog_profile, tiers_for

DATA = Path(__file__).parents[2] / "examples" / "data"
SAMPLES = {
    "L7_ETMs.tif": "multispectral",
    "elev.tif": "dem",
    "lc.tif": "categorical",
    "olinda_dem_utm25s.tif": "dem",
}


@pytest.mark.parametrize(("name", "expected"), SAMPLES.items())
def test_sample_types_are_detected(name: str, expected: str) -> None:
    info = inspect_raster(str(DATA / name), name)
    assert info.raster_type == expected
    assert info.warnings == []


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("tier", ["analysis", "archive"])
def test_lossless_cog_without_reprojection_is_pixel_identical(
    name: str, tier: str, tmp_path: Path
) -> None:
    src = DATA / name
    info = inspect_raster(str(src), name)
    out = tmp_path / "out.tif"
    profile = cog_profile(info.raster_type, tier, info.dtype, 85)  # type: ignore[arg-type]
    result = write_cog(str(src), out, info, profile, None, tmp_path / "scratch")
    assert not result.reprojected
    valid, errors, _ = cog_validate(str(out), quiet=True)
    assert valid, errors
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert np.array_equal(a.read(), b.read())
        assert b.crs == a.crs
        assert b.nodata == a.nodata
        assert b.descriptions == a.descriptions
        assert b.profile["blockxsize"] == 512
        assert b.compression.name.upper() == profile.compress


@pytest.mark.parametrize("name", SAMPLES)
def test_reprojected_cog_covers_the_source_bounds(name: str, tmp_path: Path) -> None:
    src = DATA / name
    info = inspect_raster(str(src), name)
    out = tmp_path / "out.tif"
    profile = cog_profile(info.raster_type, "analysis", info.dtype, 85)
    write_cog(str(src), out, info, profile, "EPSG:4326", tmp_path / "scratch")
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.crs == CRS.from_epsg(4326)
        expected = transform_bounds(a.crs, "EPSG:4326", *a.bounds)
        px = max(b.res)
        assert np.allclose(tuple(b.bounds), expected, atol=2 * px)
        if a.nodata is None and a.dtypes[0].startswith("float"):
            # Empty corners of reprojected float data are NaN, not a float alpha band.
            assert b.nodata is not None
            assert np.isnan(b.nodata)
            assert b.count == a.count
        else:
            assert b.nodata == a.nodata
        assert b.descriptions[: a.count] == a.descriptions
        if name == "lc.tif":
            assert b.colormap(1) == a.colormap(1)  # the colour table survives
    assert cog_validate(str(out), quiet=True)[0]


@pytest.mark.parametrize("name", SAMPLES)
def test_reprojection_in_memory_and_streamed_give_the_same_cog(name: str, tmp_path: Path) -> None:
    """A raster small enough is warped in memory; a large one streams through GDAL's COG
    driver. Users must get the same file either way: grid, bands, metadata, pixels."""
    src = DATA / name
    info = inspect_raster(str(src), name)
    profile = cog_profile(info.raster_type, "analysis", info.dtype, 85)
    fast, streamed = tmp_path / "memory.tif", tmp_path / "streamed.tif"
    write_cog(str(src), fast, info, profile, "EPSG:4326", tmp_path / "a")
    write_cog(str(src), streamed, info, profile, "EPSG:4326", tmp_path / "b", warp_memory_bytes=0)
    with rasterio.open(fast) as a, rasterio.open(streamed) as b:
        assert (a.width, a.height, a.count, a.dtypes) == (b.width, b.height, b.count, b.dtypes)
        assert a.transform.almost_equals(b.transform)
        assert a.crs == b.crs
        assert a.colorinterp == b.colorinterp
        assert a.descriptions == b.descriptions
        assert (a.scales, a.offsets) == (b.scales, b.offsets)
        assert a.tags() == b.tags()
        assert a.overviews(1) == b.overviews(1)
        assert a.compression == b.compression
        if info.has_colormap:
            assert a.colormap(1) == b.colormap(1)
        if b.nodata is None:
            assert a.nodata is None
        else:
            assert a.nodata == b.nodata or (np.isnan(a.nodata) and np.isnan(b.nodata))
        assert np.array_equal(a.read(), b.read(), equal_nan=True)
    assert cog_validate(str(fast), quiet=True)[0]


def test_visualization_tier_of_rgb_is_jpeg(tmp_path: Path) -> None:
    src = tmp_path / "rgb.tif"
    data = np.random.default_rng(1).integers(0, 255, (3, 600, 700), dtype=np.uint8)
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=700,
        height=600,
        count=3,
        dtype="uint8",
        crs="EPSG:3857",
        transform=from_origin(0, 0, 10, 10),
        photometric="RGB",
    ) as ds:
        ds.write(data)
    info = inspect_raster(str(src), "rgb.tif")
    assert info.raster_type == "rgb"
    assert tiers_for("all", "rgb") == ["visualization", "analysis", "archive"]
    out = tmp_path / "vis.tif"
    write_cog(str(src), out, info, cog_profile("rgb", "visualization", "uint8", 80), None, tmp_path)
    with rasterio.open(out) as b:
        assert b.compression.name.upper() == "JPEG"
        assert b.tags(ns="IMAGE_STRUCTURE")["SOURCE_COLOR_SPACE"] == "YCbCr"
        assert [c.name for c in b.colorinterp] == ["red", "green", "blue"]
        assert b.overviews(1)  # 700 px > one 512 block: overviews exist


@pytest.mark.parametrize("width", [512, 1024])
def test_a_raster_one_block_wide_at_some_level_converts(tmp_path: Path, width: int) -> None:
    # 512 x 1500 is one block wide; 1024 x 2048's first overview is 512 x 1024. rio-cogeo's
    # check takes such a level for a striped one: the conversion must not fail on it.
    height = 2 * width if width > 512 else 1500
    src = tmp_path / "tall.tif"
    data = np.random.default_rng(2).integers(0, 255, (1, height, width), dtype=np.uint8)
    with rasterio.open(
        src, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
        crs="EPSG:3857", transform=from_origin(0, 0, 10, 10),
    ) as ds:  # fmt: skip
        ds.write(data)
    info = inspect_raster(str(src), "tall.tif")
    out = tmp_path / "tall-cog.tif"
    write_cog(str(src), out, info, cog_profile("dem", "analysis", "uint8", 85), None, tmp_path)
    with rasterio.open(out) as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert cog.block_shapes == [(512, 512)]
        assert cog.overviews(1)
        assert np.array_equal(cog.read(), data)


def _write(path: Path, dtype: str = "float32", crs: str | None = "EPSG:4326") -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype=dtype,
        crs=crs,
        transform=from_origin(10, 50, 0.01, 0.01),
    ) as ds:
        ds.write(np.arange(64 * 64, dtype=dtype).reshape(1, 64, 64))
    return path


def test_text_file_named_tif_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a raster\n")
    with pytest.raises(InputError, match="not a raster GDAL can read"):
        inspect_raster(str(bad), "notes.tif")


def test_truncated_geotiff_is_rejected(tmp_path: Path) -> None:
    whole = (DATA / "L7_ETMs.tif").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"truncated|not a raster"):
        inspect_raster(str(cut), "cut.tif")


def test_missing_crs_needs_input_crs(tmp_path: Path) -> None:
    src = _write(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(InputError, match="no coordinate reference system; pass input_crs"):
        inspect_raster(str(src), "nocrs.tif")
    info = inspect_raster(str(src), "nocrs.tif", input_crs="EPSG:4326")
    assert info.crs_from_input
    out = tmp_path / "out.tif"
    write_cog(str(src), out, info, cog_profile("dem", "analysis", "float32", 85), None, tmp_path)
    with rasterio.open(out) as b:
        assert b.crs == CRS.from_epsg(4326)


def test_bad_input_crs_is_explained(tmp_path: Path) -> None:
    src = _write(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(InputError, match="not a coordinate reference system"):
        inspect_raster(str(src), "nocrs.tif", input_crs="EPSG:99999999")


def test_float64_is_a_warning_or_a_strict_error(tmp_path: Path) -> None:
    src = _write(tmp_path / "wide.tif", dtype="float64")
    info = inspect_raster(str(src), "wide.tif")
    assert any("64-bit" in w for w in info.warnings)
    with pytest.raises(InputError, match=r"strict mode: .*64-bit"):
        inspect_raster(str(src), "wide.tif", strict=True)


def test_declared_type_disagreement_is_a_warning() -> None:
    info = inspect_raster(str(DATA / "elev.tif"), "elev.tif", declared_type="rgb")
    assert info.raster_type == "rgb"
    assert info.detected_type == "dem"
    assert any("declared" in w for w in info.warnings)


def test_geographic_bounds_out_of_range_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "far.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_origin(500000, 4000000, 30, 30),  # UTM numbers labelled as degrees
    ) as ds:
        ds.write(np.zeros((1, 10, 10), dtype="uint8"))
    with pytest.raises(InputError, match="CRS is probably wrong"):
        inspect_raster(str(path), "far.tif")
