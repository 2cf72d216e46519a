"""NetCDF and HDF5 inputs: one variable, its time steps as bands or one at a time.

A NetCDF or HDF5 file holds many variables (subdatasets in GDAL's terms), each an array
over latitude/longitude (or a projected grid) and often time. The user names one
(``variable``); :func:`geoetl.gdalsafe.open_variable` checks the name against the file's
own list and opens it by a path the platform builds. The chosen variable (or one of its
time steps, for ``time_as=items``) is then copied into a plain GeoTIFF in scratch
(:func:`extract`) that the rest of the raster pipeline reads like any other upload:

* values as stored (packed integers stay packed), with the variable's ``scale_factor``
  and ``add_offset`` as the bands' scale and offset, ``_FillValue``/``missing_value`` as
  nodata, ``units`` as the bands' unit, ``long_name``/``standard_name`` as band metadata;
* north-up, whatever the file's row order (GDAL flips bottom-up grids);
* the CRS from the variable's ``grid_mapping``, or EPSG:4326 when its axes are CF
  latitude/longitude without one (GDAL reads the grid from the axes but names no CRS);
* each band's time (decoded from the CF time axis with its calendar by ``cftime``) as
  the band's description and ``time`` metadata, and the time range as the dataset's
  ``time_coverage_start``/``time_coverage_end`` (the ACDD names), which the COG keeps and
  the STAC item turns into its datetimes (:mod:`geoetl.raster.stac`).

The copy is written block by block, so memory stays bounded; it lives in the job's
shared download folder and is made once per machine.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window

from geoetl import gdalsafe
from geoetl.errors import InputError

# The first bytes of a NetCDF classic (CDF-1, CDF-2 and CDF-5) file; NetCDF-4 is HDF5.
NETCDF_CLASSIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
# "<unit> since <date>": a CF time axis.
CF_TIME_UNITS = re.compile(r"^\s*[A-Za-z]+\s+since\s+\S")
# Calendars whose dates are dates of the real (proleptic Gregorian) calendar; others
# (noleap, 360_day, julian, …) keep their own text but give the STAC item no datetime.
REAL_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian"})
# Bytes of pixels (one band) copied per read/write.
COPY_CHUNK_BYTES = 32 * 1024 * 1024
# GDAL's block cache during the copy. Its default (5% of RAM) fills with blocks read and
# written once: copying 8 x 3000 x 3000 int16 peaked at 556 MiB RSS with it.
COPY_CACHE_BYTES = 64 * 1024 * 1024
# Where the copies are kept, under the folder given to extract().
VARIABLES_FOLDER = "variables"


@dataclass(frozen=True)
class TimeAxis:
    """The time of each band of a variable."""

    dimension: str
    calendar: str
    texts: list[str]
    """ISO 8601 per band (with ``Z`` for real calendars)."""
    datetimes: list[datetime | None]
    """Per band: the UTC datetime, or None when the calendar has no real dates."""

    def stamp(self, index: int) -> str:
        """The time of band ``index`` (0-based) for an item id: ``20200101T000000``."""
        return re.sub(r"[^0-9T]", "", self.texts[index])[:15]


def is_container(source: gdalsafe.UserFile) -> bool:
    """Whether the user file is a NetCDF (classic or NetCDF-4) or HDF5 file."""
    if source.remote:
        return False
    with open(source.path, "rb") as fh:
        head = fh.read(gdalsafe.SNIFF_BYTES)
    return head.startswith(NETCDF_CLASSIC) or gdalsafe.is_hdf5(head)


def _bounds_variables(tags: dict[str, str]) -> set[str]:
    """Variables that are the cell bounds of another (``time#bounds=time_bnds``)."""
    return {value for key, value in tags.items() if key.endswith("#bounds")}


def choose_variable(
    container: DatasetReader, source: gdalsafe.UserFile, variable: str | None
) -> str | None:
    """The variable to read: ``variable`` checked, or the file's only data variable.

    None when GDAL lists no variables because the file holds one, opened as the file
    itself. InputError, listing the variables, when there are several and none was
    named, or when the named one is not in the file.
    """
    listed = gdalsafe.variables(container)
    if not listed and container.count > 0:
        own = _own_variables(container, source)
        if variable is not None and gdalsafe.check_variable_name(variable) not in own:
            raise InputError(
                f"{source.name} has no variable {variable[:80]!r}; its variables are: "
                f"{', '.join(own[:30]) or 'none GDAL can read as a raster'}"
            )
        return None
    if variable is not None:
        gdalsafe.variable_path(container, source, variable)  # checked against the list
        return gdalsafe.check_variable_name(variable)
    bounds = _bounds_variables(container.tags())
    data = [v for v in listed if v.dimensions >= 2 and v.name not in bounds]
    if len(data) == 1:
        return data[0].name
    if not data:
        raise InputError(f"{source.name} holds no variable with two or more dimensions")
    names = ", ".join(v.name for v in data[:30])
    raise InputError(
        f"{source.name} holds several variables ({names}); choose one with variable "
        "(geoetl ingest --variable NAME)"
    )


def _own_variables(container: DatasetReader, source: gdalsafe.UserFile) -> list[str]:
    """The variable(s) of a file GDAL opened as one variable (it lists none)."""
    own = container.tags(1).get("NETCDF_VARNAME")
    if own:
        return [own]
    import h5py  # type: ignore[import-untyped]

    # HDF5Image: the file's one dataset of two or more dimensions (the file was walked
    # by gdalsafe.check_hdf5 already: no link leads out of it).
    found: list[str] = []
    with h5py.File(source.path, "r") as handle:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 2:
                found.append(name.replace(" ", "_"))  # as GDAL names HDF5 subdatasets

        handle.visititems(visit)
    return found


@contextmanager
def open_chosen(
    source: gdalsafe.UserFile, variable: str | None
) -> Iterator[tuple[DatasetReader, str]]:
    """The chosen variable of a NetCDF/HDF5 user file, open, and its name."""
    with gdalsafe.open_container(source) as container:
        name = choose_variable(container, source, variable)
        if name is None:
            own = _own_variables(container, source)
            yield container, own[0] if len(own) == 1 else ""
            return
    with gdalsafe.open_variable(source, name) as ds:
        yield ds, name


def time_axis(ds: DatasetReader) -> TimeAxis | None:
    """The CF time of each band (NetCDF: an extra dimension with "… since …" units)."""
    tags = ds.tags()
    extra = [d.strip() for d in tags.get("NETCDF_DIM_EXTRA", "").strip("{}").split(",")]
    for dim in filter(None, extra):
        units = tags.get(f"{dim}#units", "")
        if not CF_TIME_UNITS.match(units):
            continue
        calendar = tags.get(f"{dim}#calendar", "standard").strip().lower() or "standard"
        try:
            values = [float(ds.tags(band)[f"NETCDF_DIM_{dim}"]) for band in ds.indexes]
        except (KeyError, ValueError):
            return None
        return decode_times(dim, values, units, calendar)
    return None


def decode_times(dim: str, values: list[float], units: str, calendar: str) -> TimeAxis:
    """CF time values (``units`` "days since 2020-01-01", ``calendar``) as a TimeAxis."""
    import cftime  # type: ignore[import-untyped]

    try:
        dates = cftime.num2date(
            np.asarray(values), units, calendar=calendar, only_use_cftime_datetimes=True
        )
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"the time axis {dim!r} ({units!r}, calendar {calendar!r}) cannot be decoded "
            f"({exc}); fix its units attribute"
        ) from None
    texts: list[str] = []
    real: list[datetime | None] = []
    for date in np.atleast_1d(dates):
        when = _real(date, calendar)
        real.append(when)
        text = (
            f"{date.year:04d}-{date.month:02d}-{date.day:02d}T"
            f"{date.hour:02d}:{date.minute:02d}:{date.second:02d}"
        )
        texts.append(text + "Z" if when is not None else text)
    return TimeAxis(dim, calendar, texts, real)


