"""Opening user files with GDAL without letting them reach anything else.

GDAL reads formats that are references to other data: a GDAL VRT or OGR VRT file can
read any file the worker can (``/etc/passwd``, the platform database, another bronze
object) or fetch any URL; a GDAL streamed algorithm (GDALG) runs GDAL commands; WMS,
WFS and similar descriptions make GDAL call a server. A file's name says nothing about
which driver opens it, so every user file goes through this module:

* :func:`user_file` / :func:`bronze_file`: the path must be a plain file (or a ``.gdb``
  folder) inside its own folder (bronze ``{sha256}`` folder, or a zip's extraction
  folder); network, ``/vsi…/`` and driver-prefixed paths (``vrt://``, ``PG:``,
  ``GPKG:…``) are refused unless the platform made them; the content is sniffed and
  reference formats are refused whatever the file is called, as is a GeoJSON ``"crs"``
  link (GDAL fetches it over HTTP). The same holds for the sidecar files next to it
  (:func:`check_sidecars`: world files, ``.aux.xml``, ``.ovr``, ``.msk``, headers).
* :func:`safe_gdal`: GDAL configuration while a user file is open, for both bundled
  GDALs (rasterio's and pyogrio's are different libraries with separate settings):
  no network, no external access from SQLite, no Python in VRTs.
* :func:`open_raster`: rasterio with only :data:`RASTER_DRIVERS` allowed at open,
  then every file GDAL reports touching must lie in the source's folder.
* :func:`vector_info`: pyogrio's ``read_info`` under the same configuration; the
  driver must be in :data:`VECTOR_DRIVERS` before any data is read. (pyogrio offers
  neither an allowed-driver list at open nor GDAL's file list: the sniff and the
  allow-list of drivers that open no other files stand in for them.)
* :func:`open_variable`: one variable of a NetCDF or HDF5 file, named by the user but
  opened by a GDAL path the platform builds (``NETCDF:"<file>":<variable>``), after the
  name was checked against a strict pattern and the file's own list of variables. HDF5
  files (NetCDF-4 is HDF5) are walked first: external links, external raw data and
  virtual datasets, which make the HDF5 library read other files, are refused.
* :func:`parse_crs`: CRS strings from users (``input_crs``, ``target_crs``) parsed by
  PROJ without file or network access (no ``+init=``, no grid paths, no URLs).
"""

from __future__ import annotations

import codecs
import json
import mmap
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from geoetl.errors import InputError

if TYPE_CHECKING:
    import pyproj
    from rasterio.io import DatasetReader

    from geoetl.storage.objectstore import ObjectStore

# Raster drivers a user of geoetl expects (HDF5 only through open_container and
# open_variable, once check_hdf5 walked the file). Never VRT, GTI, WMS, WMTS, WCS, MBTiles,
# Rasterlite, KMLSUPEROVERLAY, PDF, PCIDSK, MRF, Zarr, STACIT, STACTA, the
# PostGIS/HTTP/cloud-service drivers or anything else that opens other datasets,
# connection strings or URLs named inside a file.
# Files that are a vector dataset on their own (a .gdb folder is one too): what the
# vector pipeline looks for, and what makes a zip a vector upload.
VECTOR_SUFFIXES = frozenset(
    {
        ".shp",
        ".gpkg",
        ".geojson",
        ".json",
        ".kml",
        ".kmz",
        ".csv",
        ".fgb",
        ".parquet",
        ".geoparquet",
        ".gml",
    }
)

RASTER_DRIVERS: tuple[str, ...] = (
    "GTiff",
    "COG",
    "JP2OpenJPEG",
    "PNG",
    "JPEG",
    "WEBP",
    "GIF",
    "BMP",
    "HFA",
    "netCDF",
    "GRIB",
    "GPKG",
    "RRASTER",
    "ENVI",
    "EHdr",
    "AAIGrid",
    "SAGA",
    "USGSDEM",
    "DTED",
    "SRTMHGT",
    "XYZ",
    "ERS",
)
# Vector drivers a user expects. Never OGR_VRT, GDALG, SQLite (VirtualOGR and
# SpatiaLite's virtual tables read files by name), MapInfo (seamless tables open other
# tables by path), PostgreSQL, WFS, OAPIF, OGCAPI, CSW, HTTP, ADBC, GPSBabel (runs a
# program) or any other connection-string or service driver.
VECTOR_DRIVERS: frozenset[str] = frozenset(
    {
        "ESRI Shapefile",
        "GPKG",
        "GeoJSON",
        "GeoJSONSeq",
        "ESRIJSON",
        "TopoJSON",
        "JSONFG",
        "FlatGeobuf",
        "CSV",
        "KML",
        "LIBKML",
        "GML",
        "GPX",
        "OpenFileGDB",
        "Parquet",
        "Arrow",
    }
)

# How much of a file the sniff reads. GDAL's drivers identify a file from its first
# kilobyte, some after reading more (GeoJSON); a reference marker anywhere in the first
# MiB is refused.
SNIFF_BYTES = 1024 * 1024


