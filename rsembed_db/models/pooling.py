"""Pooling feature maps over an ROI and wrapping them as georeferenced grids."""

from __future__ import annotations

import numpy as np
import xarray as xr

from rsembed_db.errors import TileFailure
from rsembed_db.models.base import FeatureMap
from rsembed_db.specs.output import POOLINGS
from rsembed_db.specs.validate import require_choice
from rsembed_db.tiling.chip_grid import ChipGrid


def roi_cells(features: FeatureMap, grid: ChipGrid) -> np.ndarray:
    """(h, w) mask of feature cells inside the ROI that hold valid values."""
    _, h, w = features.values.shape
    return grid.roi_mask((h, w), features.transform) & features.valid


def pool(features: FeatureMap, grid: ChipGrid, how: str = "mean") -> np.ndarray:
    """(D,) float32 mean or max over valid feature cells inside the ROI."""
    require_choice("output.pooling", how, POOLINGS)
    cells = roi_cells(features, grid)
    if not cells.any():
        raise TileFailure("no valid pixel inside the ROI (all fill / no-data)")
    selected = features.values[:, cells].astype(np.float64)
    pooled = selected.mean(axis=1) if how == "mean" else selected.max(axis=1)
    return pooled.astype(np.float32)


def to_dataarray(features: FeatureMap, name: str = "embedding") -> xr.DataArray:
    """(D, y, x) DataArray with pixel-centre coordinates, CRS and affine transform attrs.

    Invalid cells are NaN.
    """
    values = np.where(features.valid[None], features.values, np.nan).astype(np.float32)
    d, h, w = values.shape
    t = features.transform
    xs = t.c + t.a * (np.arange(w) + 0.5)
    ys = t.f + t.e * (np.arange(h) + 0.5)
    return xr.DataArray(
        values,
        dims=("band", "y", "x"),
        coords={"band": np.arange(d), "y": ys, "x": xs},
        name=name,
        attrs={"crs": features.crs, "transform": tuple(t)[:6]},
    )