def _real(date: object, calendar: str) -> datetime | None:
    if calendar not in REAL_CALENDARS:
        return None
    y, mo, d, h, mi, s = (
        int(getattr(date, f)) for f in ("year", "month", "day", "hour", "minute", "second")
    )
    when = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    # "standard" dates before the Gregorian reform are Julian-calendar dates.
    if calendar != "proleptic_gregorian" and when < datetime(1582, 10, 15, tzinfo=UTC):
        return None
    return when


def time_steps(source: gdalsafe.UserFile, variable: str | None) -> tuple[str, TimeAxis]:
    """The chosen variable's name and its time axis; InputError when it has none."""
    with open_chosen(source, variable) as (ds, name):
        axis = time_axis(ds)
        if axis is None:
            raise InputError(
                f"variable {name} of {source.name} has no CF time axis (a dimension whose "
                "units read '… since …'); publish it with time_as=bands"
            )
        if len({*axis.texts}) != len(axis.texts):
            raise InputError(
                f"variable {name} of {source.name} has another dimension besides time "
                f"({ds.tags().get('NETCDF_DIM_EXTRA')}): its time steps repeat; publish it "
                "with time_as=bands"
            )
        return name, axis


def _latlon_axes(tags: dict[str, str]) -> bool:
    """Whether the file has CF latitude and longitude axes (by standard_name or units)."""
    values = {
        v.strip().lower()
        for k, v in tags.items()
        if k.endswith(("#standard_name", "#units", "#axis"))
    }
    has_lat = bool(values & {"latitude", "degrees_north", "degree_north", "degrees_n"})
    has_lon = bool(values & {"longitude", "degrees_east", "degree_east", "degrees_e"})
    return has_lat and has_lon


def _label(source: gdalsafe.UserFile, name: str, step: str | None) -> str:
    where = f"{source.name} (variable {name}" if name else f"{source.name} ("
    return f"{where}, time {step})" if step else f"{where})"


