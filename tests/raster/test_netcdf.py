"""NetCDF and HDF5 inputs: one variable chosen, CF metadata and time kept (issue 16).

Files are generated here with netCDF4 and h5py (independent writers); what geoetl makes
is read back with rasterio, rio-cogeo, pystac and stac-pydantic. The workflow tests run
on SQLite and PostgreSQL (the ``platform`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np
import pydantic
import pystac
import pytest
import rasterio
import stac_pydantic
from rio_cogeo.cogeo import cog_validate

from geoetl import gdalsafe
from geoetl.engine.models import JobStatus
from geoetl.errors import InputError
from geoetl.ingest import job_request
from geoetl.platform import Platform
from geoetl.raster import multidim
from geoetl.settings import Settings
from geoetl.storage.objectstore import sha256_file
from geoetl.workers import make_runner
from geoetl.workflows.process_raster import ProcessRasterParams

TIMES = [0.0, 1.5, 31.0, 366.0]  # days since 2020-01-01
EXPECTED_TIMES = [
    "2020-01-01T00:00:00Z",
    "2020-01-02T12:00:00Z",
    "2020-02-01T00:00:00Z",
    "2021-01-01T00:00:00Z",
]
LATS = [10.0, 11.0, 12.0, 13.0, 14.0]  # south to north: a bottom-up grid
LONS = [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]
FILL = -9999


def tas_values() -> np.ndarray:
    """The packed int16 values of ``tas`` as stored: (time, lat, lon), one fill value."""
    packed = np.arange(4 * 5 * 6, dtype="int16").reshape(4, 5, 6) * 7 - 100
    packed[1, 0, 0] = FILL
    return packed


def make_netcdf(path: Path, *, calendar: str = "standard") -> Path:
    """3 variables on (time, lat, lon), 4 time steps, CF attributes, lat/lon axes."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.Conventions = "CF-1.8"
        ds.createDimension("time", len(TIMES))
        ds.createDimension("lat", len(LATS))
        ds.createDimension("lon", len(LONS))
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "days since 2020-01-01"
        time.calendar = calendar
        time.standard_name = "time"
        time[:] = TIMES
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat.standard_name = "latitude"
        lat[:] = LATS
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.units = "degrees_east"
        lon.standard_name = "longitude"
        lon[:] = LONS
        tas = ds.createVariable("tas", "i2", ("time", "lat", "lon"), fill_value=FILL)
        tas.units = "K"
        tas.scale_factor = 0.01
        tas.add_offset = 273.15
        tas.long_name = "near-surface air temperature"
        tas.standard_name = "air_temperature"
        tas.set_auto_maskandscale(False)
        tas[:] = tas_values()
        pr = ds.createVariable("pr", "f4", ("time", "lat", "lon"), fill_value=np.float32(-1))
        pr.units = "kg m-2 s-1"
        pr.long_name = "precipitation flux"
        pr[:] = np.linspace(0, 1, 120, dtype="float32").reshape(4, 5, 6)
        q = ds.createVariable("q", "f4", ("time", "lat", "lon"))
        q.units = "1"
        q[:] = np.ones((4, 5, 6), dtype="float32")
    return path