@dataclass(frozen=True)
class _Reference:
    marker: str
    what: str
    danger: str
    advice: str


# Formats that point GDAL at other files, databases, programs or servers. The marker is
# what the driver looks for in the file's first bytes (matched case-insensitively).
REFERENCE_FORMATS: tuple[_Reference, ...] = (
    _Reference(
        "<VRTDataset",
        "a GDAL VRT file",
        "which can read other files and URLs",
        "geoetl does not accept VRT input — upload the raster it points to",
    ),
    _Reference(
        "<OGRVRTDataSource",
        "an OGR VRT file",
        "which can read other files, databases and URLs",
        "geoetl does not accept VRT input — upload the dataset it points to",
    ),
    _Reference(
        "<GDALTileIndexDataset",
        "a GDAL tile index (GTI) file",
        "which reads the files and URLs it lists",
        "geoetl does not accept tile indexes — upload the rasters themselves",
    ),
    _Reference(
        "gdal_streamed_alg",
        "a GDAL streamed algorithm (GDALG) file",
        "which runs GDAL commands on other files",
        "geoetl does not accept GDALG input — upload the data itself",
    ),
    _Reference(
        "<GDAL_WMS",
        "a GDAL WMS service description",
        "which makes GDAL fetch data from a server",
        "upload the data itself",
    ),
    _Reference(
        "<GDAL_WMTS",
        "a GDAL WMTS service description",
        "which makes GDAL fetch data from a server",
        "upload the data itself",
    ),
    _Reference(
        "<WCS_GDAL",
        "a GDAL WCS service description",
        "which makes GDAL fetch data from a server",
        "upload the data itself",
    ),
    _Reference(
        "<OGRWFSDataSource",
        "an OGR WFS service description",
        "which makes GDAL fetch data from a server",
        "upload the data itself",
    ),
)

# Platform-made paths of a remote object store (ObjectStore.gdal_path); never user input.
PLATFORM_REMOTE_PREFIXES = ("/vsis3/", "/vsiaz/", "/vsigs/")
# A GDAL connection string or URL: "PG:…", "GPKG:…", "NETCDF:…", "vrt://…", "http://…".
_PREFIXED = re.compile(r"^[A-Za-z][A-Za-z0-9_+.-]*:")
# Set as the only /vsicurl/-family file GDAL may fetch when the source is local: no
# network file system request is made for any other name.
NO_NETWORK_FILENAME = "/geoetl-no-network/"
# An HTTP proxy curl refuses at once ("No host part"), so CPLHTTPFetch (CRS links in
# GeoJSON, GML schemas, …) connects nowhere. curl still honours NO_PROXY from the
# environment: keep loopback and internal hosts out of it on workers.
NO_NETWORK_PROXY = "geoetl-no-network://"


# --- paths and content -------------------------------------------------------------------


@dataclass(frozen=True)
class UserFile:
    """A user file GDAL may open: where it is and the folder it may not leave."""

    path: str
    folder: str
    name: str
    remote: bool = False
    # The object store's GDAL settings (credentials): applied while GDAL reads it.
    store_options: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


def user_file(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
) -> UserFile:
    """Check a local user file: a plain path inside ``folder`` whose content is data.

    ``folder`` defaults to the file's own folder (a bronze ``{sha256}`` folder, or where
    a zip was extracted). InputError for network or driver-prefixed paths, files that
    are missing, not regular, or resolve outside ``folder`` (symlinks), and content
    that is a reference format such as a VRT.
    """
    raw = os.fspath(path)
    label = name or PurePosixPath(raw).name or raw
    check_path_text(raw, label)
    resolved = Path(raw).resolve()
    # The folder the path names, not the one a symlink leads to.
    root = Path(folder if folder is not None else Path(raw).absolute().parent).resolve()
    if not resolved.is_relative_to(root):
        raise InputError(
            f"{label} resolves to a file outside its own folder; geoetl reads only the "
            "uploaded file itself — upload the data, not a link to it"
        )
    if resolved.is_dir():
        if resolved.suffix.lower() != ".gdb":
            raise InputError(f"{label} is a folder, not a file; upload a file or a .zip")
        _check_tree(resolved, root, label)
    elif not resolved.is_file():
        raise InputError(f"{label} is not a regular file")
    else:
        sniff(resolved, label)
        check_sidecars(resolved, root, label)
    return UserFile(str(resolved), str(root), label)


def bronze_file(objects: ObjectStore, key: str) -> UserFile:
    """The bronze object ``key`` (``bronze/{folder}/{name}``) as a :class:`UserFile`.

    A source key must name a file directly inside its own bronze folder. On a local
    store the file is checked as :func:`user_file` with that folder; on a remote one the
    platform-made ``/vsis3/``-style path is the only network object GDAL may read.
    """
    name = check_source_key(key)
    gdal_path = objects.gdal_path(key)
    if objects.is_local:
        return user_file(gdal_path, name, folder=Path(gdal_path).parent)
    if not gdal_path.startswith(PLATFORM_REMOTE_PREFIXES):
        raise InputError(f"source {key!r} is not stored where GDAL can read it safely")
    with objects.open(key) as fh:  # a range read of the head, as for a local file
        head = fh.read(SNIFF_BYTES)
    found = reference_format(head)
    if found is not None:
        raise InputError(f"{name} is {found.what}, {found.danger}; {found.advice}")
    return UserFile(
        gdal_path,
        str(PurePosixPath(gdal_path).parent),
        name,
        remote=True,
        store_options=objects.gdal_options(),
    )


