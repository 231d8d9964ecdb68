"""Pooling feature maps over an ROI and wrapping them as georeferenced grids."""

from __future__ import annotations

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.features import geometry_mask

from rsembed_db.errors import TileFailure
from rsembed_db.models.base import FeatureMap, PooledFeatures, TileFeatures
from rsembed_db.specs.output import POOLINGS
from rsembed_db.specs.validate import require_choice
from rsembed_db.tiling.chip_grid import ChipGrid

NO_VALID_CELL = "no valid pixel inside the ROI (all fill / no-data)"
_MEAN_BLOCK = 1 << 16  # float64 values converted at once by the mean (512 KiB)


def roi_cells(features: FeatureMap, grid: ChipGrid) -> np.ndarray:
    """(h, w) mask of feature cells inside the ROI that hold valid values."""
    _, h, w = features.values.shape
    return grid.roi_mask((h, w), features.transform) & features.valid


def pool(features: FeatureMap, grid: ChipGrid, how: str = "mean") -> np.ndarray:
    """(D,) float32 mean or max over valid feature cells inside the ROI.

    A tiled run pools each tile over its own valid cells inside the ROI, then combines
    the tile vectors: the mean weighted by the ROI pixels each tile owns, or the max.
    """
    require_choice("output.pooling", how, POOLINGS)
    if features.tiles is not None:
        return _pool_tiles(features.tiles, grid, how)
    cells = roi_cells(features, grid)
    if not cells.any():
        raise TileFailure(NO_VALID_CELL)
    return reduce_cells(features.values[:, cells], how)


def reduce_cells(values: np.ndarray, how: str) -> np.ndarray:
    """(D,) float32 mean or max over the last axis of (D, N) float32 cell values, in float64."""
    return _reduce(values, how).astype(np.float32)


def pool_maps(maps: list[FeatureMap], grids: list[ChipGrid], poolings: list[str]) -> list[PooledFeatures]:
    """``pool`` of each feature map over its grid's ROI, a failure where no valid cell lies there."""
    out = []
    for features, grid, how in zip(maps, grids, poolings, strict=True):
        try:
            out.append(PooledFeatures(pool(features, grid, how), meta=features.meta))
        except TileFailure as exc:
            out.append(PooledFeatures(None, str(exc), features.meta))
    return out


def _reduce(values: np.ndarray, how: str) -> np.ndarray:
    """Mean or max over the last axis of (D, N) values, in float64.

    The mean converts a few rows at a time (the same per-row sums as converting all at
    once): a small buffer stays in cache and needs no fresh pages.
    """
    if how == "max":
        return values.max(axis=1).astype(np.float64)  # max is exact in any precision
    rows = max(1, _MEAN_BLOCK // max(1, values.shape[1]))
    return np.concatenate([values[r:r + rows].astype(np.float64).mean(axis=1)
                           for r in range(0, values.shape[0], rows)])


def _pool_tiles(tiles: list[TileFeatures], grid: ChipGrid, how: str) -> np.ndarray:
    roi_pixels = grid.roi_mask()
    vectors, weights = [], []
    for tile in tiles:
        y0, y1, x0, x1 = tile.owned
        weight = int(roi_pixels[y0:y1, x0:x1].sum())
        if weight == 0:
            continue
        shape = tile.valid.shape
        cells = grid.roi_mask(shape, tile.transform, touched_fallback=False) & tile.valid
        if not cells.any():  # the ROI part this tile owns lies between its cell centres
            cells = _touched(grid, shape, tile.transform) & tile.valid
        if cells.any():
            vectors.append(_reduce(tile.values[:, cells], how))
            weights.append(weight)
    if not vectors:
        raise TileFailure(NO_VALID_CELL)
    stacked = np.stack(vectors)
    if how == "max":
        return stacked.max(axis=0).astype(np.float32)
    return (np.asarray(weights, np.float64) @ stacked / sum(weights)).astype(np.float32)


def _touched(grid: ChipGrid, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """(h, w) cells of a grid that the ROI touches at all."""
    return geometry_mask([grid.roi], out_shape=shape, transform=transform, invert=True, all_touched=True)


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