def extract(
    source: gdalsafe.UserFile,
    variable: str | None,
    time_index: int | None,
    folder: Path,
) -> gdalsafe.UserFile:
    """The chosen variable (all bands, or the band of time step ``time_index``) as a GeoTIFF.

    Written once into ``folder/variables`` (atomically: tasks on one machine share it)
    and returned as a checked user file named after the source, variable and time.
    """
    import rasterio

    out_dir = folder / VARIABLES_FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_CACHEMAX=COPY_CACHE_BYTES), open_chosen(source, variable) as (ds, name):
        axis = time_axis(ds)
        if time_index is not None and not 0 <= time_index < ds.count:
            raise InputError(
                f"variable {name} of {source.name} has {ds.count} time steps, not {time_index + 1}"
            )
        step = axis.texts[time_index] if axis and time_index is not None else None
        label = _label(source, name, step)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name or "data")
        out = out_dir / f"{stem}_{'all' if time_index is None else f't{time_index}'}.tif"
        if not out.exists():
            _write(ds, name, axis, time_index, out, label, source)
    return gdalsafe.user_file(out, label, folder=out_dir)


def _write(
    ds: DatasetReader,
    name: str,
    axis: TimeAxis | None,
    time_index: int | None,
    out: Path,
    label: str,
    source: gdalsafe.UserFile,
) -> None:
    import rasterio

    if ds.transform == Affine.identity() and not ds.gcps[0]:
        kind = "HDF5 dataset" if ds.driver.startswith("HDF5") else "NetCDF variable"
        raise InputError(
            f"{label}: GDAL finds no georeferencing for this {kind} (no coordinate axes, "
            "geotransform or ground control points it understands); geoetl publishes "
            "NetCDF-CF variables with latitude/longitude or projected x/y axes, and HDF5 "
            "data GDAL can place on the map — convert it to NetCDF-CF or GeoTIFF first"
        )
    tags = ds.tags()
    crs = ds.crs
    if crs is None and not ds.gcps[0] and _latlon_axes(tags):
        crs = rasterio.crs.CRS.from_epsg(4326)
    if crs is not None and crs.is_geographic and not ds.gcps[0] and ds.bounds.right > 180.5:
        raise InputError(
            f"{label}: its longitudes run from {ds.bounds.left:g} to {ds.bounds.right:g}, "
            "and geoetl publishes longitudes from -180 to 180; shift the grid "
            "first (for example cdo sellonlatbox,-180,180,-90,90, or xarray's roll)"
        )
    bands = [time_index + 1] if time_index is not None else list(ds.indexes)
    profile = {
        "driver": "GTiff",
        "width": ds.width,
        "height": ds.height,
        "count": len(bands),
        "dtype": ds.dtypes[0],
        "nodata": ds.nodata,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "ZSTD",
        "zstd_level": 1,
        "BIGTIFF": "IF_SAFER",
    }
    if ds.gcps[0]:
        profile.update(gcps=ds.gcps[0], crs=ds.gcps[1] or crs)
    else:
        profile.update(transform=ds.transform, crs=crs)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            _copy_pixels(ds, dst, bands)
            _copy_metadata(ds, dst, name, axis, bands, source)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_pixels(ds: DatasetReader, dst: DatasetWriter, bands: list[int]) -> None:
    rows = max(1, COPY_CHUNK_BYTES // max(1, ds.width * np.dtype(ds.dtypes[0]).itemsize))
    for out_band, band in enumerate(bands, start=1):
        for top in range(0, ds.height, rows):
            window = Window(0, top, ds.width, min(rows, ds.height - top))
            dst.write(ds.read(band, window=window), out_band, window=window)


# Band metadata the GeoTIFF holds in its own fields (nodata, scale, offset).
_NATIVE = {"_FillValue", "missing_value", "scale_factor", "add_offset"}


def _copy_metadata(
    ds: DatasetReader,
    dst: DatasetWriter,
    name: str,
    axis: TimeAxis | None,
    bands: list[int],
    source: gdalsafe.UserFile,
) -> None:
    extra: dict[str, str] = {"variable": name, "source_file": source.name}
    if axis is not None:
        extra["time_calendar"] = axis.calendar
        chosen = [axis.datetimes[b - 1] for b in bands]
        if all(chosen):
            reals = [w for w in chosen if w is not None]
            first, last = min(reals), max(reals)
            extra["time_coverage_start"] = first.isoformat().replace("+00:00", "Z")
            extra["time_coverage_end"] = last.isoformat().replace("+00:00", "Z")
    dst.update_tags(**extra)
    units = list(ds.units)
    for out_band, band in enumerate(bands, start=1):
        band_tags = {k: v for k, v in ds.tags(band).items() if k not in _NATIVE}
        if axis is not None:
            band_tags["time"] = axis.texts[band - 1]
        dst.update_tags(out_band, **band_tags)
        unit = units[band - 1] or band_tags.get("units")
        if unit:
            dst.set_band_unit(out_band, unit)
        description = (
            axis.texts[band - 1]
            if axis is not None
            else band_tags.get("long_name") or band_tags.get("standard_name") or name
        )
        if description:
            dst.set_band_description(out_band, description)
    dst.scales = tuple(ds.scales[b - 1] for b in bands)
    dst.offsets = tuple(ds.offsets[b - 1] for b in bands)