def check_source_key(key: str) -> str:
    """The file name of a source key, which must be ``bronze/{folder}/{name}``."""
    parts = key.split("/")
    if (
        len(parts) != 3
        or parts[0] != "bronze"
        or parts[1] in ("", ".", "..")
        or parts[2] in ("", ".", "..")
    ):
        raise InputError(
            f"source {key[:200]!r} must be a file directly inside its bronze folder "
            "(bronze/<sha256>/<name>)"
        )
    return parts[2]


# Sidecar files GDAL opens as datasets of their own (with any driver): external
# overviews and masks, which GDAL always writes as GeoTIFF, and old-style .aux files,
# which are Erdas Imagine. Anything else under those names is refused.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
SIDECAR_DATASETS: dict[str, tuple[tuple[bytes, ...], str]] = {
    ".ovr": (_TIFF_MAGIC, "a GeoTIFF (external overviews)"),
    ".msk": (_TIFF_MAGIC, "a GeoTIFF (external mask)"),
    ".aux": ((b"EHFA_HEADER_TAG",), "an Erdas Imagine .aux file"),
}


def check_sidecars(main: Path, root: Path, name: str) -> None:
    """Check the files next to ``main`` that GDAL may read with it (its sidecars).

    GDAL looks for a raster's sidecar files by name (``x.tfw``, ``x.tif.aux.xml``,
    ``x.tif.ovr``, ``x.hdr``, …, all named ``x.…`` after ``x.tif``) and opens some of
    them as datasets with any driver. Every such file in the folder is sniffed like the
    file itself (no VRT or other reference format under a sidecar's name), may not be a
    link out of ``root``, and overviews, masks and ``.aux`` files must have the format
    GDAL writes them in (:data:`SIDECAR_DATASETS`).
    """
    prefix = main.name.lower().rpartition(".")[0] or main.name.lower()
    prefix += "."
    for entry in main.parent.iterdir():
        lower = entry.name.lower()
        if not lower.startswith(prefix) or entry.name == main.name:
            continue
        if entry.is_symlink() and not entry.resolve().is_relative_to(root):
            raise InputError(
                f"{entry.name} next to {name} is a link to a file outside its folder; "
                "upload the sidecar file itself"
            )
        if not entry.is_file():
            continue
        sniff(entry, f"{entry.name} (a sidecar file of {name})")
        for suffix, (magic, what) in SIDECAR_DATASETS.items():
            if lower.endswith(suffix):
                with entry.open("rb") as fh:
                    head = fh.read(16)
                if not head.startswith(magic):
                    raise InputError(
                        f"{entry.name} next to {name} is not {what}, and GDAL would open it "
                        "as a dataset of its own; remove it, or upload the raster without it"
                    )


def check_path_text(path: str, name: str) -> None:
    """Refuse network, ``/vsi…/`` and driver-prefixed paths given as a user file."""
    if "\x00" in path:
        raise InputError(f"{name}: the path contains a NUL character")
    if path.startswith("/vsi") or _PREFIXED.match(path) or "://" in path:
        raise InputError(
            f"{name}: {path[:80]!r} is a network path, URL or GDAL connection string; "
            "geoetl reads only files stored in its bronze zone — upload the file itself"
        )


def _check_tree(folder: Path, root: Path, name: str) -> None:
    # A dataset folder (.gdb): GDAL may open any file in it, so each is checked.
    for entry in folder.rglob("*"):
        if entry.is_symlink() or not entry.resolve().is_relative_to(root):
            raise InputError(f"{name} holds a link to a file outside it; upload the data itself")
        if entry.is_file():
            sniff(entry, f"{name}/{entry.relative_to(folder)}")


def sniff(path: Path, name: str) -> None:
    """InputError when ``path``'s content is a reference format (VRT, GDALG, WMS, …).

    JSON content is also searched for a GeoJSON/TopoJSON ``"crs"`` of type link or URL,
    which GDAL fetches from the network (see :func:`crs_link`).
    """
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    found = reference_format(head)
    if found is not None:
        raise InputError(f"{name} is {found.what}, {found.danger}; {found.advice}")
    if is_hdf5(head):
        check_hdf5(path, name)
    if head.lstrip(b"\xef\xbb\xbf \t\r\n\x1e")[:1] in (b"{", b"["):
        href = crs_link(path)
        if href is not None:
            raise InputError(
                f"{name} gives its CRS as a link ({href[:80]!r}), which would make GDAL fetch "
                'it from the network; replace the "crs" member with a name such as '
                '{"type": "name", "properties": {"name": "EPSG:4326"}}, or remove it and '
                "pass input_crs"
            )


