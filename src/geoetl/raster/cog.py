"""Write a Cloud-Optimized GeoTIFF in one pass with GDAL's COG driver, then verify it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from pydantic import BaseModel
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_validate

from geoetl.errors import GeoEtlError
from geoetl.raster.inspect import RasterInfo, crs_string
from geoetl.raster.profiles import CogProfile

# GDAL's block cache while writing a COG. Its default (5% of RAM) lets the cache hold
# most of a large source while the driver builds overviews and compresses, for no gain:
# the source is read in order and the page cache serves the re-reads. 64 MiB cut the peak
# RSS of an 8000x8000 RGB write from about 400 to 245 MiB (float32 DEM: 495 to 275)
# and was no slower (docs/benchmarks.md, "Raster (issue 3)").
COG_CACHE_BYTES = 64 * 1024 * 1024


class CogResult(BaseModel):
    """What was written."""

    tier: str
    compression: str
    crs: str
    reprojected: bool
    width: int
    height: int
    size_bytes: int
    overviews: int
    alpha_added: bool


def source_path(path: str, info: RasterInfo, *, reproject: bool) -> str:
    """The path GDAL should read: the file, or a ``vrt://`` that fixes what it lacks.

    A file without a CRS gets ``input_crs``; floating-point data without nodata gets
    NaN as nodata when reprojected, so the empty corners are NaN rather than a float
    alpha band (which tile readers mishandle).
    """
    options = []
    if info.crs_from_input:
        # GDAL reads the option verbatim (no URL decoding); CRS strings never hold '&'.
        options.append(f"a_srs={info.crs}")
    if reproject and info.nodata is None and np.issubdtype(np.dtype(info.dtype), np.floating):
        options.append("a_nodata=nan")
    return f"vrt://{path}?{'&'.join(options)}" if options else path


def write_cog(
    src: str,
    dst: Path,
    info: RasterInfo,
    profile: CogProfile,
    target_crs: str | None,
    scratch: Path,
) -> CogResult:
    """Convert ``src`` to a COG at ``dst`` (reprojected to ``target_crs`` unless None)."""
    options = profile.creation_options()
    reproject = target_crs is not None and CRS.from_user_input(target_crs) != CRS.from_user_input(
        info.crs
    )
    source = source_path(src, info, reproject=reproject)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=COG_CACHE_BYTES):
        if reproject and info.has_band_metadata:
            # A warp drops band descriptions and scale/offset: warp to a scratch GeoTIFF,
            # put them back there, then write the COG from it.
            assert target_crs is not None
            source = str(_warp_keeping_band_metadata(source, scratch, info, profile, target_crs))
        elif reproject:
            assert target_crs is not None
            options["TARGET_SRS"] = target_crs
            options["WARP_RESAMPLING"] = profile.resampling.upper()
        rasterio.shutil.copy(source, str(dst), driver="COG", **options)
    verify_cog(dst, info)
    with rasterio.open(dst) as out:
        return CogResult(
            tier=profile.tier,
            compression=profile.compress,
            crs=crs_string(out.crs),
            reprojected=reproject,
            width=out.width,
            height=out.height,
            size_bytes=dst.stat().st_size,
            overviews=len(out.overviews(1)),
            alpha_added=out.count == info.count + 1,
        )


def _warp_keeping_band_metadata(
    source: str, scratch: Path, info: RasterInfo, profile: CogProfile, target_crs: str
) -> Path:
    scratch.mkdir(parents=True, exist_ok=True)
    warped = scratch / "warped.tif"
    with (
        rasterio.open(source) as src,
        WarpedVRT(
            src,
            crs=target_crs,
            resampling=Resampling[profile.resampling],
            add_alpha=src.nodata is None and not info.has_colormap,
        ) as vrt,
    ):
        rasterio.shutil.copy(
            vrt, str(warped), driver="GTiff", TILED="YES", COMPRESS="ZSTD", BIGTIFF="IF_SAFER"
        )
    with rasterio.open(warped, "r+") as out:
        for band in range(1, info.count + 1):
            if info.descriptions[band - 1]:
                out.set_band_description(band, info.descriptions[band - 1])
        out.scales = tuple(info.scales) + (1.0,) * (out.count - info.count)
        out.offsets = tuple(info.offsets) + (0.0,) * (out.count - info.count)
    return warped


def verify_cog(path: Path, info: RasterInfo) -> None:
    """Check the output is a valid COG that kept nodata, colours, descriptions and scaling."""
    valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if not valid:
        raise GeoEtlError(f"the written file is not a valid COG: {'; '.join(errors)}")
    with rasterio.open(path) as out:
        problems = []
        # Reprojecting data without nodata adds an alpha band marking the new empty corners.
        alpha_added = out.count == info.count + 1 and out.colorinterp[-1].name == "alpha"
        if out.count != info.count and not alpha_added:
            problems.append(f"band count {out.count} != {info.count}")
        if info.nodata is not None and not _same_nodata(out.nodata, info.nodata):
            problems.append(f"nodata {out.nodata} != {info.nodata}")
        kept = [ci.name for ci in out.colorinterp][: info.count]
        if kept != info.colorinterp:
            problems.append(f"colour interpretation {kept} != {info.colorinterp}")
        if info.has_colormap and out.colorinterp[0].name != "palette":
            problems.append("colour table lost")
        if list(out.descriptions)[: info.count] != info.descriptions:
            problems.append(f"band descriptions {out.descriptions} != {info.descriptions}")
        if list(out.scales)[: info.count] != info.scales:
            problems.append(f"scales {out.scales} != {info.scales}")
        if list(out.offsets)[: info.count] != info.offsets:
            problems.append(f"offsets {out.offsets} != {info.offsets}")
        if problems:
            raise GeoEtlError(f"COG conversion lost metadata: {', '.join(problems)}")


def _same_nodata(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (bool(np.isnan(a)) and bool(np.isnan(b)))
