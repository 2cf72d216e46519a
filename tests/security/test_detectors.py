"""The probes' detectors detect: a VRT read trips the FIFO, a /vsicurl/ fetch hits the listener.

Without these, a hostile-file probe that passes could mean the detector is blind. GDAL
runs here, in the test process, doing what a careless server would do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from rasterio.errors import RasterioError

from tests.security.conftest import FifoTripwire, LoopbackListener
from tests.security.test_hostile_files import gdal_vrt


def test_reading_a_vrt_that_points_at_the_fifo_trips_it(
    tripwire: FifoTripwire, tmp_path: Path
) -> None:
    vrt = tmp_path / "x.vrt"
    vrt.write_bytes(gdal_vrt(str(tripwire.path)))
    with pytest.raises(RasterioError), rasterio.open(vrt) as ds:
        ds.read(1)
    assert tripwire.opened > 0


def test_a_vsicurl_read_hits_the_listener(listener: LoopbackListener) -> None:
    with (
        rasterio.Env(GDAL_HTTP_MAX_RETRY=0, CPL_VSIL_CURL_ALLOWED_EXTENSIONS=".tif"),
        pytest.raises(RasterioError),
    ):
        rasterio.open(f"/vsicurl/{listener.url}/x.tif")
    assert listener.hits