# A "crs" member, in any case and with any character \u-escaped: GDAL's GeoJSON reader
# finds members by case-insensitive name.
_CRS_KEY = re.compile(
    rb'"(?:c|\\u00(?:63|43))(?:r|\\u00(?:72|52))(?:s|\\u00(?:73|53))"\s*:\s*', re.IGNORECASE
)
_CRS_WINDOW = 64 * 1024


def crs_link(path: Path) -> str | None:
    """The URL of a GeoJSON or TopoJSON ``"crs"`` of type ``link``/``url``, or None.

    GDAL fetches such a CRS with an HTTP request whatever its configuration allows for
    files (CPLHTTPFetch), from anywhere in the file. Every ``"crs"`` member is read; one
    whose object cannot be read within 64 KiB counts as a link.
    """
    if path.stat().st_size == 0:
        return None
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for match in _CRS_KEY.finditer(mm):
            window = mm[match.end() : match.end() + _CRS_WINDOW].decode("utf-8", "replace")
            if not window.startswith("{"):
                continue
            try:
                value, _ = json.JSONDecoder().raw_decode(window)
            except ValueError:
                return "(a crs member geoetl cannot read)"
            kind = _member(value, "type")
            if isinstance(kind, str) and kind.lower() in ("link", "url"):
                props = _member(value, "properties")
                href = (_member(props, "href") or _member(props, "url")) if props else None
                return str(href or "(no URL)")
    return None


def _member(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    return next((v for k, v in obj.items() if str(k).lower() == name), None)


def reference_format(head: bytes) -> _Reference | None:
    """The reference format whose marker ``head`` holds (after any BOM), or None.

    The VRT drivers look for their root element anywhere in the first bytes, after an
    XML declaration or comments, so the marker is searched, not only matched at the
    start; UTF-16 text is decoded first.
    """
    texts = [head]
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            texts.append(head[len(bom) :].decode(codec, errors="ignore").encode())
    if head[:1] == b"<" and head[1:2] == b"\x00":
        texts.append(head.decode("utf-16-le", errors="ignore").encode())
    if head[:1] == b"\x00" and head[1:2] == b"<":
        texts.append(head.decode("utf-16-be", errors="ignore").encode())
    for text in texts:
        lowered = text.lower()
        for ref in REFERENCE_FORMATS:
            if ref.marker.lower().encode() in lowered:
                return ref
    return None


def check_files(files: Iterable[str], source: UserFile) -> None:
    """Every file GDAL reported touching (GetFileList) lies in the source's folder."""
    for touched in files:
        if source.remote:
            inside = touched.startswith(source.folder.rstrip("/") + "/")
        else:
            if touched.startswith("/vsi") or _PREFIXED.match(touched):
                inside = False
            else:
                inside = Path(touched).resolve().is_relative_to(Path(source.folder))
        if not inside:
            raise InputError(
                f"{source.name} makes GDAL read {PurePosixPath(touched).name!r} outside its "
                "own folder; geoetl reads only the uploaded file and its sidecar files — "
                "upload the data itself"
            )


# --- HDF5 and NetCDF-4 -------------------------------------------------------------------

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# An HDF5 file may start with a user block of 512, 1024, 2048, … bytes.
_HDF5_OFFSETS = (0, *(512 << i for i in range(12)))
# The HDF5 walk stops (and refuses the file) past this many objects: a real dataset
# holds a few hundred at most.
MAX_HDF5_OBJECTS = 100_000


def is_hdf5(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) is an HDF5 file's (NetCDF-4 too)."""
    return any(head[o : o + 8] == HDF5_SIGNATURE for o in _HDF5_OFFSETS if o < len(head))


def check_hdf5(path: Path, name: str) -> None:
    """Refuse an HDF5 file whose objects make the HDF5 library read other files.

    External links (``ExternalLink``), datasets whose raw data lives in external files
    (``H5Pset_external``) and virtual datasets (VDS) name other files that the HDF5
    library opens itself, out of GDAL's sight (GDAL's file list shows only the file):
    ``/etc/passwd``, another bronze object. Every group and dataset is visited once
    (h5py resolves no link while walking); soft links stay inside the file.
    """
    import h5py  # type: ignore[import-untyped]

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{name} is not a readable HDF5 file ({exc})") from None
    with handle:
        seen: set[Any] = set()
        pending: list[Any] = [handle]
        while pending:
            group = pending.pop()
            for key in group:
                link = group.get(key, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise InputError(
                        f"{name} holds an external link ({group.name}/{key} → "
                        f"{str(link.filename)[:80]!r}), which makes the HDF5 library read "
                        "another file; upload a file that holds its data itself"
                    )
                if isinstance(link, h5py.SoftLink):
                    continue  # a path inside this file, visited through its hard link
                obj = group.get(key)
                address = h5py.h5o.get_info(obj.id).addr
                if address in seen:
                    continue
                seen.add(address)
                if len(seen) > MAX_HDF5_OBJECTS:
                    raise InputError(
                        f"{name} holds more than {MAX_HDF5_OBJECTS} HDF5 objects; geoetl "
                        "reads data files, not archives of them"
                    )
                if isinstance(obj, h5py.Group):
                    pending.append(obj)
                elif isinstance(obj, h5py.Dataset) and (obj.is_virtual or obj.external):
                    raise InputError(
                        f"{name}: dataset {obj.name} keeps its values in other files "
                        f"({'a virtual dataset' if obj.is_virtual else 'external storage'}), "
                        "which the HDF5 library would read; upload a file that holds its "
                        "data itself"
                    )


# Drivers that open a NetCDF or HDF5 file as a whole (listing its variables; GDAL opens
# an HDF5 file holding one dataset as that dataset, with HDF5Image), and the driver and
# path prefix that open one variable of it.
CONTAINER_DRIVERS: tuple[str, ...] = ("netCDF", "HDF5", "HDF5Image")
_VARIABLE_OPENERS: dict[str, tuple[str, str]] = {
    "netCDF": ("netCDF", "NETCDF"),
    "HDF5": ("HDF5Image", "HDF5"),
}
# A variable name geoetl puts into a GDAL path: letters, digits, '_', '.', '-', and '/'
# between the names of groups; no quotes, colons, '..', spaces or '/vsi…/'.
VARIABLE_NAME = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}(/[A-Za-z_][A-Za-z0-9_.-]{0,127}){0,15}$"
)


