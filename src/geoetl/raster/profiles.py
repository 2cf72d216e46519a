"""COG profiles by raster type and tier (SPEC "Raster processing", step 2)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from geoetl.raster.inspect import RasterType

Tier = Literal["visualization", "analysis", "archive"]
TierChoice = Literal["visualization", "analysis", "archive", "all"]
BLOCKSIZE = 512
# DEFLATE level of the analysis tier. libdeflate (GDAL's DEFLATE codec) switches to a
# slower parser at level 6: on the benchmark inputs level 5 wrote the COG 1.3-1.7x faster
# for files 2-8% larger (docs/benchmarks.md, "Raster (issue 3)"). Archive keeps level 9.
ANALYSIS_DEFLATE_LEVEL = 5


class CogProfile(BaseModel):
    """How one COG is written."""

    tier: Tier
    compress: str
    predictor: int | None = None
    level: int | None = None
    quality: int | None = None
    resampling: str = "bilinear"
    overview_resampling: str = "average"
    interleave: str | None = None

    def creation_options(self) -> dict[str, str]:
        """GDAL COG driver creation options."""
        opts = {
            "COMPRESS": self.compress,
            "BLOCKSIZE": str(BLOCKSIZE),
            "OVERVIEW_RESAMPLING": self.overview_resampling.upper(),
            "NUM_THREADS": "ALL_CPUS",
            "BIGTIFF": "IF_SAFER",
        }
        if self.predictor:
            opts["PREDICTOR"] = str(self.predictor)
        if self.level is not None:
            opts["LEVEL"] = str(self.level)
        if self.quality is not None:
            opts["QUALITY"] = str(self.quality)
        if self.interleave:
            opts["INTERLEAVE"] = self.interleave
        return opts


def tiers_for(choice: TierChoice, raster_type: RasterType) -> list[Tier]:
    """The tiers to produce; visualization exists for rgb/rgba imagery only."""
    if choice != "all":
        return [choice]
    if raster_type in ("rgb", "rgba"):
        return ["visualization", "analysis", "archive"]
    return ["analysis", "archive"]


def cog_profile(raster_type: RasterType, tier: Tier, dtype: str, jpeg_quality: int) -> CogProfile:
    """The profile for one (type, tier); lossless unless the tier is visualization."""
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    predictor = 3 if floating else 2
    if raster_type in ("rgb", "rgba"):
        if tier == "visualization":
            if raster_type == "rgba":
                return CogProfile(tier=tier, compress="WEBP", quality=jpeg_quality)
            return CogProfile(tier=tier, compress="JPEG", quality=jpeg_quality)
        if tier == "archive":
            return CogProfile(tier=tier, compress="ZSTD", predictor=2, level=15)
        return CogProfile(tier=tier, compress="DEFLATE", predictor=2, level=ANALYSIS_DEFLATE_LEVEL)
    if raster_type == "categorical":
        return CogProfile(
            tier=tier,
            compress="DEFLATE",
            level=9 if tier == "archive" else ANALYSIS_DEFLATE_LEVEL,
            resampling="nearest",
            overview_resampling="mode",
        )
    if raster_type in ("multispectral", "nir"):
        return CogProfile(
            tier=tier,
            compress="ZSTD" if tier == "archive" else "DEFLATE",
            predictor=predictor,
            level=15 if tier == "archive" else ANALYSIS_DEFLATE_LEVEL,
        )
    # dem and other continuous single-band data; a visualization tier is rendered, not stored
    return CogProfile(
        tier="archive" if tier == "archive" else "analysis",
        compress="DEFLATE",
        predictor=predictor,
        level=9 if tier == "archive" else ANALYSIS_DEFLATE_LEVEL,
    )
