"""One Tessera tile in memory, and the validity rule for its scales.

Embeddings are int8 (H, W, 128) with one float32 scale per pixel (H, W) or per pixel
and channel (H, W, 128); the value is ``int8 x scale``. A scale is valid only if it is
finite, > 0 and < 1.0 (every channel, for 3-D scales): published scales files carry
huge finite sentinels (up to ~3.4e38) where a pixel has no embedding, and the real
scales are below ~0.14. geotessera applies the same rule when it builds its Zarr stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine

from rsembed_db.sources.tessera.layout import DIM, TileId

MAX_VALID_SCALE = 1.0


def valid_scales(scales: np.ndarray) -> np.ndarray:
    """(H, W) bool: finite, > 0 and < MAX_VALID_SCALE (all channels of (H, W, C) scales)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(scales) & (scales > 0) & (scales < MAX_VALID_SCALE)
    return ok.all(axis=2) if ok.ndim == 3 else ok


@dataclass
class TesseraTile:
    """int8 (H, W, 128) embeddings, float32 scales, land mask, grid (CRS, transform)."""

    tile: TileId
    quantised: np.ndarray
    scales: np.ndarray
    land: np.ndarray
    crs: str
    transform: Affine

    @property
    def shape(self) -> tuple[int, int]:
        return self.quantised.shape[:2]

    def valid(self) -> np.ndarray:
        """(H, W) pixels holding an embedding: land with a valid scale."""
        return self.land & valid_scales(self.scales)

    def valid_and_flagged(self) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) ``valid()`` and the land pixels whose scale fails the validity rule
        (sentinels, NaN, <= 0), the rule evaluated once."""
        ok = valid_scales(self.scales)
        return self.land & ok, self.land & ~ok

    def dequantise(self) -> np.ndarray:
        """(H, W, 128) float32 ``int8 x scale``; NaN where the pixel is not valid."""
        with np.errstate(invalid="ignore", over="ignore"):
            out = self.quantised.astype(np.float32) * self._scales3d()
        out[~self.valid()] = np.nan
        return out

    def values(self, flat: np.ndarray) -> np.ndarray:
        """(n, 128) float32 dequantised embeddings of pixels at flat (row-major) indices."""
        h, w = self.shape
        rows = self.quantised.reshape(h * w, DIM)[flat].astype(np.float32)
        rows *= self._scales3d().reshape(h * w, -1)[flat]
        return rows

    def factors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """((H*W, 128) int8, (H*W,) float32 scale): ``values`` factorised; None for 3-D scales."""
        if self.scales.ndim != 2:
            return None
        h, w = self.shape
        return self.quantised.reshape(h * w, DIM), self.scales.reshape(h * w)

    def _scales3d(self) -> np.ndarray:
        return self.scales[..., None] if self.scales.ndim == 2 else self.scales
