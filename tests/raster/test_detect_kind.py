"""What `geoetl ingest` decides a file is, before any job: raster or vector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoetl.ingest import detect_kind


def _tiles_gpkg(path: Path) -> Path:
    profile = {
        "driver": "GPKG",
        "width": 256,
        "height": 256,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:3857",
        "transform": from_origin(0, 256 * 10, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((3, 256, 256), 120, dtype="uint8"))
    return path


def _vector_gpkg(path: Path) -> Path:
    import geopandas as gpd
    from shapely.geometry import Point

    gpd.GeoDataFrame({"name": ["a"]}, geometry=[Point(1, 2)], crs="EPSG:4326").to_file(path)
    return path


def test_a_geopackage_of_tiles_is_a_raster_and_one_of_features_a_vector(tmp_path: Path) -> None:
    tiles = _tiles_gpkg(tmp_path / "tiles.gpkg")
    features = _vector_gpkg(tmp_path / "places.gpkg")
    assert detect_kind(tiles.name, str(tiles)) == "raster"
    assert detect_kind(features.name, str(features)) == "vector"


def test_a_broken_geopackage_goes_to_the_vector_pipeline(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gpkg"
    broken.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    assert detect_kind(broken.name, str(broken)) == "vector"


@pytest.mark.parametrize("name", ["regions.geojson", "places.gpkg"])
def test_vector_files_are_recognised_without_loading_rasterio(tmp_path: Path, name: str) -> None:
    """A vector ingest does not pay for rasterio's GDAL (tens of MiB of its peak memory)."""
    path = tmp_path / name
    if name.endswith(".gpkg"):
        _vector_gpkg(path)
    else:
        path.write_text('{"type": "FeatureCollection", "features": []}')
    code = (
        "import sys; from geoetl.ingest import detect_kind; "
        f"print(detect_kind({name!r}, {str(path)!r}), 'rasterio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["vector", "False"]
