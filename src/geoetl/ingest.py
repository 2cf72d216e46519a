"""Publishing one file: store it in bronze, tell raster from vector, build the job.

Shared by ``geoetl ingest PATH`` (which runs the job in its own process) and
``POST /ingest`` (which uploads the file and leaves the job to the workers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geoetl import gdalsafe
from geoetl.raster.source import RASTER_SUFFIXES as RASTER_SUFFIXES  # re-exported
from geoetl.raster.source import find_sidecars, holds_raster, takes_sidecars

if TYPE_CHECKING:
    from geoetl.storage.objectstore import ObjectStore

Kind = Literal["raster", "vector"]

SHAPEFILE_SIDECARS = (".dbf", ".shx", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml")
WORKFLOWS: dict[Kind, str] = {"raster": "process_raster", "vector": "process_vector"}
# A raster's time steps as items (time_as=items): one item per step.
TIMES_WORKFLOW = "process_raster_times"
# A raster cut into tiles (layout=tiles): one item per tile, served as one mosaic.
TILES_WORKFLOW = "process_raster_tiles"

_SHARED = ("access_level", "input_crs", "collection_id", "target_crs", "replace")
OPTIONS: dict[Kind, tuple[str, ...]] = {
    "raster": (
        *_SHARED,
        "item_id",
        "output_tier",
        "raster_type",
        "strict_mode",
        "jpeg_quality",
        "variable",
        "time_as",
        "layout",
        "tile_size",
    ),
    "vector": (
        *_SHARED,
        "dataset_id",
        "layer",
        "keep_z",
        "csv_lat",
        "csv_lon",
        "csv_wkt",
        "chunk_size",
    ),
}


def store_in_bronze(objects: ObjectStore, path: Path) -> str:
    """Copy ``path`` into bronze under its content hash (the same file is stored once).

    A loose shapefile goes with its sidecar files, in one folder; so does a raster with
    the sidecar files found next to it (world file, ``.aux.xml``, ``.ovr``, ``.msk``,
    ``.prj``, the ``.gri`` of a ``.grd``, an ENVI/EHdr ``.hdr``:
    :func:`geoetl.raster.source.find_sidecars`). The folder is then named by a hash
    over all of them.
    """
    if path.suffix.lower() == ".shp":
        sidecars = [
            candidate
            for suffix in SHAPEFILE_SIDECARS
            for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper()))
            if candidate.is_file()
        ]
        return objects.put_file_set(path, sidecars)
    if takes_sidecars(path.name):
        found = find_sidecars(path)
        if found:
            return objects.put_file_set(path, found)
    key, _digest = objects.put_content_addressed(path)
    return key


def detect_kind(name: str, gdal_path: str | gdalsafe.UserFile) -> Kind:
    """``raster`` for raster file types or what GDAL opens with bands, else ``vector``.

    A ``.zip`` is a raster when it holds a raster (with or without sidecar files) and no
    vector dataset (:func:`geoetl.raster.source.holds_raster`); its member names are
    read, with the archive limits, and nothing is unpacked.
    ``name`` is the file's name (its suffix decides when it is a raster type);
    ``gdal_path`` is where GDAL can read it: a local path (checked here), or a
    :class:`~geoetl.gdalsafe.UserFile` (``gdalsafe.bronze_file``, also for a remote
    store). Whatever its name, a file whose content is a VRT or another reference
    format, or a network or driver-prefixed path, is an InputError before GDAL sees
    it; GDAL then opens it only with the raster drivers geoetl accepts.
    """
    source = (
        gdal_path
        if isinstance(gdal_path, gdalsafe.UserFile)
        else gdalsafe.user_file(gdal_path, name)
    )
    suffix = Path(name).suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "raster"
    if suffix == ".zip":
        if source.remote:
            return "vector"
        from geoetl.archive import member_names

        return "raster" if holds_raster(member_names(Path(source.path))) else "vector"
    if suffix == ".gpkg" and not source.remote:
        return gpkg_kind(Path(source.path))
    if suffix in gdalsafe.VECTOR_SUFFIXES:
        # A vector type: GDAL (and rasterio, about 36 MiB of a vector ingest) is not
        # needed to say so.
        return "vector"
    from rasterio.errors import RasterioError

    try:
        with gdalsafe.open_raster(source) as ds:
            return "raster" if ds.count > 0 else "vector"
    except RasterioError:
        return "vector"


# gpkg_contents data types that GDAL's GeoPackage driver opens as a raster.
GPKG_RASTER_TYPES = ("tiles", "2d-gridded-coverage")


def gpkg_kind(path: Path) -> Kind:
    """A GeoPackage's kind, from its table of contents: ``raster`` when it holds tiles.

    GeoPackage is SQLite; the file is opened read-only (no journal, nothing written)
    and only ``gpkg_contents`` is read. A file that is not a readable GeoPackage is a
    ``vector`` here, and the vector pipeline says what is wrong with it.
    """
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute("SELECT DISTINCT data_type FROM gpkg_contents").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return "vector"
    types = {str(row[0]).lower() for row in rows}
    return "raster" if types & set(GPKG_RASTER_TYPES) else "vector"


def job_request(kind: Kind, source: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The workflow and params publishing ``source`` (a bronze key) with ``options``.

    Options that do not apply to the kind (a vector ``layer`` for a raster) and unset
    ones are left out; a raster's ``target_crs`` of ``native`` keeps the file's CRS.
    A NetCDF variable with ``time_as=items`` is published by process_raster_times (one
    item per time step), a raster with ``layout=tiles`` by process_raster_tiles (one
    item per tile).
    """
    params: dict[str, Any] = {"source": source}
    for name in OPTIONS[kind]:
        value = options.get(name)
        if value is None:
            continue
        if name == "target_crs" and kind == "raster" and str(value).lower() == "native":
            value = None
        params[name] = value
    if kind == "raster" and params.get("time_as") == "items":
        return TIMES_WORKFLOW, params
    if kind == "raster" and params.get("layout") == "tiles":
        return TILES_WORKFLOW, params
    return WORKFLOWS[kind], params