@dataclass(frozen=True)
class Variable:
    """A variable of a NetCDF/HDF5 file as GDAL lists it (a subdataset)."""

    name: str
    description: str
    dimensions: int
    gdal_name: str = field(repr=False)
    """The name as GDAL lists it: ``name`` after up to two slashes (``//data/temp``)."""


def check_variable_name(name: str) -> str:
    """``name`` without leading slashes, or InputError when it is not a plain variable name."""
    cleaned = name.strip().lstrip("/")
    if not VARIABLE_NAME.match(cleaned) or ".." in cleaned.split("/"):
        raise InputError(
            f"variable {name[:80]!r} is not a variable name geoetl accepts (letters, digits, "
            "'_', '.', '-', and '/' between group names); give the name of a variable as "
            "ncdump -h or gdalinfo lists it"
        )
    return cleaned


@contextmanager
def open_container(source: UserFile) -> Iterator[DatasetReader]:
    """Open a NetCDF/HDF5 user file as a whole, with only :data:`CONTAINER_DRIVERS`."""
    from rasterio.io import DatasetReader

    if source.remote:
        raise InputError(f"{source.name}: NetCDF and HDF5 files are read from a local copy")
    if '"' in source.path:
        raise InputError(f"{source.name}: a file whose path holds '\"' cannot be read; rename it")
    with safe_gdal(vector=False):
        ds = DatasetReader(source.path, driver=list(CONTAINER_DRIVERS))
        try:
            _check_driver(ds, source, CONTAINER_DRIVERS)
            yield ds
        finally:
            ds.close()


def variables(ds: DatasetReader) -> list[Variable]:
    """The variables (subdatasets) GDAL lists for an open container, in its order."""
    tags = ds.tags(ns="SUBDATASETS")
    found = []
    index = 1
    while f"SUBDATASET_{index}_NAME" in tags:
        path = tags[f"SUBDATASET_{index}_NAME"]
        description = tags.get(f"SUBDATASET_{index}_DESC", "")
        listed = _variable_of(path)
        shape = re.match(r"^\[([0-9x]+)\]", description)
        dims = len(shape.group(1).split("x")) if shape else 2
        if listed is not None:
            found.append(Variable(listed.lstrip("/"), description, dims, listed))
        index += 1
    return found


def _variable_of(path: str) -> str | None:
    # NETCDF:"/p/f.nc":var  or  HDF5:"/p/f.h5"://group/var  (GDAL quotes the file name).
    match = re.match(r'^[A-Za-z0-9]+:"[^"]*":(.*)$', path)
    return match.group(1) if match else None


def variable_path(ds: DatasetReader, source: UserFile, variable: str) -> tuple[str, str]:
    """The GDAL path (built here) and driver that open ``variable`` of the container ``ds``.

    InputError when ``variable`` is not a plain name, or not one of the file's variables
    (the message lists them).
    """
    name = check_variable_name(variable)
    known = variables(ds)
    entry = next((v for v in known if v.name == name), None)
    if entry is None:
        listed = ", ".join(v.name for v in known[:30]) or "none GDAL can read as a raster"
        raise InputError(
            f"{source.name} has no variable {variable[:80]!r}; its variables are: {listed}"
        )
    # The file's own spelling, checked like the user's: only slashes may precede the name.
    spelled = entry.gdal_name in (name, f"/{name}", f"//{name}")
    if not spelled or ds.driver not in _VARIABLE_OPENERS:
        raise InputError(f"{source.name}: GDAL lists variable {name} in a form geoetl refuses")
    driver, prefix = _VARIABLE_OPENERS[ds.driver]
    return f'{prefix}:"{source.path}":{entry.gdal_name}', driver


