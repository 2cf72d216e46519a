"""Running the real ``geoetl`` command in tests, as a user does."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine

from geoetl.settings import Settings
from tests.conftest import geoetl_cmd, settings_env

DATA = Path(__file__).parents[2] / "examples" / "data"


def env(settings: Settings, columns: int = 200) -> dict[str, str]:
    """The environment of a ``geoetl`` run on ``settings`` in a terminal ``columns`` wide."""
    return {**settings_env(settings), "COLUMNS": str(columns)}


def geoetl(
    settings: Settings, *args: str, columns: int = 200, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``geoetl ARGS`` to its end."""
    return subprocess.run(
        geoetl_cmd(*args),
        env=env(settings, columns),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(settings: Settings, *args: str) -> subprocess.Popen[str]:
    """Start ``geoetl ARGS``; Ctrl+C (SIGINT) reaches it even if this test ignores it."""
    return subprocess.Popen(
        geoetl_cmd(*args),
        env=env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starting tests in the background ignores SIGINT, and children inherit it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def slow_raster(path: Path, size: int = 4000) -> Path:
    """A raster whose COG takes a few seconds: random bytes compress slowly."""
    data = np.random.default_rng(0).integers(0, 255, (3, size, size), dtype="uint8")
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32618",
        "transform": Affine(10, 0, 500000, 0, -10, 4000000),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def parcels(path: Path, n: int) -> Path:
    """``n`` small polygons in UTM 18N, in a GeoPackage."""
    rng = np.random.default_rng(7)
    x = rng.uniform(500_000, 510_000, n)
    y = rng.uniform(4_500_000, 4_510_000, n)
    frame = gpd.GeoDataFrame(
        {"n": np.arange(n), "name": [f"parcel {i}" for i in range(n)]},
        geometry=shapely.buffer(shapely.points(x, y), 10, quad_segs=4),
        crs="EPSG:32618",
    )
    frame.to_file(path, driver="GPKG")
    return path
