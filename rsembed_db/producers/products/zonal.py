"""Zonal pooling: per-ROI mean/max over a raster's pixels, mergeable across rasters.

A product tile (or block) is pooled for every ROI touching it in one pass: the ROIs
are rasterised together (``scanline``), pixels are gathered grouped by ROI and
reduced in cache-sized chunks. Where the values factorise as ``weight x int8`` (Tessera:
one scale per pixel), a mean is a weighted sum: each ROI's int8 pixels are converted to
float32 once and reduced by one product with their scales (BLAS gemv), so the scales are
applied inside the product instead of multiplying every value first. Results are partial (sum or max, counts) and kept as
arrays, one row per ROI, so an ROI spanning several tiles, even in different CRSs, is
pooled exactly over the union of its pixels without mosaicking: each ground pixel is
counted once, in the tile that owns it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from affine import Affine

from rsembed_db.tiling.scanline import polygon_pixel_groups

CHUNK_PIXELS = 2048  # pixels per reduction step: (2048, D) float32 stays in cache
BLOCK_PIXELS = 2048  # pixels per weighted-sum product: (2048, D) float32, 1 MiB at D = 128
FACTORISED = True  # weighted sums of int8 x per-pixel weight by products (False: the per-pixel path; benchmarks)
NO_PIXEL = "no pixel of the product covers the ROI"
SMALL_NO_DATA = "the ROI is smaller than a pixel and its pixel holds no data (open water / no-data)"
NOT_FINITE = "the pooled vector is not finite"


@dataclass
class PixelGrid:
    """A raster in its native grid, ready for pooling.

    ``owned``: pixels this raster is responsible for (None: all); ``valid``: owned
    pixels holding a value; ``values(flat)`` returns (n, dim) float32 for flat indices;
    ``flagged``: pixels holding data that the product's validity rule refuses (counted
    apart from no-data, never pooled; None: none). ``factors``: the values as (quantised,
    weight) when ``values(flat) == weight[flat, None] * quantised[flat]`` (faster means).
    """

    crs: str
    transform: Affine
    shape: tuple[int, int]
    dim: int
    valid: np.ndarray
    owned: np.ndarray | None
    values: Callable[[np.ndarray], np.ndarray]
    flagged: np.ndarray | None = None
    factors: tuple[np.ndarray, np.ndarray] | None = None  # (H*W, dim) int8, (H*W,) float32: values = w * q


@dataclass
class Pooled:
    """Pooling state of n ROIs, one row each; ``merge`` folds in another raster's rows."""

    how: str
    total: np.ndarray  # (n, D) float64: sum (mean) or max; 0 / -inf without pixels
    count: np.ndarray  # (n,) valid pixels pooled
    pixels: np.ndarray  # (n,) owned pixels inside the ROI, valid or not
    centre: np.ndarray  # (n, D) float32: the pixel holding the ROI centroid (NaN: none, no data)
    centre_seen: np.ndarray  # (n,) bool: that pixel lies in a raster seen so far
    flagged: np.ndarray  # (n,) owned pixels inside the ROI refused by the validity rule
    centre_flagged: np.ndarray  # (n,) bool: the centroid's pixel was refused by the rule

    @classmethod
    def empty(cls, how: str, n: int, dim: int) -> "Pooled":
        start = 0.0 if how == "mean" else -np.inf
        return cls(how, np.full((n, dim), start), np.zeros(n, np.int64), np.zeros(n, np.int64),
                   np.full((n, dim), np.nan, np.float32), np.zeros(n, bool), np.zeros(n, np.int64),
                   np.zeros(n, bool))

    def take(self, rows) -> "Pooled":
        return Pooled(self.how, self.total[rows], self.count[rows], self.pixels[rows],
                      self.centre[rows], self.centre_seen[rows], self.flagged[rows],
                      self.centre_flagged[rows])

    def merge(self, rows: np.ndarray, other: "Pooled") -> None:
        """Fold ``other`` (one row per entry of ``rows``, all distinct) into those rows."""
        if self.how == "mean":
            self.total[rows] += other.total
        else:
            self.total[rows] = np.maximum(self.total[rows], other.total)
        self.count[rows] += other.count
        self.pixels[rows] += other.pixels
        self.flagged[rows] += other.flagged
        seen = rows[other.centre_seen]
        self.centre[seen] = other.centre[other.centre_seen]
        self.centre_seen[seen] = True
        self.centre_flagged[seen] = other.centre_flagged[other.centre_seen]

    def results(self, flagged_as: str = "refused by the validity rule"
                ) -> tuple[np.ndarray, list[str | None], np.ndarray, np.ndarray]:
        """(n, D) float32 vectors, the reason per row where there is none, the pixels used,
        and which rows are smaller than a pixel (these take the pixel holding their centroid).

        ``flagged_as`` describes flagged pixels in reasons. A row whose vector is not finite
        gets a reason too: such a vector is never stored.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = self.total / self.count[:, None] if self.how == "mean" else self.total
        small = self.pixels == 0
        vectors = np.where(small[:, None], self.centre, pooled).astype(np.float32)
        reasons: list[str | None] = [None] * len(small)
        empty = (self.pixels > 0) & (self.count == 0) | small & ~(self.centre_seen & ~np.isnan(self.centre[:, 0]))
        for i in np.flatnonzero(empty).tolist():
            if self.pixels[i]:
                reasons[i] = _no_valid_pixel(int(self.pixels[i]), int(self.flagged[i]), flagged_as)
            elif self.centre_flagged[i]:
                reasons[i] = f"the ROI is smaller than a pixel and its pixel is {flagged_as}"
            else:
                reasons[i] = SMALL_NO_DATA if self.centre_seen[i] else NO_PIXEL
        for i in np.flatnonzero(~empty & ~np.isfinite(vectors).all(axis=1)).tolist():
            reasons[i] = NOT_FINITE
        return vectors, reasons, np.where(small, 1, self.count), small


def _no_valid_pixel(pixels: int, flagged: int, flagged_as: str) -> str:
    if not flagged:
        return f"no valid pixel among the {pixels} inside the ROI (open water / no-data)"
    return (f"no valid pixel among the {pixels} inside the ROI: {flagged} {flagged_as}, "
            f"{pixels - flagged} open water / no-data")


def pool_grid(grid: PixelGrid, rois: np.ndarray, centroids: np.ndarray, how: str) -> Pooled:
    """Pooled rows for ROIs (polygons and (n, 2) centroids in ``grid.crs``)."""
    out = Pooled.empty(how, len(rois), grid.dim)
    flat, offsets = polygon_pixel_groups(rois, grid.transform, grid.shape)
    state = _pixel_states(grid)[flat]  # one gather for the three masks
    out.pixels = _count(offsets, state & _OWNED)
    if grid.flagged is not None:
        out.flagged = _count(offsets, state & _FLAGGED)
    keep = (state & _VALID).view(bool)
    out.count = _count(offsets, keep)
    flat = flat[keep]
    offsets = np.zeros_like(offsets)
    np.cumsum(out.count, out=offsets[1:])
    if how == "mean" and grid.factors is not None and FACTORISED:
        _weighted_sums(*grid.factors, flat, offsets, out.total)
    else:
        owner = np.repeat(np.arange(len(rois), dtype=np.int64), out.count)
        _reduce(grid.values, flat, owner, out.total, how)
    _centres(grid, centroids, out)
    return out


_VALID, _OWNED, _FLAGGED = np.uint8(1), np.uint8(2), np.uint8(4)


def _pixel_states(grid: PixelGrid) -> np.ndarray:
    """(H*W,) uint8 bit set per pixel: _VALID and _FLAGGED (both only where owned), _OWNED."""
    owned = np.ones(grid.shape, bool) if grid.owned is None else grid.owned
    state = (grid.valid & owned).astype(np.uint8)
    state |= owned.astype(np.uint8) * _OWNED
    if grid.flagged is not None:
        state |= (grid.flagged & owned).astype(np.uint8) * _FLAGGED
    return state.ravel()


def _count(offsets: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """(n,) int64: how many entries of each group ``bits[offsets[i]:offsets[i + 1]]`` are non-zero."""
    counts = np.zeros(len(offsets) - 1, np.int64)
    some = np.flatnonzero(np.diff(offsets))
    if len(some):
        counts[some] = np.add.reduceat(bits != 0, offsets[some], dtype=np.int64)
    return counts


def _reduce(values: Callable[[np.ndarray], np.ndarray], flat: np.ndarray, owner: np.ndarray,
            total: np.ndarray, how: str) -> None:
    """Accumulate sums or maxima per ROI into ``total``; ``owner`` is sorted (grouped)."""
    ufunc = np.add if how == "mean" else np.maximum
    for a in range(0, len(flat), CHUNK_PIXELS):
        own = owner[a:a + CHUNK_PIXELS]
        starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
        reduced = ufunc.reduceat(values(flat[a:a + CHUNK_PIXELS]), starts, axis=0)
        rows = own[starts]  # distinct within a chunk
        total[rows] = ufunc(total[rows], reduced)


def _weighted_sums(quantised: np.ndarray, weight: np.ndarray, flat: np.ndarray, offsets: np.ndarray,
                   total: np.ndarray) -> None:
    """``total[r] += sum of weight[p] * quantised[p]`` over each ROI's pixels
    (ROI ``r``: ``flat[offsets[r]:offsets[r + 1]]``).

    Per ROI, in blocks of at most BLOCK_PIXELS: the int8 rows are converted to float32 once
    (into one reused buffer) and the weighted sum is one (n) @ (n x dim) product (BLAS gemv,
    float32) with the weights applied inside it; blocks and tiles are merged in float64.
    Small blocks keep each product single-threaded and in cache: OpenBLAS threads a larger
    gemv, which was 20-40x slower when several tile threads share two busy cores (measured).
    """
    if not len(flat):
        return
    # Reused buffers, filled by ``take(out=)``: no allocation per ROI. ``flat`` comes from the
    # rasterisation, always inside the raster: mode="clip" skips numpy's buffered bounds check.
    buffer = np.empty((BLOCK_PIXELS, quantised.shape[1]), np.float32)
    gathered = np.empty((BLOCK_PIXELS, quantised.shape[1]), quantised.dtype)
    weights = weight.take(flat, mode="clip")  # every pixel's weight in one call (4 bytes a pixel)
    bounds = offsets.tolist()
    for row, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        for c in range(a, b, BLOCK_PIXELS):
            d = min(c + BLOCK_PIXELS, b)
            n = d - c
            np.take(quantised, flat[c:d], axis=0, out=gathered[:n], mode="clip")
            np.copyto(buffer[:n], gathered[:n], casting="unsafe")
            total[row] += weights[c:d] @ buffer[:n]


def _centres(grid: PixelGrid, centroids: np.ndarray, out: Pooled) -> None:
    """Record, for each ROI, the value of the pixel holding its centroid when owned here."""
    if not len(centroids):
        return
    inv = ~grid.transform
    cols = np.floor(inv.a * centroids[:, 0] + inv.b * centroids[:, 1] + inv.c).astype(np.int64)
    rows = np.floor(inv.d * centroids[:, 0] + inv.e * centroids[:, 1] + inv.f).astype(np.int64)
    height, width = grid.shape
    idx = np.flatnonzero((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width))
    flat = rows[idx] * width + cols[idx]
    if grid.owned is not None:
        keep = grid.owned.ravel()[flat]
        idx, flat = idx[keep], flat[keep]
    out.centre_seen[idx] = True
    if grid.flagged is not None:
        out.centre_flagged[idx] = grid.flagged.ravel()[flat]
    valid = grid.valid.ravel()[flat]
    if valid.any():
        out.centre[idx[valid]] = grid.values(flat[valid])