@pytest.fixture
def nc(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return make_netcdf(folder / "climate.nc")


def extract(path: Path, variable: str | None, time_index: int | None = None) -> Path:
    out = multidim.extract(gdalsafe.user_file(path), variable, time_index, path.parent.parent)
    return Path(out.path)


# --- the variable as a GeoTIFF --------------------------------------------------------------


def test_variable_is_copied_north_up_with_its_cf_metadata_and_times(nc: Path) -> None:
    with rasterio.open(extract(nc, "tas")) as ds:
        assert ds.count == 4
        assert ds.crs == rasterio.crs.CRS.from_epsg(4326)  # CF lat/lon axes
        assert tuple(ds.bounds) == (19.5, 9.5, 25.5, 14.5)
        assert ds.transform.e < 0  # north-up
        # Values as stored (packed), the first row the northernmost latitude.
        assert np.array_equal(ds.read(), tas_values()[:, ::-1, :])
        assert ds.dtypes[0] == "int16"
        assert ds.nodata == FILL
        assert ds.scales == (0.01,) * 4
        assert ds.offsets == (273.15,) * 4
        assert ds.units == ("K",) * 4
        assert list(ds.descriptions) == EXPECTED_TIMES
        assert ds.tags(1)["standard_name"] == "air_temperature"
        assert ds.tags(1)["long_name"] == "near-surface air temperature"
        assert [ds.tags(b)["time"] for b in ds.indexes] == EXPECTED_TIMES
        tags = ds.tags()
        assert tags["variable"] == "tas"
        assert tags["time_coverage_start"] == EXPECTED_TIMES[0]
        assert tags["time_coverage_end"] == EXPECTED_TIMES[-1]


def test_one_time_step(nc: Path) -> None:
    with rasterio.open(extract(nc, "tas", 2)) as ds:
        assert ds.count == 1
        assert np.array_equal(ds.read(1), tas_values()[2, ::-1, :])
        assert ds.descriptions == (EXPECTED_TIMES[2],)
        assert ds.tags()["time_coverage_start"] == ds.tags()["time_coverage_end"]
    with pytest.raises(InputError, match="has 4 time steps, not 5"):
        extract(nc, "tas", 4)


def test_several_variables_and_none_chosen_lists_them(nc: Path) -> None:
    with pytest.raises(InputError, match=r"several variables \(tas, pr, q\).*--variable"):
        extract(nc, None)


def test_a_variable_not_in_the_file_lists_those_that_are(nc: Path) -> None:
    with pytest.raises(InputError, match=r"has no variable 'tos'; its variables are: tas, pr, q"):
        extract(nc, "tos")


HOSTILE = [
    'tas":/vsicurl/http://example.com/x',
    "/vsicurl/http://example.com/x",
    "../tas",
    "lat/../../etc/passwd",
    'NETCDF:"/etc/passwd":x',
    "tas q",
    "",
    "t" * 200,
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_variable_names_are_refused(nc: Path, name: str) -> None:
    with pytest.raises(InputError, match="not a variable name geoetl accepts"):
        extract(nc, name)
    with pytest.raises(pydantic.ValidationError, match="not a variable name geoetl accepts"):
        ProcessRasterParams(source="bronze/x/climate.nc", variable=name)


def test_the_only_data_variable_is_chosen(tmp_path: Path) -> None:
    path = tmp_path / "one.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 2)
        ds.createDimension("nv", 2)
        ds.createDimension("lat", 3)
        ds.createDimension("lon", 4)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "hours since 2000-01-01 00:00:00"
        time.bounds = "time_bnds"
        time[:] = [6, 18]
        bnds = ds.createVariable("time_bnds", "f8", ("time", "nv"))  # 2D, not data
        bnds[:] = [[0, 12], [12, 24]]
        for name, values in (("lat", [50.0, 51.0, 52.0]), ("lon", [0.0, 1.0, 2.0, 3.0])):
            axis = ds.createVariable(name, "f8", (name,))
            axis.units = "degrees_north" if name == "lat" else "degrees_east"
            axis[:] = values
        sst = ds.createVariable("sst", "f4", ("time", "lat", "lon"))
        sst.units = "degC"
        sst[:] = np.arange(24, dtype="float32").reshape(2, 3, 4)
    with rasterio.open(extract(path, None)) as ds:
        assert ds.tags()["variable"] == "sst"
        assert list(ds.descriptions) == ["2000-01-01T06:00:00Z", "2000-01-01T18:00:00Z"]
        assert np.array_equal(ds.read(2), np.arange(12, 24).reshape(3, 4)[::-1])


def test_a_calendar_without_real_dates_keeps_its_text_but_gives_no_coverage(
    tmp_path: Path,
) -> None:
    path = make_netcdf(tmp_path / "model.nc", calendar="360_day")
    with rasterio.open(extract(path, "pr")) as ds:
        # 31 days after 2020-01-01 in a 360-day calendar: 2020-02-02.
        assert ds.descriptions[2] == "2020-02-02T00:00:00"
        assert "time_coverage_start" not in ds.tags()
        assert ds.tags()["time_calendar"] == "360_day"


def test_projected_grid_mapping_gives_the_crs(tmp_path: Path) -> None:
    path = tmp_path / "utm.nc"  # one variable: GDAL opens the file as it
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 3)
        ds.createDimension("x", 4)
        x = ds.createVariable("x", "f8", ("x",))
        x.standard_name = "projection_x_coordinate"
        x.units = "m"
        x[:] = 500000 + 1000 * np.arange(4)
        y = ds.createVariable("y", "f8", ("y",))
        y.standard_name = "projection_y_coordinate"
        y.units = "m"
        y[:] = 5000000 + 1000 * np.arange(3)
        crs = ds.createVariable("crs", "i4")
        crs.grid_mapping_name = "transverse_mercator"
        crs.scale_factor_at_central_meridian = 0.9996
        crs.longitude_of_central_meridian = 15.0
        crs.latitude_of_projection_origin = 0.0
        crs.false_easting = 500000.0
        crs.false_northing = 0.0
        crs.semi_major_axis = 6378137.0
        crs.inverse_flattening = 298.257223563
        elev = ds.createVariable("elev", "f4", ("y", "x"))
        elev.grid_mapping = "crs"
        elev.units = "m"
        elev[:] = np.arange(12, dtype="float32").reshape(3, 4)
    with pytest.raises(InputError, match="has no variable 'tas'; its variables are: elev"):
        extract(path, "tas")
    with rasterio.open(extract(path, "elev")) as ds:
        assert ds.crs.to_epsg() == 32633
        assert tuple(ds.bounds) == (499500.0, 4999500.0, 503500.0, 5002500.0)
        assert np.array_equal(ds.read(1), np.arange(12).reshape(3, 4)[::-1])
        assert ds.descriptions == ("elev",)  # no time axis: the variable's name
        assert ds.units == ("m",)


def test_longitudes_from_0_to_360_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "global.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("lat", 3)
        ds.createDimension("lon", 4)
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat[:] = [-60.0, 0.0, 60.0]
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.units = "degrees_east"
        lon[:] = [45.0, 135.0, 225.0, 315.0]
        ds.createVariable("t", "f4", ("lat", "lon"))[:] = np.zeros((3, 4), "float32")
    with pytest.raises(InputError, match="longitudes run from 0 to 360, and geoetl publishes"):
        extract(path, None)


def test_a_netcdf_variable_without_axes_has_no_georeferencing(tmp_path: Path) -> None:
    path = tmp_path / "grid.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 3)
        ds.createDimension("x", 4)
        ds.createVariable("v", "f4", ("y", "x"))[:] = np.zeros((3, 4), "float32")
        ds.createVariable("w", "f4", ("y", "x"))[:] = np.zeros((3, 4), "float32")
    with pytest.raises(InputError, match="no georeferencing for this NetCDF variable"):
        extract(path, "v")


# --- HDF5 ----------------------------------------------------------------------------------

ODL = """GROUP=SwathStructure
END_GROUP=SwathStructure
GROUP=GridStructure
\tGROUP=GRID_1
\t\tGridName="Grid"
\t\tXDim=6
\t\tYDim=5
\t\tUpperLeftPointMtrs=(20000000.000000,14000000.000000)
\t\tLowerRightMtrs=(26000000.000000,9000000.000000)
\t\tProjection=HE5_GCTP_GEO
\t\tGridOrigin=HE5_HDFE_GD_UL
\t\tGROUP=Dimension
\t\tEND_GROUP=Dimension
\t\tGROUP=DataField
{fields}\t\tEND_GROUP=DataField
\t\tGROUP=MergedFields
\t\tEND_GROUP=MergedFields
\tEND_GROUP=GRID_1
END_GROUP=GridStructure
GROUP=PointStructure
END_GROUP=PointStructure
GROUP=ZaStructure
END_GROUP=ZaStructure
END
"""
FIELD = """\t\t\tOBJECT=DataField_{n}
\t\t\t\tDataFieldName="{name}"
\t\t\t\tDataType=H5T_NATIVE_FLOAT
\t\t\t\tDimList=("YDim","XDim")
\t\t\t\tMaxdimList=("YDim","XDim")
\t\t\tEND_OBJECT=DataField_{n}
"""


def make_hdf_eos(path: Path, fields: dict[str, np.ndarray]) -> Path:
    """An HDF-EOS5 geographic grid (20..26 E, 9..14 N, 1 degree), which GDAL georeferences."""
    text = "".join(FIELD.format(n=n, name=name) for n, name in enumerate(fields, start=1))
    with h5py.File(path, "w") as f:
        for name, values in fields.items():
            ds = f.create_dataset(f"HDFEOS/GRIDS/Grid/Data Fields/{name}", data=values)
            ds.attrs["units"] = np.bytes_("K")
        f.create_group("HDFEOS/ADDITIONAL/FILE_ATTRIBUTES")
        info = f.create_group("HDFEOS INFORMATION")
        info.attrs["HDFEOSVersion"] = np.bytes_("HDFEOS_5.1.15")
        info.create_dataset("StructMetadata.0", data=np.bytes_(ODL.format(fields=text)))
    return path


def test_hdf5_grid_variable_is_read_georeferenced(tmp_path: Path) -> None:
    temp = np.arange(30, dtype="float32").reshape(5, 6)
    path = make_hdf_eos(tmp_path / "grid.he5", {"temp": temp, "skin": temp + 100})
    with pytest.raises(InputError, match="several variables"):
        extract(path, None)
    with rasterio.open(extract(path, "HDFEOS/GRIDS/Grid/Data_Fields/skin")) as ds:
        assert tuple(round(b, 6) for b in ds.bounds) == (20.0, 9.0, 26.0, 14.0)
        assert ds.crs.is_geographic
        assert np.array_equal(ds.read(1), temp + 100)
        assert ds.units == ("K",)
    with pytest.raises(InputError, match=r"its variables are: .*Data_Fields/skin"):
        extract(path, "HDFEOS/GRIDS/Grid/Data_Fields/nope")


def test_hdf5_without_georeferencing_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["data/temp"] = np.zeros((3, 4), "float32")
        f["data/other"] = np.zeros((3, 4), "float32")
    with pytest.raises(InputError, match="no georeferencing for this HDF5 dataset"):
        extract(path, "data/temp")


def _external_link(f: h5py.File, secret: Path) -> None:
    f["data"] = h5py.ExternalLink(str(secret), "/stolen")


def _external_storage(f: h5py.File, secret: Path) -> None:
    f.create_dataset("data", shape=(4, 4), dtype="uint8", external=[(str(secret), 0, 16)])


def _virtual(f: h5py.File, secret: Path) -> None:
    layout = h5py.VirtualLayout(shape=(4, 4), dtype="uint8")
    layout[:] = h5py.VirtualSource(str(secret), "stolen", shape=(4, 4))
    f.create_virtual_dataset("data", layout)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_external_link, "external link"),
        (_external_storage, "external storage"),
        (_virtual, "a virtual dataset"),
    ],
)
def test_hdf5_that_reads_other_files_is_refused(tmp_path: Path, make: Any, message: str) -> None:
    secret = tmp_path / "secret.h5"  # outside the upload's folder
    with h5py.File(secret, "w") as f:
        f["stolen"] = np.full((4, 4), 42, dtype="uint8")
    folder = tmp_path / "upload"
    folder.mkdir()
    for suffix in (".h5", ".nc"):  # NetCDF-4 is HDF5: the name changes nothing
        path = folder / f"evil{suffix}"
        with h5py.File(path, "w") as f:
            f["lat"] = np.arange(4.0)
            make(f, secret)
        with pytest.raises(InputError, match=message):
            gdalsafe.user_file(path)


