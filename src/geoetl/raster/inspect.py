"""Validate a raster and detect its type, before any conversion."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from affine import Affine
from pydantic import BaseModel, Field
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoetl import gdalsafe
from geoetl.errors import InputError
from geoetl.raster.source import missing_companions

RasterType = Literal["rgb", "rgba", "dem", "categorical", "multispectral", "nir"]
DeclaredType = Literal["auto", "rgb", "rgba", "dem", "categorical", "multispectral", "nir"]
WIDE_DTYPES = {"float64", "int64", "uint64", "complex128"}


class RasterInfo(BaseModel):
    """What validation learned about a raster."""

    @property
    def has_band_metadata(self) -> bool:
        """True when bands carry descriptions or scale/offset that a warp would drop."""
        return (
            any(self.descriptions)
            or any(s != 1 for s in self.scales)
            or any(o != 0 for o in self.offsets)
        )

    driver: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str = Field(
        description="The CRS used: the file's, or input_crs when it has none or a local one."
    )
    crs_from_input: bool = False
    bounds: tuple[float, float, float, float]
    bounds_wgs84: tuple[float, float, float, float]
    nodata: float | None
    colorinterp: list[str]
    has_colormap: bool
    descriptions: list[str | None]
    scales: list[float]
    offsets: list[float]
    detected_type: RasterType
    raster_type: RasterType
    warnings: list[str] = Field(default_factory=list)


# A single-band integer raster without a colour table or attribute table is categorical
# when a sample of its pixels holds at most this many distinct values (land cover,
# masks, zones); a continuous image (a scan, a panchromatic band) holds many more.
MAX_CATEGORIES = 32
# The sample: up to SAMPLE_GRID x SAMPLE_GRID windows of SAMPLE_WINDOW pixels a side,
# spread over the raster at full resolution (overviews may have been averaged, which
# invents values), so a huge raster is never read whole.
SAMPLE_GRID = 4
SAMPLE_WINDOW = 256


def detect_type(
    count: int,
    dtype: str,
    colorinterp: list[str],
    has_colormap: bool,
    *,
    has_attribute_table: bool = False,
    distinct_values: int | None = None,
) -> RasterType:
    """The raster type by the SPEC's rules (bands, data type, colour interpretation).

    One band is ``categorical`` with a colour table or a thematic raster attribute table,
    or, for unsigned integers, when ``distinct_values`` (counted in a sample, see
    :func:`count_distinct`) is at most :data:`MAX_CATEGORIES`; other single-band
    rasters are continuous, which the type ``dem`` stands for (bilinear warp, average
    overviews, rescaled to their statistics when served).
    """
    if count == 1:
        if has_colormap or has_attribute_table:
            return "categorical"
        if np.issubdtype(np.dtype(dtype), np.floating) or np.issubdtype(
            np.dtype(dtype), np.signedinteger
        ):
            return "dem"
        if distinct_values is not None and distinct_values <= MAX_CATEGORIES:
            return "categorical"
        return "dem"
    if count == 3 and dtype == "uint8" and colorinterp[:3] == ["red", "green", "blue"]:
        return "rgb"
    if count == 4 and dtype == "uint8":
        return "rgba"
    return "multispectral"


def sample_windows(width: int, height: int) -> list[Window]:
    """Windows spread over a ``width`` x ``height`` raster, bounded in total size."""
    if width * height <= (SAMPLE_GRID * SAMPLE_WINDOW) ** 2:
        return [Window(0, 0, width, height)]
    windows = []
    w, h = min(width, SAMPLE_WINDOW), min(height, SAMPLE_WINDOW)
    for row in range(SAMPLE_GRID):
        for col in range(SAMPLE_GRID):
            x = (width - w) * col // max(1, SAMPLE_GRID - 1)
            y = (height - h) * row // max(1, SAMPLE_GRID - 1)
            windows.append(Window(x, y, w, h))
    return list(dict.fromkeys(windows))


def count_distinct(ds: DatasetReader, band: int = 1, limit: int = MAX_CATEGORIES) -> int:
    """How many distinct valid values a bounded sample of ``band`` holds (stops past ``limit``).

    The sample is :func:`sample_windows` read at full resolution; nodata is left out.
    When the sample holds no valid pixel, a decimated read of the whole band (nearest,
    at most 1024 px a side) is counted instead.
    """
    seen: set[float] = set()
    valid = 0
    nodata = ds.nodatavals[band - 1]
    for window in sample_windows(ds.width, ds.height):
        values = np.unique(ds.read(band, window=window))
        if nodata is not None:
            values = values[values != nodata]
        valid += values.size
        seen.update(values.tolist())
        if len(seen) > limit:
            return len(seen)
    if valid == 0:
        scale = max(1.0, max(ds.width, ds.height) / 1024)
        shape = (max(1, int(ds.height / scale)), max(1, int(ds.width / scale)))
        values = np.unique(ds.read(band, out_shape=shape, resampling=Resampling.nearest))
        if nodata is not None:
            values = values[values != nodata]
        seen.update(values.tolist())
    return len(seen)


def crs_string(crs: CRS) -> str:
    """``EPSG:n`` when PROJ identifies ``crs`` with an EPSG code, else its WKT.

    Identifying a CRS whose WKT carries no authority searches PROJ's database (about
    0.25 s each time for the olinda DEM's "UTM Zone 25, Southern Hemisphere"); one
    ingest asks for the same CRS in validate, cog and catalog, so the answer is kept.
    """
    return _identify(crs.to_wkt())


@functools.lru_cache(maxsize=64)
def _identify(wkt: str) -> str:
    return str(CRS.from_wkt(wkt).to_string())


def parse_crs(value: str, what: str) -> CRS:
    """A CRS from user input, or InputError saying what is wrong.

    PROJ parses the string (:func:`geoetl.gdalsafe.parse_crs`: no ``+init=``, grid paths
    or URLs) and GDAL gets its WKT: GDAL's own parser would open a file or fetch a URL
    it is given.
    """
    parsed = gdalsafe.parse_crs(value, what)
    try:
        return CRS.from_wkt(parsed.to_wkt())
    except CRSError as exc:
        raise InputError(
            f"{what} {value!r} is not a coordinate reference system GDAL knows ({exc}); "
            "use an authority code such as EPSG:4326"
        ) from None


def inspect_raster(
    path: str | gdalsafe.UserFile,
    name: str,
    *,
    input_crs: str | None = None,
    declared_type: DeclaredType = "auto",
    strict: bool = False,
) -> RasterInfo:
    """Open and check ``path``; InputError names the problem and how to fix it.

    ``path`` is a user file (checked by :mod:`geoetl.gdalsafe`: VRTs and other
    references, paths outside its folder and formats geoetl does not accept are refused).
    """
    with _open(path, name) as ds:
        warnings: list[str] = []
        if ds.count == 0:
            raise InputError(f"{name} has no raster bands (is it a vector file?)")
        _check_readable(ds, name)
        if ds.transform == Affine.identity() and not ds.gcps[0]:
            raise InputError(
                f"{name} has no georeferencing (no geotransform); add its world file "
                f"({_world_file_hint(path, name)}) next to it — geoetl ingest takes sidecar "
                "files along; an upload needs them together in a .zip — or georeference it first"
            )
        crs, from_input = _crs(ds.crs, input_crs, name, warnings)
        bounds = tuple(ds.bounds)
        wgs84 = _check_bounds(crs, bounds, name, from_input)
        dtype = ds.dtypes[0]
        if dtype in WIDE_DTYPES:
            warnings.append(
                f"{name} uses 64-bit {dtype} pixels, which doubles size and memory for "
                "little gain; convert to float32/int32 if the precision is not needed"
            )
        colorinterp = [ci.name for ci in ds.colorinterp]
        has_colormap = ds.colorinterp[0] == ColorInterp.palette
        detected = _detect(ds, path, dtype, colorinterp, has_colormap)
        chosen: RasterType = detected if declared_type == "auto" else declared_type
        if declared_type not in ("auto", detected):
            warnings.append(
                f"raster_type {declared_type!r} was declared but the file looks "
                f"{detected!r} ({ds.count} band(s) of {dtype})"
            )
        if strict and warnings:
            raise InputError("strict mode: " + "; ".join(warnings))
        return RasterInfo(
            driver=ds.driver,
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=dtype,
            crs=crs_string(crs),
            crs_from_input=from_input,
            bounds=bounds,
            bounds_wgs84=wgs84,
            nodata=ds.nodata,
            colorinterp=colorinterp,
            has_colormap=has_colormap,
            descriptions=list(ds.descriptions),
            scales=list(ds.scales),
            offsets=list(ds.offsets),
            detected_type=detected,
            raster_type=chosen,
            warnings=warnings,
        )


def _detect(
    ds: DatasetReader,
    path: str | gdalsafe.UserFile,
    dtype: str,
    colorinterp: list[str],
    has_colormap: bool,
) -> RasterType:
    """:func:`detect_type`, reading the attribute table and a sample only when needed."""
    if ds.count != 1 or has_colormap or not np.issubdtype(np.dtype(dtype), np.integer):
        return detect_type(ds.count, dtype, colorinterp, has_colormap)
    if _thematic_attribute_table(ds, path):
        return detect_type(ds.count, dtype, colorinterp, has_colormap, has_attribute_table=True)
    if np.issubdtype(np.dtype(dtype), np.signedinteger):
        return detect_type(ds.count, dtype, colorinterp, has_colormap)
    return detect_type(
        ds.count, dtype, colorinterp, has_colormap, distinct_values=count_distinct(ds)
    )


def _thematic_attribute_table(ds: DatasetReader, path: str | gdalsafe.UserFile) -> bool:
    """Whether band 1 has a thematic raster attribute table (rasterio does not read them).

    The file is opened again through GDAL's C API, with the driver that read it and
    inside the same :func:`geoetl.gdalsafe.safe_gdal` settings; what it touches is
    checked again.
    """
    from geoetl.raster import gdalapi

    if not gdalapi.available():
        return bool(ds.tags(1).get("LAYER_TYPE", "").lower() == "thematic")
    source = path if isinstance(path, gdalsafe.UserFile) else gdalsafe.user_file(path)
    with gdalapi.open_dataset(ds.name, ds.driver) as handle:
        gdalsafe.check_files(handle.files(), source)
        return handle.thematic_attribute_table(1)


@contextmanager
def _open(path: str | gdalsafe.UserFile, name: str) -> Iterator[DatasetReader]:
    with ExitStack() as stack:
        try:
            ds = stack.enter_context(gdalsafe.open_raster(path, name))
        except RasterioError as exc:
            missing = _missing_companions(path)
            if missing:
                raise InputError(
                    f"{name} cannot be read without {' and '.join(missing)}; keep "
                    f"{'them' if len(missing) > 1 else 'it'} next to the file (geoetl ingest "
                    "takes sidecar files along) or upload them together in a .zip"
                ) from None
            raise InputError(
                f"{name} is not a raster GDAL can read ({exc}); upload a GeoTIFF or another "
                f"raster format geoetl accepts ({', '.join(gdalsafe.RASTER_DRIVERS)})"
            ) from None
        yield ds


def _local_path(path: str | gdalsafe.UserFile) -> Path | None:
    if isinstance(path, gdalsafe.UserFile):
        return None if path.remote else Path(path.path)
    return Path(path)


def _missing_companions(path: str | gdalsafe.UserFile) -> list[str]:
    local = _local_path(path)
    if local is None or not local.parent.is_dir():
        return []
    return missing_companions(local.name, [p.name for p in local.parent.iterdir()])


def _world_file_hint(path: str | gdalsafe.UserFile, name: str) -> str:
    local = _local_path(path)
    base = local.name if local is not None else name
    stem, _, ext = base.rpartition(".")
    names = f"{stem}.{ext[0]}{ext[-1]}w or {stem}.wld" if stem and len(ext) >= 2 else "a .wld"
    return names


def _check_readable(ds: DatasetReader, name: str) -> None:
    # Headers of a truncated file still open; its last row of blocks does not read.
    try:
        ds.read(window=Window(0, ds.height - 1, ds.width, 1))
    except RasterioError as exc:
        raise InputError(
            f"{name} is truncated or corrupt: its pixels cannot be read ({exc}); "
            "upload the complete file again"
        ) from None


INPUT_CRS_HINT = "pass input_crs (geoetl ingest --input-crs) with the CRS the data is in"


def crs_label(crs: CRS) -> str:
    """A CRS named in one short phrase for messages: ``EPSG:32633`` or ``'site grid'``.

    Never its WKT or PROJJSON, which fill a screen and say nothing to a user.
    """
    code = crs_string(crs)
    if not code.lstrip().startswith(("{", "[")) and "[" not in code:
        return code
    name = _crs_name(crs.to_wkt())
    return f"{name!r}" if name and name.lower() != "unknown" else "a custom CRS without a code"


@functools.lru_cache(maxsize=64)
def _crs_name(wkt: str) -> str:
    from pyproj import CRS as ProjCRS
    from pyproj.exceptions import CRSError as ProjCRSError

    try:
        return str(ProjCRS.from_wkt(wkt).name or "")
    except ProjCRSError:
        return ""


@functools.lru_cache(maxsize=64)
def _is_engineering_wkt(wkt: str) -> bool:
    from pyproj import CRS as ProjCRS
    from pyproj.exceptions import CRSError as ProjCRSError

    if wkt.lstrip().upper().startswith(("LOCAL_CS", "ENGCRS", "ENGINEERINGCRS")):
        return True
    try:
        return bool(ProjCRS.from_wkt(wkt).is_engineering)
    except ProjCRSError:
        return False


def is_engineering(crs: CRS) -> bool:
    """True for a local (engineering) CRS: coordinates on a site grid, not on the Earth.

    Geographic and projected CRSs are answered by GDAL; only others are asked of PROJ
    (pyproj is not imported for them).
    """
    if crs.is_geographic or crs.is_projected:
        return False
    return _is_engineering_wkt(crs.to_wkt())


def _crs(
    file_crs: CRS | None, input_crs: str | None, name: str, warnings: list[str]
) -> tuple[CRS, bool]:
    """The CRS to use and whether it came from ``input_crs``.

    ``input_crs`` is used when the file has no CRS, or only a local (engineering) one,
    which cannot be placed on the Earth: then the option wins, with a warning. A file
    with a real CRS keeps it (a differing ``input_crs`` is a warning).
    """
    if file_crs is not None and is_engineering(file_crs):
        local = crs_label(file_crs)
        if not input_crs:
            raise InputError(
                f"{name} has a local (engineering) coordinate system ({local}), which cannot "
                f"be placed on a map; {INPUT_CRS_HINT} (for example EPSG:32633)"
            )
        chosen = parse_crs(input_crs, "input_crs")
        warnings.append(
            f"input_crs {crs_label(chosen)} used instead of the local (engineering) "
            f"coordinate system {local} that {name} declares"
        )
        return chosen, True
    if file_crs is not None:
        if input_crs and parse_crs(input_crs, "input_crs") != file_crs:
            warnings.append(f"input_crs {input_crs} ignored: {name} declares {crs_label(file_crs)}")
        return file_crs, False
    if input_crs:
        return parse_crs(input_crs, "input_crs"), True
    raise InputError(
        f"{name} has no coordinate reference system; pass input_crs "
        "(geoetl ingest --input-crs; for example EPSG:4326) with the CRS the data is in"
    )


def _check_bounds(
    crs: CRS, bounds: tuple[float, ...], name: str, from_input: bool = False
) -> tuple[float, float, float, float]:
    fix = (
        "the CRS is probably wrong; check input_crs (geoetl ingest --input-crs)"
        if from_input
        else "the CRS is probably wrong (pass input_crs if the file has none)"
    )
    shown = tuple(round(b, 3) for b in bounds)
    try:
        west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds)
    except Exception:
        # PROJ's message quotes the CRS as PROJJSON: not shown.
        raise InputError(
            f"{name}: bounds {shown} in {crs_label(crs)} cannot be placed on Earth (PROJ "
            f"knows no way from that CRS to longitude/latitude); {fix}"
        ) from None
    values = (west, south, east, north)
    if (
        not all(math.isfinite(v) for v in values)
        or south < -90.5
        or north > 90.5
        or west < -180.5
        or east > 180.5
    ):
        raise InputError(f"{name}: bounds {shown} are not valid in {crs_label(crs)}; {fix}")
    return values