@contextmanager
def open_variable(source: UserFile, variable: str) -> Iterator[DatasetReader]:
    """Open one variable of a NetCDF/HDF5 user file (see :func:`variable_path`).

    The container is opened first with :data:`CONTAINER_DRIVERS` to list its variables;
    the variable is then opened by a platform-made path with its driver only, and the
    files GDAL reports touching must lie in the source's folder.
    """
    from rasterio.io import DatasetReader

    with open_container(source) as container:
        path, driver = variable_path(container, source, variable)
    with safe_gdal(vector=False):
        ds = DatasetReader(path, driver=[driver])
        try:
            _check_driver(ds, source, (driver,))
            yield ds
        finally:
            ds.close()


def _check_driver(ds: DatasetReader, source: UserFile, drivers: tuple[str, ...]) -> None:
    if ds.driver not in drivers:
        raise InputError(
            f"{source.name} was read by GDAL's {ds.driver} driver, which geoetl does not "
            "accept for NetCDF/HDF5 variables"
        )
    check_files(ds.files, source)


# --- GDAL configuration -------------------------------------------------------------------


def gdal_options(remote_path: str | None = None) -> dict[str, str]:
    """GDAL configuration options while a user file is open.

    ``remote_path`` is the platform-made ``/vsis3/…`` path of a remote source: then it
    is the one network file GDAL may read. Otherwise no ``/vsicurl/``-family request is
    allowed and plain HTTP requests go to a proxy curl refuses.
    """
    options = {
        # Only this name may be fetched by /vsicurl/, /vsis3/, /vsiaz/, /vsigs/ …
        "CPL_VSIL_CURL_ALLOWED_FILENAME": remote_path or NO_NETWORK_FILENAME,
        "GDAL_HTTP_MAX_RETRY": "0",
        "GDAL_VRT_ENABLE_PYTHON": "NO",
        "GDAL_VRT_ENABLE_RAWRASTERBAND": "NO",
        "OGR_SQLITE_ALLOW_EXTERNAL_ACCESS": "NO",
        "ALLOW_VIRTUAL_OGR_FROM_TRIGGER_AND_VIEW": "NO",
        "ALLOW_OGR_SQL_FUNCTIONS_FROM_TRIGGER_AND_VIEW": "NO",
        "GDAL_ALLOW_REMOTE_RESOURCE_TO_ACCESS_LOCAL_FILE": "NO",
        "GML_DOWNLOAD_SCHEMA": "NO",
        "GML_DOWNLOAD_WFS_SCHEMA": "NO",
        "GML_SKIP_RESOLVE_ELEMS": "ALL",
        "PROJ_NETWORK": "OFF",
    }
    if remote_path is None:
        # CPLHTTPFetch (CRS links in GeoJSON, schemas, …) does not honour the setting
        # above; a proxy URL without a host makes curl fail before connecting.
        options["GDAL_HTTP_PROXY"] = NO_NETWORK_PROXY
        options["GDAL_HTTPS_PROXY"] = NO_NETWORK_PROXY
    return options


# pyogrio's GDAL takes process-wide settings only (CPLSetConfigOption). The first user
# sets them and the last one restores what was there; in between every pyogrio call of
# the process runs without network, which the platform's own (local) vector I/O does not
# need. The settings are the same for every vector user file (always a local file).
_PYOGRIO_LOCK = threading.Lock()
_pyogrio_users = 0
_pyogrio_saved: dict[str, Any] = {}


@contextmanager
def _pyogrio_config(options: dict[str, str]) -> Iterator[None]:
    global _pyogrio_users
    import pyogrio

    with _PYOGRIO_LOCK:
        if _pyogrio_users == 0:
            _pyogrio_saved.clear()
            _pyogrio_saved.update({k: pyogrio.get_gdal_config_option(k) for k in options})
            pyogrio.set_gdal_config_options(options)
        _pyogrio_users += 1
    try:
        yield
    finally:
        with _PYOGRIO_LOCK:
            _pyogrio_users -= 1
            if _pyogrio_users == 0:
                pyogrio.set_gdal_config_options(dict(_pyogrio_saved))
                _pyogrio_saved.clear()


# What an object store's settings may not change in the settings above.
_GUARDED = frozenset({"CPL_VSIL_CURL_ALLOWED_FILENAME", "GDAL_HTTP_PROXY", "GDAL_HTTPS_PROXY"})


def with_store(options: dict[str, str], store_options: dict[str, str] | None) -> dict[str, str]:
    """``options`` plus an object store's (endpoint, credentials, retries), guards kept."""
    merged = dict(options)
    for key, value in (store_options or {}).items():
        if key not in _GUARDED:
            merged[key] = value
    return merged


@contextmanager
def safe_gdal(
    *,
    raster: bool = True,
    vector: bool = True,
    remote_path: str | None = None,
    store_options: dict[str, str] | None = None,
) -> Iterator[None]:
    """GDAL settings for reading a user file (see :func:`gdal_options`).

    rasterio's settings are thread-local (``rasterio.Env``); pyogrio's are process-wide
    and reference-counted across threads. ``store_options`` reach the object store that
    holds ``remote_path``; they never go to pyogrio (vector files are read locally).
    """
    options = with_store(gdal_options(remote_path), store_options if remote_path else None)
    with _maybe_rasterio_env(options if raster else None):
        if vector:
            with _pyogrio_config(gdal_options(None)):
                yield
        else:
            yield


