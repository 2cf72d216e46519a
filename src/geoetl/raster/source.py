"""Where a raster's files are: its sidecar files, the raster inside a zip, its bronze copy.

A raster is often more than one file: a world file (``.tfw``, ``.wld``, ``.pgw``, …)
holds its georeferencing, ``.aux.xml`` its CRS, statistics or attribute table, ``.ovr``
its overviews, ``.msk`` its mask, and some formats are a header and a data file
(RRASTER ``.grd``/``.gri``, ENVI and EHdr ``.hdr``). Those files travel with the raster:
``geoetl ingest FILE`` stores the ones found next to it in the same bronze folder (as a
shapefile's), and an upload brings them in a zip, unpacked here by
:func:`geoetl.archive.safe_extract`. GDAL finds them next to the raster; every one of
them is checked by :mod:`geoetl.gdalsafe` before GDAL opens the raster.

Pure Python: ``geoetl ingest`` imports this before GDAL is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from geoetl import gdalsafe
from geoetl.errors import InputError

if TYPE_CHECKING:
    from geoetl.storage.objectstore import ObjectStore

# Never ".vrt": a VRT reads other files and URLs, and is refused (geoetl.gdalsafe).
RASTER_SUFFIXES = frozenset(
    {
        ".tif",
        ".tiff",
        ".jp2",
        ".img",
        ".nc",
        ".nc4",
        ".h5",
        ".hdf5",
        ".he5",
        ".png",
        ".jpg",
        ".jpeg",
        ".webp",
        ".gif",
        ".bmp",
        ".grd",
        ".bil",
        ".bip",
        ".bsq",
        ".asc",
        ".hgt",
        ".dt0",
        ".dt1",
        ".dt2",
        ".sdat",
        ".ers",
        ".grb",
        ".grb2",
        ".grib",
        ".grib2",
    }
)
# The datasets the vector pipeline looks for (one list, in gdalsafe, which both
# pipelines import anyway). A zip holding one of them is a vector upload.
VECTOR_SUFFIXES = gdalsafe.VECTOR_SUFFIXES
# A format's second file, named after the first: RRASTER data (.gri) of a .grd header,
# the SAGA header (.sgrd) of .sdat data, ER Mapper data (no suffix) of an .ers header.
COMPANIONS: dict[str, tuple[str, ...]] = {".grd": (".gri",), ".sdat": (".sgrd",), ".ers": ("",)}
# What a raster of that suffix cannot be read without, for a clearer error.
REQUIRED_COMPANIONS: dict[str, tuple[str, ...]] = {
    ".grd": (".gri",),
    ".bil": (".hdr",),
    ".bip": (".hdr",),
    ".bsq": (".hdr",),
    ".sdat": (".sgrd",),
}


def sidecar_names(name: str) -> set[str]:
    """The names (lowercase) of files GDAL may read along with the raster ``name``.

    World files (``x.tfw``/``x.tifw``/``x.wld`` for ``x.tif``: first and last letter of
    the suffix and ``w``, or the suffix and ``w``), ``x.tif.aux.xml``, ``x.aux``,
    ``x.tif.ovr``, ``x.tif.msk``, ``x.prj``, ENVI/EHdr headers (``x.hdr``,
    ``x.tif.hdr``), EHdr ``x.clr``/``x.stx``, an ArcGIS attribute table
    (``x.tif.vat.dbf``) and the format's companion (:data:`COMPANIONS`).
    """
    lower = name.lower()
    stem, dot, ext = lower.rpartition(".")
    if not dot:
        stem, ext = lower, ""
    names = {
        f"{lower}.aux.xml",
        f"{lower}.ovr",
        f"{lower}.msk",
        f"{lower}.hdr",
        f"{lower}.vat.dbf",
        f"{stem}.aux",
        f"{stem}.wld",
        f"{stem}.prj",
        f"{stem}.hdr",
        f"{stem}.clr",
        f"{stem}.stx",
    }
    if len(ext) >= 2:
        names |= {f"{stem}.{ext[0]}{ext[-1]}w", f"{stem}.{ext}w"}
    names |= {f"{stem}{companion}" for companion in COMPANIONS.get(f".{ext}", ())}
    names.discard(lower)
    return names


def find_sidecars(path: Path) -> list[Path]:
    """The sidecar files of the raster ``path`` that sit next to it (any letter case)."""
    wanted = sidecar_names(path.name)
    found = [
        entry
        for entry in sorted(path.parent.iterdir())
        if entry.name.lower() in wanted and entry.is_file() and entry != path
    ]
    return found


def takes_sidecars(name: str) -> bool:
    """Whether ``geoetl ingest`` looks for raster sidecar files next to ``name``.

    Not for archives, shapefiles (stored with their own sidecars) and other vector files.
    """
    suffix = PurePosixPath(name).suffix.lower()
    return suffix not in VECTOR_SUFFIXES and suffix != ".zip"


def raster_candidates(names: Iterable[str]) -> list[str]:
    """The rasters among an archive's file names, each listed once without its sidecars.

    A name with a raster suffix is one; so is any file with an ENVI/EHdr header of its
    name (``x.dat`` with ``x.hdr``). Sidecars of a raster found are not rasters.
    """
    all_names = sorted(set(names))
    lowered = {n.lower(): n for n in all_names}
    found = [n for n in all_names if PurePosixPath(n).suffix.lower() in RASTER_SUFFIXES]
    for name in all_names:
        path = PurePosixPath(name)
        lower = name.lower()
        if path.suffix.lower() == ".hdr" or lower.endswith((".aux.xml", ".ovr", ".msk")):
            continue
        header = (str(path.with_suffix("")) if path.suffix else name) + ".hdr"
        if (header.lower() in lowered or f"{lower}.hdr" in lowered) and name not in found:
            found.append(name)
    sidecars = {
        str(PurePosixPath(n.lower()).parent / s)
        for n in found
        for s in sidecar_names(PurePosixPath(n).name)
    }
    return sorted(n for n in found if n.lower() not in sidecars)


def holds_raster(names: list[str]) -> bool:
    """Whether an archive with these file names is a raster upload: rasters, no vector data."""
    if any(PurePosixPath(n).suffix.lower() in VECTOR_SUFFIXES for n in names):
        return False
    if any(".gdb/" in n.lower() for n in names):
        return False
    return bool(raster_candidates(names))


def find_raster(files: list[Path], folder: Path, archive: str) -> Path:
    """The one raster among the files unpacked from ``archive`` into ``folder``."""
    relative = {str(PurePosixPath(*f.relative_to(folder).parts)): f for f in files}
    candidates = raster_candidates(relative)
    if not candidates:
        raise InputError(
            f"{archive} holds no raster geoetl reads (looked for "
            f"{', '.join(sorted(RASTER_SUFFIXES))}, or a file with an ENVI .hdr)"
        )
    if len(candidates) > 1:
        raise InputError(
            f"{archive} holds several rasters ({', '.join(candidates[:10])}); upload one "
            "raster (with its sidecar files) per archive"
        )
    return relative[candidates[0]]


def bronze_raster(
    objects: ObjectStore,
    key: str,
    scratch: Path,
    downloads: Path | None = None,
    *,
    variable: str | None = None,
    time_index: int | None = None,
) -> gdalsafe.UserFile:
    """The raster a bronze source key stands for, as a checked :class:`~gdalsafe.UserFile`.

    A ``.zip`` is unpacked into ``scratch`` (with the archive limits) and must hold one
    raster, read with the sidecar files next to it in the archive. Other files are read
    where they are on a local store, with the sidecars stored in their bronze folder. On
    a remote store the bronze folder is downloaded to ``downloads`` (default
    ``scratch``; a folder the job's tasks on this machine share, so it is fetched once):
    GDAL reads all of a raster to convert it, and one sequential download costs less
    than the hundreds of range requests the conversion would make.

    A NetCDF or HDF5 file gives the raster of one ``variable`` (its only data variable
    when None), all its time steps as bands or only ``time_index`` (0-based): a GeoTIFF
    copy made once in ``downloads`` (:func:`geoetl.raster.multidim.extract`). A
    ``variable`` or ``time_index`` for any other file is an InputError.
    """
    found = bronze_file(objects, key, scratch, downloads or scratch)
    from geoetl.raster import multidim

    if multidim.is_container(found):
        return multidim.extract(found, variable, time_index, downloads or scratch)
    if variable is not None or time_index is not None:
        raise InputError(
            f"{found.name} is not a NetCDF or HDF5 file; variable and time_as apply only "
            "to those — leave them out"
        )
    return found


def bronze_file(
    objects: ObjectStore, key: str, scratch: Path, downloads: Path
) -> gdalsafe.UserFile:
    """The bronze file itself (unzipped, or downloaded from a remote store), checked."""
    name = gdalsafe.check_source_key(key)
    if name.lower().endswith(".zip"):
        from geoetl.archive import safe_extract

        local = objects.local_copy(key, downloads / name)
        folder = scratch / "unzipped"
        files = safe_extract(local, folder)
        raster = find_raster(files, folder, name)
        label = f"{raster.relative_to(folder).as_posix()} in {name}"
        return gdalsafe.user_file(raster, label, folder=folder)
    if not objects.is_local:
        for member in objects.list(str(PurePosixPath(key).parent)):
            objects.local_copy(member, downloads / PurePosixPath(member).name)
        return gdalsafe.user_file(downloads / name, name, folder=downloads)
    return gdalsafe.bronze_file(objects, key)


def missing_companions(name: str, present: Iterable[str]) -> list[str]:
    """The files a raster named ``name`` needs that are not among ``present`` names."""
    suffix = PurePosixPath(name).suffix.lower()
    stem = PurePosixPath(name).stem
    have = {p.lower() for p in present}
    return [
        f"{stem}{companion}"
        for companion in REQUIRED_COMPANIONS.get(suffix, ())
        if f"{stem}{companion}".lower() not in have
    ]
