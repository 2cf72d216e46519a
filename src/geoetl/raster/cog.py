"""Write a Cloud-Optimized GeoTIFF with GDAL's COG driver, then verify it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pydantic import BaseModel
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.io import DatasetReader, DatasetWriter, MemoryFile
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from geoetl import gdalsafe
from geoetl.errors import GeoEtlError
from geoetl.raster import gdalapi
from geoetl.raster.inspect import RasterInfo, crs_string, parse_crs
from geoetl.raster.profiles import CogProfile

Progress = Callable[[float], None]
"""Told the fraction done (0..1) as the COG is written; an exception it raises stops
the write (GDAL is told to stop) and propagates from :func:`write_cog`."""

# GDAL's block cache while writing a COG. Its default (5% of RAM) lets the cache hold
# most of a large source while the driver builds overviews and compresses, for no gain:
# the source is read in order and the page cache serves the re-reads. 64 MiB cut the peak
# RSS of an 8000x8000 RGB write from about 400 to 245 MiB (float32 DEM: 495 to 275)
# and was no slower (docs/benchmarks.md, "Raster (issue 3)").
COG_CACHE_BYTES = 64 * 1024 * 1024

# The largest reprojected raster (in bytes, all bands) warped into memory; a larger one
# streams through GDAL's own temporary files, so memory stays bounded. The platform
# passes GEOETL_RASTER_WARP_MEMORY_MB.
WARP_IN_MEMORY_BYTES = 512 * 1024 * 1024

# Working memory of one warp call, above which GDAL splits it (along its longer side,
# the columns of a band of rows). A band of rows (WARP_ROWS_BYTES) and its source fit,
# so a call is not split: a split along columns changes GDAL's interpolated transform in
# the last bits, and bands warped in separate tasks (geoetl.raster.windows) would then
# differ from one warp. GDAL allocates what the call needs, not this limit.
WARP_CHUNK_MB = 256
# The in-memory warp runs in bands of rows of about this size (all bands), each one
# warp call on every core, with a progress report (and a chance to stop) between them:
# about 0.3 s each for a 14000x14000 byte raster on two cores.
WARP_ROWS_BYTES = 32 * 1024 * 1024
# Tiles of the in-memory GeoTIFF: the COG driver reads its source in 512 px blocks, which
# is about 10% less work from tiles than from strips (and as fast as from a MEM dataset).
_MEM_BLOCK = 512


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


def vrt_options(info: RasterInfo, *, reproject: bool) -> dict[str, str]:
    """What a ``vrt://`` wrapper must fix in the source as GDAL reads it.

    A file without a CRS gets ``input_crs``; floating-point data without nodata gets
    NaN as nodata when reprojected, so the empty corners are NaN rather than a float
    alpha band (which tile readers mishandle). The wrapper is made by
    :func:`geoetl.gdalsafe.open_raster`, which lets it open the file only with the
    driver that already read it.
    """
    options = {}
    if info.crs_from_input:
        options["a_srs"] = info.crs
    if reproject and info.nodata is None and np.issubdtype(np.dtype(info.dtype), np.floating):
        options["a_nodata"] = "nan"
    return options


def write_cog(
    src: str | gdalsafe.UserFile,
    dst: Path,
    info: RasterInfo,
    profile: CogProfile,
    target_crs: str | None,
    scratch: Path,
    *,
    warp_memory_bytes: int = WARP_IN_MEMORY_BYTES,
    progress: Progress | None = None,
) -> CogResult:
    """Convert ``src`` to a COG at ``dst`` (reprojected to ``target_crs`` unless None).

    A reprojected raster that fits in ``warp_memory_bytes`` is warped into memory with
    every core and the COG is written from there; a larger one is warped by the COG
    driver through a temporary file. Both give the same grid, bands and metadata.
    ``src`` is a user file: it is opened through :mod:`geoetl.gdalsafe` (never as a VRT
    or another reference, never reading outside its folder), and ``target_crs`` is
    parsed by PROJ without file or network access.

    ``progress`` hears how far the write is, from GDAL itself (:mod:`gdalapi`) and
    between the in-memory warp's bands of rows; what it raises stops the write within
    moments (a cancelled task) and propagates, and ``dst`` is not left behind.
    """
    options = profile.creation_options()
    target = None if target_crs is None else parse_crs(target_crs, "target_crs")
    reproject = target is not None and target != CRS.from_user_input(info.crs)
    source = src if isinstance(src, gdalsafe.UserFile) else gdalsafe.user_file(src)
    report: Progress = progress or _ignore
    dst.parent.mkdir(parents=True, exist_ok=True)
    with (
        rasterio.Env(
            GDAL_NUM_THREADS="ALL_CPUS",
            GDAL_CACHEMAX=COG_CACHE_BYTES,
            **_temporary_overview_options(profile),
        ),
        gdalsafe.open_raster(
            source, source.name, vrt_options=vrt_options(info, reproject=reproject)
        ) as src_ds,
    ):
        if target is None or not reproject:
            _cog_copy(src_ds, dst, options, report, source)
        else:
            grid = _warp_grid(src_ds, target)
            if grid is not None and _warped_bytes(src_ds, info, grid) <= warp_memory_bytes:
                warp_part, copy_part = _split(report, 0.5)
                with _warp_into_memory(src_ds, info, profile, target, grid, warp_part) as warped:
                    _cog_copy(warped, dst, options, copy_part)
            else:
                _write_reprojected_streaming(
                    src_ds, dst, info, profile, target, scratch, report, source
                )
    report(1.0)
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


def _ignore(_fraction: float) -> None:
    return None


def _split(progress: Progress, at: float) -> tuple[Progress, Progress]:
    """Two reporters for the phases before and after ``at`` of one ``progress``."""
    return (lambda f: progress(f * at)), (lambda f: progress(at + (1.0 - at) * f))


def _cog_copy(
    ds: DatasetReader | DatasetWriter,
    dst: Path,
    options: dict[str, str],
    progress: Progress,
    user: gdalsafe.UserFile | None = None,
) -> None:
    """GDAL's COG driver copies ``ds`` (opened by name) to ``dst``, telling ``progress``.

    ``ds`` is opened again by its name with the driver that read it (rasterio gives no
    access to its handle); a ``user`` file is checked again for what GDAL touches. Without
    direct access to GDAL (:func:`gdalapi.available`) rasterio copies it, unstoppable.
    """
    progress(0.0)
    if not gdalapi.available():
        rasterio.shutil.copy(ds, str(dst), driver="COG", **options)
        progress(1.0)
        return
    with gdalapi.open_dataset(ds.name, ds.driver) as handle:
        if user is not None:
            gdalsafe.check_files(handle.files(), user)
        gdalapi.create_copy(handle, dst, "COG", options, progress)


def _temporary_overview_options(profile: CogProfile) -> dict[str, str]:
    """GDAL settings for the COG driver's temporary overview file.

    The driver computes overviews into a ZSTD-compressed temporary file (level 9 by
    default), then recompresses them into the COG. Level 1 is enough for a file that
    lives a few seconds, and the output is byte-identical: 8000x8000 RGB 6.5 -> 5.5 s,
    float32 DEM 3.5 -> 2.7 s (docs/benchmarks.md). When the COG itself is ZSTD the same
    setting would also pick its overviews' level, so it is left alone then.
    """
    if "ZSTD" in profile.compress.upper():
        return {}
    return {"ZSTD_LEVEL_OVERVIEW": "1"}


class _Grid(NamedTuple):
    transform: Affine
    width: int
    height: int


def _warp_grid(src: DatasetReader, target_crs: CRS) -> _Grid | None:
    """The output grid GDAL's COG driver would choose, or None if only it can choose.

    Both use GDAL's suggested warp output; only a north-up source with a geotransform
    (no rotation, GCPs or RPCs) and without alpha or mask bands is warped here.
    """
    if src.gcps[0] or src.rpcs or not src.transform.is_rectilinear or src.transform.e > 0:
        return None
    if "alpha" in [ci.name for ci in src.colorinterp]:
        return None
    allowed = {MaskFlags.all_valid, MaskFlags.nodata}
    if any(not set(flags) <= allowed for flags in src.mask_flag_enums):
        return None
    transform, width, height = calculate_default_transform(
        src.crs, target_crs, src.width, src.height, *src.bounds
    )
    if transform is None or width is None or height is None:
        return None
    return _Grid(transform, width, height)


def _adds_alpha(src: DatasetReader, info: RasterInfo) -> bool:
    """Whether the output gets an alpha band marking the empty corners of the warp."""
    return src.nodata is None and not info.has_colormap


def _warped_bytes(src: DatasetReader, info: RasterInfo, grid: _Grid) -> int:
    bands = int(src.count) + (1 if _adds_alpha(src, info) else 0)
    return int(grid.width * grid.height * bands * np.dtype(src.dtypes[0]).itemsize)


@contextmanager
def _warp_into_memory(
    src: DatasetReader,
    info: RasterInfo,
    profile: CogProfile,
    target_crs: CRS,
    grid: _Grid,
    progress: Progress,
) -> Iterator[DatasetWriter]:
    """The source warped onto ``grid`` in a GeoTIFF in memory, metadata carried over.

    The GeoTIFF is uncompressed and tiled, in GDAL's ``/vsimem/`` (so that the COG driver
    can open it by name: rasterio does not hand out dataset handles), and filled in bands
    of rows (:data:`WARP_ROWS_BYTES`), each warped on every core; ``progress`` is told
    before each. Rasters larger than one band of rows may differ from a single warp call
    by one unit in a few pixels where GDAL, which splits its work too, sizes its
    resampling kernel per chunk of its own.
    """
    alpha = _adds_alpha(src, info)
    bands = list(range(1, src.count + 1))
    count = src.count + (1 if alpha else 0)
    dtype = src.dtypes[0]
    with (
        MemoryFile(ext=".tif") as memfile,
        memfile.open(
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=count,
            dtype=dtype,
            crs=target_crs,
            transform=grid.transform,
            nodata=src.nodata,
            tiled=True,
            blockxsize=_MEM_BLOCK,
            blockysize=_MEM_BLOCK,
            BIGTIFF="IF_NEEDED",
        ) as mem,
    ):
        # Colour interpretation and table first: a GeoTIFF fixes them with its first pixels.
        mem.colorinterp = [*src.colorinterp, *([ColorInterp.alpha] if alpha else [])]
        if info.has_colormap:
            mem.write_colormap(1, src.colormap(1))
        rows = _warp_rows(grid.width, count, dtype)
        for top in range(0, grid.height, rows):
            progress(top / grid.height)
            height = min(rows, grid.height - top)
            chunk = _warp_band_of_rows(src, info, profile, target_crs, grid, top, height)
            mem.write(chunk, window=Window(0, top, grid.width, height))
        progress(1.0)
        mem.update_tags(**_without_statistics(src.tags()))
        for band in bands:
            mem.update_tags(band, **_without_statistics(src.tags(band)))
            if src.descriptions[band - 1]:
                mem.set_band_description(band, src.descriptions[band - 1])
        mem.scales = tuple(src.scales) + (1.0,) * (mem.count - src.count)
        mem.offsets = tuple(src.offsets) + (0.0,) * (mem.count - src.count)
        mem.units = tuple(u or "" for u in src.units) + ("",) * (mem.count - src.count)
        mem.close()
        with memfile.open() as warped:
            yield warped


def _warp_rows(width: int, count: int, dtype: str) -> int:
    """Rows of output warped per call: about :data:`WARP_ROWS_BYTES` (all bands).

    Whole rows of 512 px tiles when that many fit (none is written twice). The windowed
    conversion (:mod:`geoetl.raster.windows`) warps on the same row boundaries, so its
    pixels are those of this one.
    """
    row_bytes = width * count * np.dtype(dtype).itemsize
    rows = max(1, WARP_ROWS_BYTES // row_bytes)
    if rows >= _MEM_BLOCK:
        rows -= rows % _MEM_BLOCK
    return rows


def _warp_band_of_rows(
    src: DatasetReader,
    info: RasterInfo,
    profile: CogProfile,
    target_crs: CRS,
    grid: _Grid,
    top: int,
    height: int,
    *,
    left: int = 0,
    width: int | None = None,
) -> np.ndarray[Any, Any]:
    """Rows ``top``..``top + height`` of the source warped onto ``grid`` (one warp call).

    Columns ``left``..``left + width`` of them (default: all). With an alpha band last
    when :func:`_adds_alpha`; else the source's nodata fills what the source does not
    cover.
    """
    alpha = _adds_alpha(src, info)
    count = src.count + (1 if alpha else 0)
    warp_options: dict[str, Any] = (
        {"dst_alpha": count}
        if alpha
        else {"src_nodata": src.nodata, "dst_nodata": src.nodata, "init_dest_nodata": True}
    )
    # GDAL sizes the resampling kernel from each call's own source and target windows
    # unless told the scale: fixed from the whole grid, bands of rows warped apart (here
    # or in another task) give the pixels of one warp of the whole raster.
    warp_options["XSCALE"] = repr(grid.width / src.width)
    warp_options["YSCALE"] = repr(grid.height / src.height)
    columns = grid.width - left if width is None else width
    chunk = np.zeros((count, height, columns), dtype=src.dtypes[0])
    reproject(
        rasterio.band(src, list(range(1, src.count + 1))),
        chunk,
        dst_transform=grid.transform * Affine.translation(left, top),
        dst_crs=target_crs,
        resampling=Resampling[profile.resampling],
        num_threads=os.cpu_count() or 1,
        warp_mem_limit=WARP_CHUNK_MB,
        **warp_options,
    )
    return chunk


def _without_statistics(tags: dict[str, str]) -> dict[str, str]:
    """Tags that still hold after a warp (statistics of the source do not)."""
    return {k: v for k, v in tags.items() if not k.startswith("STATISTICS_")}


def _write_reprojected_streaming(
    src: DatasetReader,
    dst: Path,
    info: RasterInfo,
    profile: CogProfile,
    target_crs: CRS,
    scratch: Path,
    progress: Progress,
    user: gdalsafe.UserFile,
) -> None:
    """Reproject without holding the raster in memory: GDAL's COG driver warps it."""
    warp = {
        "TARGET_SRS": crs_string(target_crs),
        "WARP_RESAMPLING": profile.resampling.upper(),
    }
    if info.has_colormap:
        warp["ADD_ALPHA"] = "NO"  # as the other paths: a colour table, no alpha
    if not info.has_band_metadata:
        _cog_copy(src, dst, {**profile.creation_options(), **warp}, progress, user)
        return
    # A warp drops band descriptions and scale/offset: the COG driver warps to a scratch
    # GeoTIFF without overviews, they are put back there, and the COG is written from it.
    scratch.mkdir(parents=True, exist_ok=True)
    warped = scratch / "warped.tif"
    warp_part, copy_part = _split(progress, 0.5)
    fast = {
        "COMPRESS": "ZSTD",
        "LEVEL": "1",
        "BLOCKSIZE": "512",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
        "OVERVIEWS": "NONE",
    }
    _cog_copy(src, warped, {**fast, **warp}, warp_part, user)
    with rasterio.open(warped, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as out:
        for band in range(1, info.count + 1):
            if info.descriptions[band - 1]:
                out.set_band_description(band, info.descriptions[band - 1])
        out.scales = tuple(info.scales) + (1.0,) * (out.count - info.count)
        out.offsets = tuple(info.offsets) + (0.0,) * (out.count - info.count)
    with rasterio.open(warped) as reopened:
        _cog_copy(reopened, dst, profile.creation_options(), copy_part)


def verify_cog(path: Path, info: RasterInfo) -> None:
    """Check the output is a valid COG that kept nodata, colours, descriptions and scaling."""
    from rio_cogeo.cogeo import cog_validate  # morecantile and pyproj: imported when used

    valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if not valid and _square_blocks(path):
        # rio-cogeo takes blocks as wide as the image for strips: a raster (or overview)
        # exactly one 512 px block wide and taller than that is tiled all the same.
        errors = [e for e in errors if "not tiled" not in e]
        valid = not errors
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
        if not all(map(_same_colorinterp, kept, info.colorinterp)):
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


def _square_blocks(path: Path) -> bool:
    """Whether the file and each of its overviews are stored in square blocks (tiles)."""
    with rasterio.open(path) as out:
        levels = len(out.overviews(1))
    for level in [None, *range(levels)]:
        with rasterio.open(path, overview_level=level) as ds:
            if any(rows != cols for rows, cols in ds.block_shapes):
                return False
    return True


def _same_colorinterp(written: str, source: str) -> bool:
    # A band without colour interpretation (RRASTER, ENVI, …) is grey in a GeoTIFF, whose
    # MINISBLACK first band has no "undefined".
    return written == source or (source == "undefined" and written == "gray")


def _same_nodata(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (bool(np.isnan(a)) and bool(np.isnan(b)))
