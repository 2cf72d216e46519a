"""Validate a raster and detect its type, before any conversion."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Literal

import numpy as np
from affine import Affine
from pydantic import BaseModel, Field
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import CRSError, RasterioError
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoetl import gdalsafe
from geoetl.errors import InputError

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
    crs: str = Field(description="The CRS used: the file's, or input_crs when it has none.")
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


def detect_type(count: int, dtype: str, colorinterp: list[str], has_colormap: bool) -> RasterType:
    """The raster type by the SPEC's rules (bands, data type, colour interpretation)."""
    if count == 1:
        if has_colormap:
            return "categorical"
        if np.issubdtype(np.dtype(dtype), np.floating) or np.issubdtype(
            np.dtype(dtype), np.signedinteger
        ):
            return "dem"
        return "categorical"
    if count == 3 and dtype == "uint8" and colorinterp[:3] == ["red", "green", "blue"]:
        return "rgb"
    if count == 4 and dtype == "uint8":
        return "rgba"
    return "multispectral"


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
                f"{name} has no georeferencing (no geotransform); "
                "add a world file or georeference it first"
            )
        crs, from_input = _crs(ds.crs, input_crs, name, warnings)
        bounds = tuple(ds.bounds)
        wgs84 = _check_bounds(crs, bounds, name)
        dtype = ds.dtypes[0]
        if dtype in WIDE_DTYPES:
            warnings.append(
                f"{name} uses 64-bit {dtype} pixels, which doubles size and memory for "
                "little gain; convert to float32/int32 if the precision is not needed"
            )
        colorinterp = [ci.name for ci in ds.colorinterp]
        has_colormap = ds.colorinterp[0] == ColorInterp.palette
        detected = detect_type(ds.count, dtype, colorinterp, has_colormap)
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


@contextmanager
def _open(path: str | gdalsafe.UserFile, name: str) -> Iterator[DatasetReader]:
    with ExitStack() as stack:
        try:
            ds = stack.enter_context(gdalsafe.open_raster(path, name))
        except RasterioError as exc:
            raise InputError(
                f"{name} is not a raster GDAL can read ({exc}); upload a GeoTIFF or another "
                f"raster format geoetl accepts ({', '.join(gdalsafe.RASTER_DRIVERS)})"
            ) from None
        yield ds


def _check_readable(ds: DatasetReader, name: str) -> None:
    # Headers of a truncated file still open; its last row of blocks does not read.
    try:
        ds.read(window=Window(0, ds.height - 1, ds.width, 1))
    except RasterioError as exc:
        raise InputError(
            f"{name} is truncated or corrupt: its pixels cannot be read ({exc}); "
            "upload the complete file again"
        ) from None


def _crs(
    file_crs: CRS | None, input_crs: str | None, name: str, warnings: list[str]
) -> tuple[CRS, bool]:
    if file_crs is not None:
        if input_crs and parse_crs(input_crs, "input_crs") != file_crs:
            warnings.append(f"input_crs {input_crs} ignored: {name} declares {file_crs}")
        return file_crs, False
    if input_crs:
        return parse_crs(input_crs, "input_crs"), True
    raise InputError(
        f"{name} has no coordinate reference system; pass input_crs "
        "(for example EPSG:4326) with the CRS the data is in"
    )


def _check_bounds(
    crs: CRS, bounds: tuple[float, ...], name: str
) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds)
    except Exception as exc:
        raise InputError(
            f"{name}: bounds {bounds} cannot be placed on Earth in {crs}: {exc}"
        ) from None
    values = (west, south, east, north)
    if (
        not all(math.isfinite(v) for v in values)
        or south < -90.5
        or north > 90.5
        or west < -180.5
        or east > 180.5
    ):
        raise InputError(
            f"{name}: bounds {tuple(round(b, 3) for b in bounds)} are not valid in {crs}; "
            "the CRS is probably wrong (pass input_crs if the file has none)"
        )
    return values
