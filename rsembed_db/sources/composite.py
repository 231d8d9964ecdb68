"""Per-pixel composites of scenes that share a chip grid.

A stack is (S, C, H, W) float32, scenes ordered oldest first, NaN in every band where
a scene has no valid value. The composite is (C, H, W), NaN where no scene is valid.
"""

from __future__ import annotations

import numpy as np


def median(stack: np.ndarray) -> np.ndarray:
    """Per-pixel median over the valid scenes (mean of the middle two for an even count)."""
    covered = np.isfinite(stack[:, 0]).any(axis=0)
    if len(stack) == 1:  # the median of one value is that value
        out = stack[0].astype(np.float32)
        out[:, ~covered] = np.nan
        return out
    out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
    out[:, covered] = np.nanmedian(stack[:, :, covered], axis=0)
    return out


def mosaic(stack: np.ndarray) -> np.ndarray:
    """Each pixel from the most recent scene valid there (later scenes on top)."""
    out = stack[-1].copy()
    for layer in stack[-2::-1]:
        gaps = np.isnan(out[0])
        out[:, gaps] = layer[:, gaps]
    return out


COMPOSITES = {"median": median, "mosaic": mosaic}
