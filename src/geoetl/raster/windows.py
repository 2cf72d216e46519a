"""A big raster's COG written in windows: plan them, write each one's part, assemble.

Above ``raster_split_bytes`` (uncompressed) process_raster does not convert a raster in
one task: :func:`plan_split` cuts the output grid into strips of whole 512 px tile rows
(the COG's block grid), one task each, on any worker of any machine. Each task writes
its strip (:func:`write_part`) as a tiled GeoTIFF part, losslessly and quickly
compressed, into the object store; reprojected, each warps its own strip of the target
grid, which the plan fixed once for all. :func:`assemble_cog` then has GDAL's COG driver
read a VRT of the parts, streaming, and write the COG with its overviews: no process
holds the raster in memory.

The parts hold the pixels the single-pass conversion (:func:`geoetl.raster.cog.write_cog`)
would write: the same reads natively, and reprojected the same warp calls (the resampling
kernel's scale is fixed from the whole grid, :func:`geoetl.raster.cog._warp_band_of_rows`,
so strips warped apart give the pixels of one warp). When the grid halves exactly down
to the last overview (and no alpha band is added), each part also carries its rows'
overviews, made by GDAL as the COG driver makes them, and the driver copies them at
assembly instead of reading the whole raster again (the costly half of a native
conversion); otherwise it computes them from the parts. Either way the COGs are
pixel-identical (tests/workflows/test_split_raster.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pydantic import BaseModel
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.io import DatasetReader
from rasterio.windows import Window

from geoetl import gdalsafe
from geoetl.errors import InputError
from geoetl.raster.cog import (
    COG_CACHE_BYTES,
    CogResult,
    _adds_alpha,
    _cog_copy,
    _Grid,
    _temporary_overview_options,
    _warp_band_of_rows,
    _warp_grid,
    _warp_rows,
    _without_statistics,
    verify_cog,
    vrt_options,
)
from geoetl.raster.inspect import RasterInfo, crs_string, parse_crs
from geoetl.raster.profiles import BLOCKSIZE, CogProfile

Progress = Callable[[float], None]

# Uncompressed size of one window's part (all bands), at most. A task's memory is one
# band of 512 rows (or one warp call), not its part; smaller parts spread better over
# workers, larger ones cost fewer tasks. 48000x48000 RGB: 24 windows.
PART_BYTES = 256 * 1024 * 1024

# How a part is stored until assembly: tiled as the COG, compressed losslessly and fast
# (ZSTD level 1 writes at several hundred MB/s a core and is read back faster still).
PART_OPTIONS = {
    "TILED": "YES",
    "BLOCKXSIZE": str(BLOCKSIZE),
    "BLOCKYSIZE": str(BLOCKSIZE),
    "COMPRESS": "ZSTD",
    "ZSTD_LEVEL": "1",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}


class SplitPlan(BaseModel):
    """The output grid of a split conversion and its windows (strips of tile rows)."""

    width: int
    height: int
    crs: str
    transform: tuple[float, float, float, float, float, float]
    """The output grid's affine (a, b, c, d, e, f)."""
    reproject: bool
    rows: int
    """Rows of each window (a multiple of the 512 px block); the last takes the rest."""
    warp_rows: int
    """Rows warped per call inside a window (reprojected only)."""
    count: int
    """Bands of the output (an alpha band added by the warp included)."""
    cols: int | None = None
    """Columns of each window (tiles); None: every window spans the grid (strips)."""

    @property
    def tile_rows(self) -> int:
        """Windows down the grid: the last one takes up a remainder of < rows / 2.

        No window is a sliver: a warp call of a few rows at the grid's edge finds a
        slightly different source window than the single-pass warp's there.
        """
        return _spans(self.height, self.rows)

    @property
    def tile_cols(self) -> int:
        """Windows across the grid (1 for strips)."""
        return 1 if self.cols is None else _spans(self.width, self.cols)

    @property
    def windows(self) -> int:
        """How many windows (tasks)."""
        return self.tile_rows * self.tile_cols

    def window(self, index: int) -> Window:
        """Window ``index`` of the output grid (row-major)."""
        if not 0 <= index < self.windows:
            raise ValueError(f"window {index} is outside the plan's {self.windows} windows")
        row, col = divmod(index, self.tile_cols)
        top, bottom = _span(row, self.tile_rows, self.rows, self.height)
        if self.cols is None:
            return Window(0, top, self.width, bottom - top)
        left, right = _span(col, self.tile_cols, self.cols, self.width)
        return Window(left, top, right - left, bottom - top)

    alpha: bool = False
    """Whether the warp adds an alpha band."""

    @property
    def overview_factors(self) -> list[int]:
        """The overviews the COG driver makes: halving until the grid fits one block."""
        return overview_factors(self.width, self.height)

    @property
    def part_overviews(self) -> list[int]:
        """The overviews each part carries for the COG; none: made at assembly.

        Only when the grid halves exactly down to the last level (GDAL's COG driver
        rounds odd sizes down, and resamples by a little more than 2 then), and without
        an alpha band (the driver averages RGBA under the alpha mask, which a
        GeoTIFF's own overviews do not).
        """
        factors = self.overview_factors
        exact = not factors or (self.width % factors[-1] == 0 and self.height % factors[-1] == 0)
        return factors if exact and not self.alpha else []

    @property
    def affine(self) -> Affine:
        """The output grid's transform."""
        return Affine(*self.transform)


