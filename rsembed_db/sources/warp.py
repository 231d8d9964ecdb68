"""Warping raster bands onto a chip grid: the one resampling every file-based source uses."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.warp import Resampling, reproject

from rsembed_db.tiling.chip_grid import ChipGrid

# reproject() warns about its own ungeoreferenced scratch dataset; rasterio silences that
# with a catch_warnings that is not thread-safe, so it leaks when fetches run on threads.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.warp")


def warp_to_grid(dataset: DatasetReader, indexes: Sequence[int], nodata: float | None,
                 grid: ChipGrid) -> np.ndarray:
    """(C, H, W) float32 of ``dataset`` bands on ``grid`` (bilinear), NaN in every band where
    any band is invalid (outside the raster or ``nodata``)."""
    out = np.full((len(indexes), grid.height, grid.width), np.nan, dtype=np.float32)
    reproject(
        rasterio.band(dataset, list(indexes)), out,
        src_nodata=nodata, dst_transform=grid.transform, dst_crs=grid.crs,
        dst_nodata=np.nan, resampling=Resampling.bilinear,
    )
    out[:, ~np.isfinite(out).all(axis=0)] = np.nan
    return out