@contextmanager
def _maybe_rasterio_env(options: dict[str, str] | None) -> Iterator[None]:
    if options is None:
        yield
        return
    import rasterio

    with rasterio.Env(**rasterio_env_kwargs(options)):
        yield


# rasterio refuses AWS keys as plain options ("handled by boto3"): they go in a session.
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def rasterio_env_kwargs(options: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments of ``rasterio.Env`` that set ``options`` for one operation."""
    from rasterio.session import Session

    class _Options(Session):  # type: ignore[misc]
        """GDAL options rasterio sets when the environment starts (credentials)."""

        def __init__(self, values: dict[str, str]) -> None:
            self._values = values

        @classmethod
        def hascreds(cls, config: Any) -> bool:
            return True

        @property
        def credentials(self) -> dict[str, str]:
            return dict(self._values)

        def get_credential_options(self) -> dict[str, str]:
            return dict(self._values)

    secrets = {k: v for k, v in options.items() if k in _CREDENTIALS}
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if k not in _CREDENTIALS}
    kwargs["session"] = _Options(secrets)
    return kwargs


def stored_options(objects: ObjectStore, key: str) -> dict[str, str]:
    """GDAL settings for reading the platform's own object ``key`` (a COG it wrote).

    The object's path is the only network file GDAL may read (no sidecar lookups, no
    other URL); on a local store there is no network at all.
    """
    path = objects.gdal_path(key)
    if objects.is_local:
        return gdal_options(None)
    return with_store(gdal_options(path), objects.gdal_options())


@contextmanager
def open_stored_raster(objects: ObjectStore, key: str) -> Iterator[DatasetReader]:
    """Open a GeoTIFF the platform stored (a COG in silver or tmp), read in place.

    Range requests on a remote store, with the store's settings for this read only; only
    the GTiff driver may open it.
    """
    import rasterio
    from rasterio.io import DatasetReader

    path = objects.gdal_path(key)
    with rasterio.Env(**rasterio_env_kwargs(stored_options(objects, key))):
        ds = DatasetReader(path, driver=list(STORED_RASTER_DRIVERS))
        try:
            yield ds
        finally:
            ds.close()


# What the platform writes and reads back: COGs (GDAL reads them with GTiff).
STORED_RASTER_DRIVERS = ("GTiff",)


# --- rasters ------------------------------------------------------------------------------


def _as_user_file(source: UserFile | str | os.PathLike[str], name: str | None) -> UserFile:
    if isinstance(source, UserFile):
        return source
    return user_file(source, name)


@contextmanager
def open_raster(
    source: UserFile | str | os.PathLike[str],
    name: str | None = None,
    *,
    vrt_options: dict[str, str] | None = None,
) -> Iterator[DatasetReader]:
    """Open a user raster with only :data:`RASTER_DRIVERS` allowed, inside :func:`safe_gdal`.

    ``vrt_options`` (``a_srs``, ``a_nodata``) wrap the file in a platform-made
    ``vrt://`` that may open it only with the driver that opened it first. The files
    GDAL reports touching must lie in the source's folder. RasterioIOError propagates
    for files no allowed driver reads; InputError for what this module refuses.
    """
    from rasterio.io import DatasetReader

    src = _as_user_file(source, name)
    with safe_gdal(
        vector=False,
        remote_path=src.path if src.remote else None,
        store_options=src.store_options,
    ):
        ds = DatasetReader(src.path, driver=list(RASTER_DRIVERS))
        try:
            _check_raster(ds, src)
            if vrt_options:
                wrapped = DatasetReader(_vrt_path(src, ds.driver, vrt_options), driver=["VRT"])
                ds.close()
                ds = wrapped
                _check_raster(ds, src, driver="VRT")
            yield ds
        finally:
            ds.close()


def _check_raster(ds: DatasetReader, src: UserFile, driver: str | None = None) -> None:
    if ds.driver not in (driver or RASTER_DRIVERS):
        raise InputError(
            f"{src.name} was read by GDAL's {ds.driver} driver, which geoetl does not accept"
        )
    check_files(ds.files, src)


def _vrt_path(src: UserFile, driver: str, options: dict[str, str]) -> str:
    # GDAL splits a vrt:// path at the first '?' and its options at '&'.
    if "?" in src.path or "&" in src.path:
        raise InputError(
            f"{src.name}: a file whose name holds '?' or '&' cannot be given a CRS or "
            "nodata value; rename the file and upload it again"
        )
    for key, value in options.items():
        if "&" in value or "?" in value:
            raise InputError(
                f"{key} value {value[:60]!r} holds '&' or '?', which geoetl cannot pass to "
                "GDAL; give the CRS as an authority code such as EPSG:4326"
            )
    query = "&".join([f"if={driver}", *(f"{k}={v}" for k, v in options.items())])
    return f"vrt://{src.path}?{query}"


# --- vectors ------------------------------------------------------------------------------


@contextmanager
def reading_vector(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
) -> Iterator[UserFile]:
    """Check a user vector file (:func:`user_file`) and hold :func:`safe_gdal` for pyogrio."""
    src = user_file(path, name, folder=folder)
    with safe_gdal(raster=False):
        yield src


def check_vector_driver(driver: str | None, name: str) -> None:
    """InputError unless pyogrio opened the file with a driver in :data:`VECTOR_DRIVERS`."""
    if driver not in VECTOR_DRIVERS:
        raise InputError(
            f"{name} is read by GDAL's {driver} driver, which geoetl does not accept; "
            f"upload one of: {', '.join(sorted(VECTOR_DRIVERS))}"
        )


def vector_info(src: UserFile, layer: str | int | None = None, **kwargs: Any) -> dict[str, Any]:
    """The ``pyogrio.read_info`` of a checked vector file, its driver checked before use.

    Call inside :func:`reading_vector`. pyogrio's errors propagate.
    """
    import pyogrio

    info: dict[str, Any] = pyogrio.read_info(src.path, layer=layer, **kwargs)
    check_vector_driver(info.get("driver"), src.name)
    return info


# --- CRS strings --------------------------------------------------------------------------

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_WKT_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
MAX_CRS_CHARS = 100_000


def check_crs_text(value: str, option: str) -> None:
    """Refuse CRS strings that would make PROJ or GDAL read a file or fetch a URL.

    ``+init=`` (PROJ init files), grid or other parameters naming a path
    (``+nadgrids=/…``, also inside WKT's PROJ4 extension), URLs and file paths are
    refused; authority codes (``EPSG:4326``), names, PROJ strings with bare grid names
    (``@null``), WKT and PROJJSON whose strings are not paths are accepted.
    """
    text = value.strip()
    if not text:
        raise InputError(f"{option} is empty; give a CRS such as EPSG:4326")
    if len(text) > MAX_CRS_CHARS or any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        raise InputError(f"{option} is not a CRS definition; give one such as EPSG:4326")
    advice = "give the CRS as an authority code such as EPSG:4326, or as WKT"
    if re.search(r"(^|[\s+\"])init\s*=", text, re.IGNORECASE):
        raise InputError(f"{option} uses +init=, which makes PROJ read init files; {advice}")
    if text.startswith("{") or re.match(r"^[A-Za-z_0-9]+\s*\[", text):  # PROJJSON or WKT
        for string in _definition_strings(text, option):
            if _looks_like_path(string):
                raise InputError(
                    f"{option} names a file ({string[:60]!r}); geoetl does not let CRS "
                    f"definitions read files — {advice}"
                )
            _check_proj_parameters(string, option, advice)
        return
    if _URL.search(text) or text.lower().startswith("file:"):
        raise InputError(
            f"{option} {text[:80]!r} is a URL; geoetl does not fetch CRS definitions — {advice}"
        )
    if "=" in text:  # a PROJ string: +proj=… +nadgrids=…
        _check_proj_parameters(text, option, advice)
        return
    if _looks_like_path(text) or re.search(r"\S/\S", text):
        raise InputError(
            f"{option} {text[:80]!r} looks like a file path; geoetl does not read CRS "
            f"definitions from files — {advice}"
        )


def _definition_strings(text: str, option: str) -> list[str]:
    """The string values of a PROJJSON document or the quoted strings of a WKT."""
    if not text.startswith("{"):
        return [q.replace('""', '"') for q in _WKT_QUOTED.findall(text)]
    try:
        document = json.loads(text)
    except ValueError:
        raise InputError(f"{option} starts like PROJJSON but is not valid JSON") from None
    strings: list[str] = []
    stack: list[Any] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return strings


def _check_proj_parameters(text: str, option: str, advice: str) -> None:
    for token in text.split():
        key, _, val = token.partition("=")
        if val and (_looks_like_path(val) or "/" in val):
            raise InputError(
                f"{option} parameter {key} names a file ({val[:60]!r}); geoetl does not "
                f"let CRS definitions read files — {advice}"
            )


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", "~", "./", "../", "\\"))
        or "\\" in value
        or ".." in value.split("/")
        or value.lower().startswith("file:")
        or bool(re.match(r"^[A-Za-z]:[\\/]", value))
    )


def parse_crs(value: str, option: str) -> pyproj.CRS:
    """A pyproj CRS from a user's CRS string, with no file or network access.

    InputError naming ``option`` for refused or unknown definitions. Hand GDAL the
    parsed CRS (as WKT), never the user's string: GDAL's own parser opens files and
    fetches URLs it is given.
    """
    check_crs_text(value, option)
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(value.strip())
    except CRSError as exc:
        raise InputError(
            f"{option} {value[:200]!r} is not a coordinate reference system PROJ knows "
            f"({exc}); use an authority code such as EPSG:4326"
        ) from None
