"""Grid output of tiled products: tiles mosaicked onto one north-up target grid.

Each tile contributes the pixels it owns, in tile order; where the tile and the target share CRS,
pixel size and alignment the pixels are copied, otherwise they are reprojected with
nearest-neighbour resampling (values are never blended).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.warp import Resampling, reproject, transform_bounds

from rsembed_db.models.base import FeatureMap
from rsembed_db.producers.products.zonal import PixelGrid

_ALIGN_TOL = 1e-6


@dataclass(frozen=True)
class GridTarget:
    crs: str
    transform: Affine
    shape: tuple[int, int]

    def empty(self, dim: int) -> np.ndarray:
        return np.full((dim, *self.shape), np.nan, dtype=np.float32)

    def features(self, values: np.ndarray) -> FeatureMap:
        return FeatureMap(values, ~np.isnan(values).all(axis=0), self.transform, self.crs)


def tile_piece(grid: PixelGrid, target: GridTarget) -> np.ndarray | None:
    """(D, H, W) target-grid values from ``grid``'s owned valid pixels (NaN elsewhere)."""
    window = _window(grid, target)
    if window is None:
        return None
    r0, r1, c0, c1 = window
    width = grid.shape[1]
    rows, cols = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    flat = (rows * width + cols).ravel()
    ok = grid.valid.ravel()[flat]
    if not ok.any():
        return None
    values = grid.values(flat[ok])
    src = np.full((flat.size, values.shape[1]), np.nan, dtype=np.float32)
    src[ok] = values
    src = np.ascontiguousarray(src.T.reshape(values.shape[1], r1 - r0, c1 - c0))
    src_transform = grid.transform @ Affine.translation(c0, r0)
    piece = _aligned(src, src_transform, grid.crs, target)
    if piece is None:
        piece = target.empty(values.shape[1])
        reproject(src, piece, src_transform=src_transform, src_crs=grid.crs,
                  dst_transform=target.transform, dst_crs=target.crs,
                  resampling=Resampling.nearest, src_nodata=np.nan, dst_nodata=np.nan)
    return piece


def fill(mosaic: np.ndarray, piece: np.ndarray) -> None:
    """Copy ``piece`` into ``mosaic`` where the mosaic has no value yet (first tile wins)."""
    empty = np.isnan(mosaic) & ~np.isnan(piece)
    mosaic[empty] = piece[empty]


def _window(grid: PixelGrid, target: GridTarget) -> tuple[int, int, int, int] | None:
    """Rows/cols of ``grid`` covering the target (one pixel margin), or None."""
    t = target.transform
    h, w = target.shape
    left, top, right, bottom = t.c, t.f, t.c + t.a * w, t.f + t.e * h
    xmin, ymin, xmax, ymax = transform_bounds(target.crs, grid.crs, min(left, right),
                                              min(top, bottom), max(left, right),
                                              max(top, bottom), densify_pts=21)
    inv = ~grid.transform
    us, vs = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)))
    height, width = grid.shape
    r0, r1 = max(math.floor(min(vs)) - 1, 0), min(math.ceil(max(vs)) + 1, height)
    c0, c1 = max(math.floor(min(us)) - 1, 0), min(math.ceil(max(us)) + 1, width)
    return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def _aligned(src: np.ndarray, src_transform: Affine, src_crs: str, target: GridTarget
             ) -> np.ndarray | None:
    """The target-grid piece by plain slicing when the grids line up, else None."""
    t, s = target.transform, src_transform
    if src_crs != target.crs or abs(t.a - s.a) > _ALIGN_TOL or abs(t.e - s.e) > _ALIGN_TOL \
            or t.b or t.d or s.b or s.d:
        return None
    dc, dr = (t.c - s.c) / s.a, (t.f - s.f) / s.e
    if abs(dc - round(dc)) > _ALIGN_TOL or abs(dr - round(dr)) > _ALIGN_TOL:
        return None
    dc, dr = round(dc), round(dr)
    piece = target.empty(src.shape[0])
    h, w = target.shape
    # Target pixel (i, j) is source pixel (i + dr, j + dc).
    i0, j0 = max(0, -dr), max(0, -dc)
    i1, j1 = min(h, src.shape[1] - dr), min(w, src.shape[2] - dc)
    if i0 < i1 and j0 < j1:
        piece[:, i0:i1, j0:j1] = src[:, i0 + dr:i1 + dr, j0 + dc:j1 + dc]
    return piece
