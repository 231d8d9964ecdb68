"""Zonal pooling: per-ROI mean/max over a raster's pixels, mergeable across rasters.

A product tile (or block) is pooled for every ROI touching it in one pass: the ROIs
are rasterised together (``scanline``), pixels are gathered grouped by ROI and
reduced in cache-sized chunks. Results are partial (sum or max, counts), so an ROI
spanning several tiles, even in different CRSs, is pooled exactly over the union of
its pixels without mosaicking: each ground pixel is counted once, in the tile that
owns it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from affine import Affine

from rsembed_db.models.products.scanline import polygon_pixels

CHUNK_PIXELS = 2048  # pixels per reduction step: (2048, D) float32 stays in cache


@dataclass
class PixelGrid:
    """A raster in its native grid, ready for pooling.

    ``owned``: pixels this raster is responsible for (None: all); ``valid``: owned
    pixels holding a value; ``values(flat)`` returns (n, D) float32 for flat indices.
    """

    crs: str
    transform: Affine
    shape: tuple[int, int]
    valid: np.ndarray
    owned: np.ndarray | None
    values: Callable[[np.ndarray], np.ndarray]


@dataclass
class Pooled:
    """Partial pooling state of one ROI; ``merge`` combines rasters."""

    how: str
    total: np.ndarray | None = None  # (D,) float64: sum (mean) or running max
    count: int = 0  # valid pixels pooled
    pixels: int = 0  # owned pixels inside the ROI, valid or not
    centre: np.ndarray | None = None  # value of the pixel holding the ROI centroid
    centre_seen: bool = False  # that pixel belongs to a raster seen so far
    sources: list[str] = field(default_factory=list)

    def merge(self, other: "Pooled") -> None:
        if other.total is not None:
            if self.total is None:
                self.total = other.total.copy()
            elif self.how == "mean":
                self.total += other.total
            else:
                np.maximum(self.total, other.total, out=self.total)
        self.count += other.count
        self.pixels += other.pixels
        if other.centre_seen:
            self.centre, self.centre_seen = other.centre, True
        self.sources += other.sources

    def result(self) -> tuple[np.ndarray, dict] | str:
        """(float32 vector, meta) or the reason no vector exists.

        An ROI containing no pixel centre (smaller than a pixel) takes the pixel that
        holds its centroid, and says so in meta.
        """
        if self.pixels:
            if not self.count:
                return (f"no valid pixel among the {self.pixels} inside the ROI "
                        "(open water / no-data)")
            vector = self.total / self.count if self.how == "mean" else self.total
            return vector.astype(np.float32), {"pixels": self.count}
        if self.centre_seen:
            if self.centre is None:
                return "the ROI is smaller than a pixel and its pixel holds no data (open water / no-data)"
            return self.centre.astype(np.float32), {"pixels": 1, "roi_smaller_than_pixel": True}
        return "no pixel of the product covers the ROI"


def pool_grid(grid: PixelGrid, rois: np.ndarray, centroids: np.ndarray, how: str,
              source: str) -> list[Pooled]:
    """One Pooled per ROI (polygons and (n, 2) centroids in ``grid.crs``)."""
    n = len(rois)
    out = [Pooled(how, sources=[source]) for _ in range(n)]
    flat, owner = polygon_pixels(rois, grid.transform, grid.shape)
    if grid.owned is not None:
        keep = grid.owned.ravel()[flat]
        flat, owner = flat[keep], owner[keep]
    pixels = np.bincount(owner, minlength=n)
    keep = grid.valid.ravel()[flat]
    flat, owner = flat[keep], owner[keep]
    counts = np.bincount(owner, minlength=n)
    totals = _reduce(grid.values, flat, owner, how) if len(flat) else {}
    for i, pooled in enumerate(out):
        pooled.pixels, pooled.count = int(pixels[i]), int(counts[i])
        pooled.total = totals.get(i)
    _centres(grid, centroids, out)
    return out


def _reduce(values: Callable[[np.ndarray], np.ndarray], flat: np.ndarray, owner: np.ndarray,
            how: str) -> dict[int, np.ndarray]:
    """ROI index -> (D,) float64 sum or max; ``owner`` is sorted (grouped)."""
    ufunc = np.add if how == "mean" else np.maximum
    result: dict[int, np.ndarray] = {}
    for a in range(0, len(flat), CHUNK_PIXELS):
        own = owner[a:a + CHUNK_PIXELS]
        starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
        reduced = ufunc.reduceat(values(flat[a:a + CHUNK_PIXELS]), starts, axis=0).astype(np.float64)
        for roi, row in zip(own[starts].tolist(), reduced):
            prev = result.get(roi)
            result[roi] = row if prev is None else ufunc(prev, row)
    return result


def _centres(grid: PixelGrid, centroids: np.ndarray, out: list[Pooled]) -> None:
    """Record, for each ROI, the value of the pixel holding its centroid when owned here."""
    if not len(centroids):
        return
    inv = ~grid.transform
    cols = np.floor(inv.a * centroids[:, 0] + inv.b * centroids[:, 1] + inv.c).astype(np.int64)
    rows = np.floor(inv.d * centroids[:, 0] + inv.e * centroids[:, 1] + inv.f).astype(np.int64)
    height, width = grid.shape
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    idx = np.flatnonzero(inside)
    flat = rows[idx] * width + cols[idx]
    if grid.owned is not None:
        keep = grid.owned.ravel()[flat]
        idx, flat = idx[keep], flat[keep]
    valid = grid.valid.ravel()[flat]
    values = grid.values(flat[valid]) if valid.any() else np.empty((0, 0))
    for i in idx.tolist():
        out[i].centre_seen = True
    for i, value in zip(idx[valid].tolist(), values):
        out[i].centre = value.astype(np.float64)