# --- process_raster and process_raster_times, on SQLite and PostgreSQL -------------------


def put(platform: Platform, path: Path) -> str:
    key = f"bronze/{sha256_file(path)}/{path.name}"
    platform.objects.put_file(path, key)
    return key


def run(platform: Platform, workflow: str, params: dict[str, Any]) -> dict[str, Any]:
    job_id, _ = platform.store.submit(workflow, params)
    runner = make_runner(platform, "netcdf-test")
    try:
        status = runner.run_job(job_id)
    finally:
        runner.close()
    view = platform.queries.job(job_id)
    assert status == JobStatus.succeeded, view.error
    assert isinstance(view.result, dict)
    return view.result


def check_item(item_doc: dict[str, Any]) -> pystac.Item:
    stac_pydantic.Item.model_validate(item_doc)
    return pystac.Item.from_dict(item_doc)


def test_netcdf_variable_is_published_with_units_scaling_nodata_and_times(
    platform: Platform, nc: Path
) -> None:
    workflow, params = job_request("raster", put(platform, nc), {"variable": "tas"})
    assert workflow == "process_raster"
    result = run(platform, workflow, params)
    assert result["item_id"] == "climate_tas"
    cog = platform.objects.gdal_path(result["cog"])
    assert cog_validate(cog, quiet=True)[0]
    with rasterio.open(cog) as out:  # an independent reader
        assert out.crs == rasterio.crs.CRS.from_epsg(4326)
        assert np.array_equal(out.read(), tas_values()[:, ::-1, :])
        assert out.nodata == FILL
        assert out.scales == (0.01,) * 4
        assert out.offsets == (273.15,) * 4
        assert out.units == ("K",) * 4
        assert list(out.descriptions) == EXPECTED_TIMES
        assert out.tags(1)["standard_name"] == "air_temperature"
        assert out.tags()["time_coverage_end"] == EXPECTED_TIMES[-1]
    item = check_item(platform.catalog.get_item("system-rasters", "climate_tas"))
    assert item.datetime == datetime(2020, 1, 1, tzinfo=UTC)
    assert item.properties["start_datetime"] == EXPECTED_TIMES[0]
    assert item.properties["end_datetime"] == EXPECTED_TIMES[-1]
    bands = item.assets["data"].extra_fields["raster:bands"]
    assert [b["unit"] for b in bands] == ["K"] * 4
    assert [(b["scale"], b["offset"]) for b in bands] == [(0.01, 273.15)] * 4
    assert [b["nodata"] for b in bands] == [FILL] * 4
    assert [b["data_type"] for b in bands] == ["int16"] * 4


