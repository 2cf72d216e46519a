"""The few GDAL C functions rasterio does not expose, called on rasterio's own GDAL.

rasterio 1.4 has no progress callback on ``rasterio.shutil.copy`` (it passes NULL to
``GDALCreateCopy``), so a COG write cannot be stopped once started, and it does not read
raster attribute tables. This module binds those functions with :mod:`ctypes` in the
GDAL library rasterio's extension modules are linked to (the symbols are looked up
through one of them, so the library is the same one, with rasterio's drivers and its
thread-local configuration: :func:`geoetl.gdalsafe.safe_gdal` holds for these calls
too). That is checked when the library is first bound: a configuration option set with
``rasterio.Env`` must be visible here, else :func:`available` is False and callers use
rasterio alone.

Datasets are opened by name with an allow-list of one driver: callers reopen what
rasterio opened (through :mod:`geoetl.gdalsafe` for user files) with the driver that
read it, and check :meth:`Dataset.files` again.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from geoetl.errors import GeoEtlError

# GDALOpenEx flags (gdal.h).
_OF_RASTER = 0x02
_OF_VERBOSE_ERROR = 0x40
# GDALRATTableType (gdal.h).
_GRTT_THEMATIC = 0

_PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p)

Progress = Callable[[float], None]
"""Called with the fraction done (0..1); raising stops the GDAL operation."""


class GdalCallError(GeoEtlError):
    """A GDAL call made here failed; the message is GDAL's."""


def _signatures(lib: ctypes.CDLL) -> None:
    p, s, i, u = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint
    strings = ctypes.POINTER(ctypes.c_char_p)
    table: dict[str, tuple[Any, list[Any]]] = {
        "GDALOpenEx": (p, [s, u, strings, strings, strings]),
        "GDALClose": (i, [p]),
        "GDALGetDriverByName": (p, [s]),
        "GDALCreateCopy": (p, [p, s, p, i, strings, _PROGRESS, p]),
        "GDALGetFileList": (strings, [p]),
        "CSLDestroy": (None, [strings]),
        "GDALGetRasterBand": (p, [p, i]),
        "GDALGetDefaultRAT": (p, [p]),
        "GDALRATGetRowCount": (i, [p]),
        "GDALRATGetTableType": (i, [p]),
        "CPLGetLastErrorMsg": (s, []),
        "CPLErrorReset": (None, []),
        "CPLGetConfigOption": (s, [s, s]),
        "GDALVersionInfo": (s, [s]),
    }
    for name, (restype, argtypes) in table.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


def _same_gdal_as_rasterio(lib: ctypes.CDLL) -> bool:
    """True when ``lib`` sees what ``rasterio.Env`` sets: the very same GDAL."""
    import rasterio

    key = "GEOETL_GDALAPI_PROBE"
    value = uuid.uuid4().hex
    with rasterio.Env(**{key: value}):
        seen = lib.CPLGetConfigOption(key.encode(), None)
    return seen is not None and seen.decode() == value


@functools.cache
def _library() -> ctypes.CDLL | None:
    import rasterio
    import rasterio._io

    try:
        # dlsym through an extension module finds the GDAL it is linked to.
        lib = ctypes.CDLL(rasterio._io.__file__)
        _signatures(lib)
    except (OSError, AttributeError):
        return None
    version = lib.GDALVersionInfo(b"RELEASE_NAME")
    if version is None or version.decode() != rasterio.__gdal_version__:
        return None
    return lib if _same_gdal_as_rasterio(lib) else None


def available() -> bool:
    """Whether rasterio's GDAL could be bound (else callers fall back to rasterio alone)."""
    return _library() is not None


def _lib() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise GdalCallError("rasterio's GDAL library cannot be called directly here")
    return lib


def _strings(items: Sequence[str]) -> Any:
    """A NULL-terminated ``char**`` (kept alive by the caller while GDAL uses it)."""
    array = (ctypes.c_char_p * (len(items) + 1))()
    for index, item in enumerate(items):
        array[index] = item.encode()
    array[len(items)] = None
    return array


def _last_error(default: str) -> str:
    message = _lib().CPLGetLastErrorMsg()
    text = message.decode(errors="replace") if message else ""
    return text or default


class Dataset:
    """A GDAL dataset handle opened here (read-only); close it with :func:`open_dataset`."""

    def __init__(self, handle: int, name: str) -> None:
        self.handle = handle
        self.name = name

    def files(self) -> list[str]:
        """The files GDAL reports the dataset reads (GDALGetFileList)."""
        lib = _lib()
        listed = lib.GDALGetFileList(self.handle)
        found: list[str] = []
        if listed:
            index = 0
            while listed[index] is not None:
                found.append(listed[index].decode(errors="surrogateescape"))
                index += 1
            lib.CSLDestroy(listed)
        return found

    def thematic_attribute_table(self, band: int = 1) -> bool:
        """True when ``band`` has a thematic raster attribute table with rows (classes)."""
        lib = _lib()
        hband = lib.GDALGetRasterBand(self.handle, band)
        if not hband:
            return False
        rat = lib.GDALGetDefaultRAT(hband)
        if not rat:
            return False
        return bool(
            lib.GDALRATGetRowCount(rat) > 0 and lib.GDALRATGetTableType(rat) == _GRTT_THEMATIC
        )


@contextmanager
def open_dataset(name: str, driver: str) -> Iterator[Dataset]:
    """Open ``name`` read-only with only ``driver`` allowed; GdalCallError if it fails."""
    lib = _lib()
    allowed = _strings([driver])
    lib.CPLErrorReset()
    handle = lib.GDALOpenEx(name.encode(), _OF_RASTER | _OF_VERBOSE_ERROR, allowed, None, None)
    if not handle:
        raise GdalCallError(_last_error(f"GDAL cannot open {Path(name).name}"))
    try:
        yield Dataset(handle, name)
    finally:
        lib.GDALClose(handle)


def create_copy(
    source: Dataset,
    dst: Path,
    driver: str,
    options: dict[str, str],
    progress: Progress | None = None,
) -> None:
    """``GDALCreateCopy`` of ``source`` to ``dst`` with ``driver`` and creation ``options``.

    ``progress`` is called with the fraction done as GDAL reports it; an exception it
    raises makes GDAL stop (the callback answers FALSE), the partial output is removed
    and the exception propagates from here. Other failures are GdalCallError.
    """
    lib = _lib()
    hdriver = lib.GDALGetDriverByName(driver.encode())
    if not hdriver:
        raise GdalCallError(f"GDAL has no {driver} driver")
    raised: list[BaseException] = []
    lock = threading.Lock()

    def report(fraction: float, _message: bytes | None, _data: int | None) -> int:
        if raised:
            return 0
        if progress is None:
            return 1
        try:
            with lock:
                progress(min(max(fraction, 0.0), 1.0))
        except BaseException as exc:  # handed back to the caller after GDAL stops
            raised.append(exc)
            return 0
        return 1

    callback = _PROGRESS(report)
    creation = _strings([f"{key}={value}" for key, value in options.items()])
    lib.CPLErrorReset()
    out = lib.GDALCreateCopy(hdriver, os.fsencode(dst), source.handle, 1, creation, callback, None)
    closed = lib.GDALClose(out) if out else 0  # CPLErr: 0 when the file was flushed
    if raised or not out or closed != 0:
        message = _last_error(f"GDAL could not write {dst.name}")
        dst.unlink(missing_ok=True)
        if raised:
            raise raised[0]
        raise GdalCallError(message)