def _spans(size: int, step: int) -> int:
    """Windows of ``step`` along ``size``, the last one taking a remainder of < step / 2."""
    return max(1, (size + step // 2) // step)


def _span(index: int, count: int, step: int, size: int) -> tuple[int, int]:
    """Start and end of window ``index`` of ``count`` along ``size``."""
    start = index * step
    return start, size if index == count - 1 else start + step


def overview_factors(width: int, height: int) -> list[int]:
    """Overview decimation factors of a COG of ``width`` x ``height`` (as GDAL's driver)."""
    levels = 0
    while (width >> levels) > BLOCKSIZE or (height >> levels) > BLOCKSIZE:
        levels += 1
    return [2**level for level in range(1, levels + 1)]


def uncompressed_bytes(info: RasterInfo) -> int:
    """The raster's size in memory: width x height x bands x sample size."""
    return info.width * info.height * info.count * np.dtype(info.dtype).itemsize


def plan_split(
    source: gdalsafe.UserFile,
    info: RasterInfo,
    target_crs: str | None,
    split_bytes: int,
) -> SplitPlan | None:
    """The windows of ``source``'s COG, or None when it is converted in one task.

    None when it is not larger than ``split_bytes``, when it fits in one window, and for
    what only GDAL's COG driver can warp (GCPs, RPCs, rotation, alpha or mask bands) or
    copy (a mask band, which the parts would not carry): those take the single-pass way,
    which streams too.
    """
    if uncompressed_bytes(info) <= split_bytes:
        return None
    found = _output_grid(source, info, target_crs)
    if found is None:
        return None
    grid, crs, count, warp_rows, reproject, alpha = found
    row_bytes = grid.width * count * np.dtype(info.dtype).itemsize
    part_bytes = min(PART_BYTES, split_bytes)
    # Whole blocks, and whole pixels of every overview: each part's own overviews are
    # then the overview pixels of its rows.
    unit = max([BLOCKSIZE, *overview_factors(grid.width, grid.height)])
    rows = max(unit, part_bytes // row_bytes // unit * unit)
    if rows * 3 // 2 > grid.height:  # one window
        return None
    t = grid.transform
    return SplitPlan(
        width=grid.width,
        height=grid.height,
        crs=crs,
        transform=(t.a, t.b, t.c, t.d, t.e, t.f),
        reproject=reproject,
        rows=rows,
        warp_rows=warp_rows,
        count=count,
        alpha=alpha,
    )


def plan_tiles(
    source: gdalsafe.UserFile, info: RasterInfo, target_crs: str | None, tile_size: int
) -> SplitPlan:
    """The output grid cut into tiles of ``tile_size`` px (a multiple of the block).

    What :func:`plan_split` refuses to split (GCPs, RPCs, rotation, a mask band) is
    refused here with what to do instead: a tile would not carry it.
    """
    if tile_size % BLOCKSIZE:
        raise InputError(f"tile_size must be a multiple of {BLOCKSIZE} px, not {tile_size}")
    found = _output_grid(source, info, target_crs)
    if found is None:
        raise InputError(
            f"{source.name} cannot be cut into tiles (it has GCPs, RPCs, a rotated grid or "
            "a mask band): publish it as one COG (leave layout out)"
        )
    grid, crs, count, warp_rows, reproject, alpha = found
    t = grid.transform
    return SplitPlan(
        width=grid.width,
        height=grid.height,
        crs=crs,
        transform=(t.a, t.b, t.c, t.d, t.e, t.f),
        reproject=reproject,
        rows=tile_size,
        cols=tile_size,
        warp_rows=min(warp_rows, tile_size),
        count=count,
        alpha=alpha,
    )


def _output_grid(
    source: gdalsafe.UserFile, info: RasterInfo, target_crs: str | None
) -> tuple[_Grid, str, int, int, bool, bool] | None:
    """The COG's grid, CRS, band count, warp rows, whether reprojected and alpha added.

    None for what only GDAL's COG driver can warp (GCPs, RPCs, rotation) or copy (a
    mask band).
    """
    target = None if target_crs is None else parse_crs(target_crs, "target_crs")
    reproject = target is not None and target != CRS.from_user_input(info.crs)
    with (
        rasterio.Env(GDAL_CACHEMAX=COG_CACHE_BYTES),
        gdalsafe.open_raster(
            source, source.name, vrt_options=vrt_options(info, reproject=reproject)
        ) as src,
    ):
        allowed = {MaskFlags.all_valid, MaskFlags.nodata, MaskFlags.alpha}
        if any(not set(flags) <= allowed for flags in src.mask_flag_enums):
            return None
        if target is not None and reproject:
            grid = _warp_grid(src, target)
            if grid is None:
                return None
            count = src.count + (1 if _adds_alpha(src, info) else 0)
            crs = crs_string(target)
        else:
            grid = _Grid(src.transform, src.width, src.height)
            count = src.count
            crs = info.crs
        warp_rows = _warp_rows(grid.width, count, src.dtypes[0])
        return grid, crs, count, warp_rows, reproject, count > src.count


def write_part(
    source: gdalsafe.UserFile,
    info: RasterInfo,
    profile: CogProfile,
    plan: SplitPlan,
    index: int,
    out: Path,
    progress: Progress,
) -> None:
    """Write window ``index`` of the output as a tiled GeoTIFF at ``out``.

    Natively its pixels are read in bands of 512 rows; reprojected, warped in bands of
    ``plan.warp_rows`` rows on every core. Memory: one such band.
    """
    window = plan.window(index)
    left, width = int(window.col_off), int(window.width)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = CRS.from_user_input(plan.crs)
    grid = _Grid(plan.affine, plan.width, plan.height)
    with (
        rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=COG_CACHE_BYTES),
        gdalsafe.open_raster(
            source, source.name, vrt_options=vrt_options(info, reproject=plan.reproject)
        ) as src,
        rasterio.open(
            out,
            "w",
            driver="GTiff",
            width=width,
            height=int(window.height),
            count=plan.count,
            dtype=src.dtypes[0],
            crs=target,
            transform=plan.affine * Affine.translation(left, int(window.row_off)),
            nodata=src.nodata,
            **PART_OPTIONS,
        ) as part,
    ):
        _copy_metadata(src, part, info, reproject=plan.reproject)
        step = plan.warp_rows if plan.reproject else BLOCKSIZE
        top, bottom = int(window.row_off), int(window.row_off + window.height)
        for row in range(top, bottom, step):
            progress((row - top) / (bottom - top))
            height = min(step, bottom - row)
            if plan.reproject:
                data = _warp_band_of_rows(
                    src, info, profile, target, grid, row, height, left=left, width=width
                )
            else:
                data = src.read(window=Window(left, row, width, height))
            part.write(data, window=Window(0, row - top, width, height))
        if plan.part_overviews and plan.cols is None:
            # The COG's overviews of these rows, computed here rather than at assembly.
            part.build_overviews(plan.part_overviews, Resampling[profile.overview_resampling])
    progress(1.0)


def _copy_metadata(src: DatasetReader, part: Any, info: RasterInfo, *, reproject: bool) -> None:
    """What the single-pass COG carries: colours, tags, descriptions, scale, offset, units."""
    extra = part.count - src.count
    part.colorinterp = [*src.colorinterp, *([ColorInterp.alpha] * extra)]
    if info.has_colormap:
        part.write_colormap(1, src.colormap(1))
    keep: Callable[[dict[str, str]], dict[str, str]] = (
        _without_statistics if reproject else (lambda tags: tags)
    )
    part.update_tags(**keep(src.tags()))
    for band in range(1, src.count + 1):
        part.update_tags(band, **keep(src.tags(band)))
        if src.descriptions[band - 1]:
            part.set_band_description(band, src.descriptions[band - 1])
    part.scales = tuple(src.scales) + (1.0,) * extra
    part.offsets = tuple(src.offsets) + (0.0,) * extra
    part.units = tuple(u or "" for u in src.units) + ("",) * extra


def parts_vrt(parts: Sequence[str], plan: SplitPlan, vrt: Path) -> None:
    """A VRT at ``vrt`` mosaicking ``parts`` (GDAL paths, in window order) into the grid.

    Made by GDAL from the first part (so it has the parts' metadata), then given the
    whole grid and one source per part and band; each overview level is a VRT of the
    parts' own overviews at that level, named as the VRT's overviews.
    """
    if plan.cols is not None:
        raise ValueError("a plan of tiles is published as tiles, not assembled")
    if len(parts) != plan.windows:
        raise ValueError(f"{len(parts)} parts for {plan.windows} windows")
    vrt.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(parts[0]) as first:
        rasterio.shutil.copy(first, str(vrt), driver="VRT")
    template = vrt.read_bytes()
    levels = []
    for level, factor in enumerate(plan.part_overviews):
        path = vrt.with_name(f"{vrt.stem}.level{level + 1}.vrt")
        _mosaic(template, parts, plan, path, factor, level)
        levels.append(str(path))
    _mosaic(template, parts, plan, vrt, 1, None, levels)


def _mosaic(
    template: bytes,
    parts: Sequence[str],
    plan: SplitPlan,
    vrt: Path,
    factor: int,
    level: int | None,
    overviews: Sequence[str] = (),
) -> None:
    """The VRT of the parts at one resolution (``level``: the parts' overview level)."""
    root = ET.fromstring(template)
    root.set("rasterXSize", str(-(-plan.width // factor)))
    root.set("rasterYSize", str(-(-plan.height // factor)))
    t = plan.affine
    geotransform = root.find("GeoTransform")
    if geotransform is None:
        geotransform = ET.SubElement(root, "GeoTransform")
    values = (t.c, t.a * factor, t.b * factor, t.f, t.d * factor, t.e * factor)
    geotransform.text = ", ".join(repr(float(v)) for v in values)
    width = str(-(-plan.width // factor))
    for band in root.iter("VRTRasterBand"):
        for child in list(band):
            if child.tag.endswith("Source") or child.tag == "Overview":
                band.remove(child)
        number = band.get("band", "1")
        for index, path in enumerate(parts):
            window = plan.window(index)
            size = {"xSize": width, "ySize": str(-(-int(window.height) // factor))}
            simple = ET.SubElement(band, "SimpleSource")
            name = ET.SubElement(simple, "SourceFilename", relativeToVRT="0")
            name.text = path
            if level is not None:
                options = ET.SubElement(simple, "OpenOptions")
                ET.SubElement(options, "OOI", key="OVERVIEW_LEVEL").text = str(level)
            ET.SubElement(simple, "SourceBand").text = number
            ET.SubElement(simple, "SrcRect", {"xOff": "0", "yOff": "0", **size})
            top = str(int(window.row_off) // factor)
            ET.SubElement(simple, "DstRect", {"xOff": "0", "yOff": top, **size})
        for path in overviews:
            overview = ET.SubElement(band, "Overview")
            ET.SubElement(overview, "SourceFilename", relativeToVRT="0").text = path
            ET.SubElement(overview, "SourceBand").text = number
    ET.ElementTree(root).write(vrt)


def assemble_cog(
    parts: Sequence[str],
    plan: SplitPlan,
    dst: Path,
    info: RasterInfo,
    profile: CogProfile,
    scratch: Path,
    *,
    gdal_env: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> CogResult:
    """The COG at ``dst`` from the windows' ``parts`` (GDAL paths), streamed by GDAL.

    GDAL's COG driver reads a VRT of the parts in tile order and writes the full
    resolution and the overviews (the parts' own, or computed from the parts), with
    every core; memory is its block cache. ``gdal_env``: settings for reading the
    parts.
    """
    vrt = scratch / "parts.vrt"
    report: Progress = progress or (lambda _f: None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(
        GDAL_NUM_THREADS="ALL_CPUS",
        GDAL_CACHEMAX=COG_CACHE_BYTES,
        **_temporary_overview_options(profile),
        **dict(gdal_env or {}),
    ):
        parts_vrt(parts, plan, vrt)
        with rasterio.open(vrt) as mosaic:
            _cog_copy(mosaic, dst, profile.creation_options(), report)
    vrt.unlink(missing_ok=True)
    report(1.0)
    return _checked(dst, info, profile, plan)


def write_tile(
    source: gdalsafe.UserFile,
    info: RasterInfo,
    profile: CogProfile,
    plan: SplitPlan,
    index: int,
    dst: Path,
    scratch: Path,
    progress: Progress,
) -> CogResult:
    """Tile ``index`` of a plan of tiles as a COG of its own at ``dst``, with overviews.

    Natively its pixels are the single-pass conversion's over the tile's window;
    reprojected, they are warped with the kernel scale of the whole grid, and differ from
    the single pass's by GDAL's approximate transformer (which interpolates over each
    call's rows and columns: a fraction of a pixel). It is written as a part, then
    copied to a COG by GDAL's driver, which makes the tile's overviews. Memory: one band
    of rows.
    """
    part = scratch / "tile-part.tif"
    write_part(source, info, profile, plan, index, part, lambda f: progress(f * 0.6))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with (
        rasterio.Env(
            GDAL_NUM_THREADS="ALL_CPUS",
            GDAL_CACHEMAX=COG_CACHE_BYTES,
            **_temporary_overview_options(profile),
        ),
        rasterio.open(part) as tile,
    ):
        _cog_copy(tile, dst, profile.creation_options(), lambda f: progress(0.6 + f * 0.4))
    part.unlink(missing_ok=True)
    return _checked(dst, info, profile, plan)


def _checked(dst: Path, info: RasterInfo, profile: CogProfile, plan: SplitPlan) -> CogResult:
    """Check the written COG (:func:`verify_cog`) and say what it is."""
    verify_cog(dst, info)
    with rasterio.open(dst) as out:
        return CogResult(
            tier=profile.tier,
            compression=profile.compress,
            crs=crs_string(out.crs),
            reprojected=plan.reproject,
            width=out.width,
            height=out.height,
            size_bytes=dst.stat().st_size,
            overviews=len(out.overviews(1)),
            alpha_added=out.count == info.count + 1,
        )