@pytest.mark.parametrize("in_memory", [True, False], ids=["warp-in-memory", "warp-streamed"])
def test_reprojected_variable_keeps_its_metadata(
    settings: Settings, nc: Path, in_memory: bool
) -> None:
    memory = settings.raster_warp_memory_mb if in_memory else 0
    platform = Platform.from_settings(settings.model_copy(update={"raster_warp_memory_mb": memory}))
    try:
        source = put(platform, nc)
        result = run(
            platform,
            "process_raster",
            {"source": source, "variable": "pr", "target_crs": "EPSG:3857", "item_id": "pr"},
        )
        with rasterio.open(platform.objects.gdal_path(result["cog"])) as out:
            assert out.crs == rasterio.crs.CRS.from_epsg(3857)
            assert out.nodata == -1
            assert list(out.descriptions) == EXPECTED_TIMES
            assert out.tags(1)["units"] == "kg m-2 s-1"
            if in_memory:
                assert out.units == ("kg m-2 s-1",) * 4
        item = check_item(platform.catalog.get_item("system-rasters", "pr"))
        assert item.properties["end_datetime"] == EXPECTED_TIMES[-1]
        bands = item.assets["data"].extra_fields["raster:bands"]
        assert [b["unit"] for b in bands] == ["kg m-2 s-1"] * 4
    finally:
        platform.close()


