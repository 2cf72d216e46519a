"""GeoDataFrames to and from the Arrow tables feature stores read and write."""

from __future__ import annotations

import geopandas as gpd
import pyarrow as pa


def to_arrow(frame: gpd.GeoDataFrame) -> pa.Table:
    """``frame`` as ``write_chunk`` takes it: WKB tagged ``geoarrow.wkb`` with its CRS."""
    return pa.table(frame.to_arrow(geometry_encoding="WKB", index=False))


def to_frame(table: pa.Table) -> gpd.GeoDataFrame:
    """What a store's ``read`` returned, as a GeoDataFrame (its CRS from the column)."""
    return gpd.GeoDataFrame.from_arrow(table)