def test_a_big_variable_is_written_in_windows_from_the_variable(
    settings: Settings, tmp_path: Path
) -> None:
    """Above raster_split_bytes every window task reads the chosen variable, not the file."""
    rows, cols = 1200, 640
    path = tmp_path / "big.nc"
    values = (np.arange(rows * cols, dtype="int32").reshape(rows, cols) % 30000).astype("i2")
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 2)
        ds.createDimension("lat", rows)
        ds.createDimension("lon", cols)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "days since 2020-01-01"
        time[:] = [0.0, 1.0]
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat.standard_name = "latitude"
        lat[:] = np.linspace(-59.95, 59.95, rows)
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.units = "degrees_east"
        lon.standard_name = "longitude"
        lon[:] = np.linspace(0.05, 63.95, cols)
        for name in ("tas", "other"):
            var = ds.createVariable(name, "i2", ("time", "lat", "lon"), fill_value=FILL)
            var.units = "K"
            var[:] = np.stack([values, values[::-1]]) if name == "tas" else 0
    split = settings.model_copy(update={"raster_split_bytes": 1024 * 1024})
    platform = Platform.from_settings(split)
    try:
        source = put(platform, path)
        params = {"source": source, "variable": "tas", "target_crs": None, "item_id": "big"}
        job_id, _ = platform.store.submit("process_raster", params)
        result = run(platform, "process_raster", params)
        windows = platform.queries.tasks(job_id, stage="cog", limit=100).items
        assert len(windows) > 1, "the variable must be split into windows"
        with rasterio.open(platform.objects.gdal_path(result["cog"])) as out:
            assert out.count == 2
            assert np.array_equal(out.read(1), values[::-1, :])
            assert np.array_equal(out.read(2), values)
            assert out.units == ("K", "K")
    finally:
        platform.close()


def test_time_steps_as_items_each_with_its_datetime(platform: Platform, nc: Path) -> None:
    workflow, params = job_request(
        "raster", put(platform, nc), {"variable": "tas", "time_as": "items", "collection_id": "t"}
    )
    assert workflow == "process_raster_times"
    result = run(platform, workflow, params)
    ids = [i["item_id"] for i in result["items"]]
    assert ids == [
        "climate_tas_20200101T000000",
        "climate_tas_20200102T120000",
        "climate_tas_20200201T000000",
        "climate_tas_20210101T000000",
    ]
    for index, item_id in enumerate(ids):
        item = check_item(platform.catalog.get_item("t", item_id))
        assert item.datetime == datetime.fromisoformat(EXPECTED_TIMES[index])
        assert "start_datetime" not in item.properties
        assert item.assets["data"].extra_fields["raster:bands"][0]["unit"] == "K"
        cog = platform.objects.gdal_path(f"silver/cogs/t/{item_id}_analysis.tif")
        assert item.assets["data"].href.endswith(f"{item_id}_analysis.tif")
        with rasterio.open(cog) as out:
            assert np.array_equal(out.read(1), tas_values()[index, ::-1, :])
            assert out.descriptions == (EXPECTED_TIMES[index],)
            assert (out.scales, out.offsets, out.nodata) == ((0.01,), (273.15,), FILL)
    assert result["published"] == 4
    _job, idempotent = platform.store.submit(workflow, params)
    assert idempotent  # the same request again is the same job


def test_wrong_variable_fails_the_job_with_the_list(platform: Platform, nc: Path) -> None:
    job_id, _ = platform.store.submit(
        "process_raster", {"source": put(platform, nc), "variable": "tos"}
    )
    runner = make_runner(platform, "netcdf-test")
    try:
        assert runner.run_job(job_id) == JobStatus.failed
    finally:
        runner.close()
    error = platform.queries.job(job_id).error or {}
    assert "has no variable 'tos'; its variables are: tas, pr, q" in str(error)


def test_variable_for_a_geotiff_is_refused(platform: Platform) -> None:
    tif = Path(__file__).parents[2] / "examples" / "data" / "elev.tif"
    job_id, _ = platform.store.submit(
        "process_raster", {"source": put(platform, tif), "variable": "tas"}
    )
    runner = make_runner(platform, "netcdf-test")
    try:
        assert runner.run_job(job_id) == JobStatus.failed
    finally:
        runner.close()
    assert "is not a NetCDF or HDF5 file" in str(platform.queries.job(job_id).error)
