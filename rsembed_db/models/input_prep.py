"""Input preparation for fixed-size models: resize, or tiled inference stitched exactly.

A model with a fixed input size S (ViTs: 224 px...) sees a chip of any size in one of
two ways (``InputPrepSpec.mode``, DESIGN.md section 2):

- ``resize``: the chip is resampled (bilinear) to S x S and run once; the model's
  (h, w) patch grid is georeferenced back onto the whole chip extent.
- ``tile``: the chip is cut into ``tile_size`` tiles (default: the model's S) with
  cover-shift starts (``tile_starts``: 300 px with 224 -> [0, 76]); an axis shorter
  than a tile is edge-padded to it (``pad_edges=True``) or stretched to S. All tiles
  run in one batch. Where tiles overlap, the midpoint cut decides which tile owns a
  pixel (``owned_spans``: width 7, tile 4 -> owned [0, 3) and [3, 7)).
- ``auto``: ``tile`` for grid output when at most ``max_tiles`` tiles are needed,
  else ``resize``.

How the stitched grid makes pooled means area-weighted: the tiles' patch grids are
shifted against each other (starts 0 and 76 with 16 px patches), so no single patch
grid can hold them. The stitched grid uses the coarsest cell size g (per axis) that
divides every boundary that matters: the owned-span cuts, the chip edge, and each
tile's patch edges inside the span it owns (300 px, tile 224, 16 px patches -> g = 2
px). Every stitched cell then lies inside exactly one owned patch and copies its
feature vector, so all cells have equal area and the plain mean over cells
(``models.pooling.pool``) weights each patch by the area it owns. When the boundaries
admit no cell of at least one pixel (fractional patch sizes), g falls back to one
pixel and each cell takes the patch under its centre. The price of exactness is size:
the stitched grid can be finer than the patch grid (2 px cells for 16 px patches
above), so a tiled FeatureMap holds D x (H/g) x (W/g) float32 values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine

from rsembed_db.errors import SpecError
from rsembed_db.models.base import FeatureMap
from rsembed_db.specs.output import InputPrepSpec

Forward = Callable[[np.ndarray], np.ndarray]
VALID_FRACTION = 0.5  # a patch is valid when at least half of its pixels are


def tile_starts(length: int, tile: int) -> list[int]:
    """Cover-shift tile starts along one axis: ``0, tile, 2*tile...`` then ``length - tile``.

    The last tile is shifted back to end at the edge instead of running past it
    (300 with 224 -> [0, 76]; 6 with 4 -> [0, 2]); an axis no longer than a tile -> [0].
    """
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile), length - tile]


def owned_spans(starts: Sequence[int], tile: int, length: int) -> list[tuple[int, int]]:
    """The half-open pixel span ``[a, b)`` each tile owns, cut at the overlaps' midpoints.

    Between consecutive tiles the cut is ``(next_start + this_end) // 2``: width 7 with
    tile 4 (starts [0, 3]) -> [(0, 3), (3, 7)]; tiles that only touch cut where they meet.
    """
    cuts = [(starts[i + 1] + min(starts[i] + tile, length)) // 2 for i in range(len(starts) - 1)]
    edges = [0, *cuts, length]
    return list(zip(edges[:-1], edges[1:]))


def run_with_input_prep(chip_data: np.ndarray, valid: np.ndarray, chip_transform: Affine, crs: str,
                        prep: InputPrepSpec, image_size: int, forward: Forward,
                        grid_output: bool) -> FeatureMap:
    """Run ``forward`` on a chip as ``prep`` says; a FeatureMap georeferenced on the chip.

    ``chip_data`` (C, H, W) is passed on as given (normalise it before, or inside
    ``forward``); ``valid`` (H, W) marks real pixels. ``forward`` maps a float32
    (B, C, S, S) batch, S = ``image_size``, to (B, D, h, w) patch features. A feature
    cell is valid when at least half of the pixels its patch covers are valid.
    """
    if chip_data.ndim != 3 or valid.shape != chip_data.shape[1:]:
        raise ValueError(f"chip_data must be (C, H, W) with valid (H, W), got {chip_data.shape} "
                         f"and {valid.shape}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise SpecError("image_size", f"must be a positive integer, got {image_size!r}")
    tile = prep.tile_size or image_size
    mode = resolved_mode(prep, *valid.shape, image_size, grid_output)
    if mode == "resize":
        return _resized(chip_data, valid, chip_transform, crs, image_size, forward)
    return _tiled(chip_data, valid, chip_transform, crs, prep, tile, image_size, forward)


def resolved_mode(prep: InputPrepSpec, height: int, width: int, image_size: int, grid_output: bool) -> str:
    """``resize`` or ``tile``: what ``prep`` means for an (height, width) chip; ``auto``
    tiles for grid output when at most ``max_tiles`` tiles are needed."""
    if prep.mode != "auto":
        return prep.mode
    tile = prep.tile_size or image_size
    count = len(tile_starts(height, tile)) * len(tile_starts(width, tile))
    return "tile" if grid_output and count <= prep.max_tiles else "resize"


def _resize(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (B, C, H, W) batch (no-op when already that size)."""
    if batch.shape[-2:] == size:
        return batch.astype(np.float32, copy=False)
    with torch.inference_mode():
        out = F.interpolate(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)),
                            size=size, mode="bilinear", align_corners=False)
    return out.numpy()


def _patch_valid(valid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(B, h, w) True where at least half of each patch footprint of (B, H, W) is valid."""
    with torch.inference_mode():
        fraction = F.adaptive_avg_pool2d(torch.from_numpy(valid.astype(np.float32)), shape)
    return fraction.numpy() >= VALID_FRACTION


def _run(forward: Forward, batch: np.ndarray) -> np.ndarray:
    out = np.asarray(forward(batch), dtype=np.float32)
    if out.ndim != 4 or out.shape[0] != batch.shape[0]:
        raise ValueError(f"forward must return (B, D, h, w) for {batch.shape[0]} inputs, got {out.shape}")
    return out


def _resized(data: np.ndarray, valid: np.ndarray, transform: Affine, crs: str, size: int,
             forward: Forward) -> FeatureMap:
    height, width = valid.shape
    features = _run(forward, _resize(data[None], (size, size)))[0]
    _, h, w = features.shape
    return FeatureMap(
        features, _patch_valid(valid[None], (h, w))[0],
        transform @ Affine.scale(width / w, height / h), crs,
        {"input_prep": {"mode": "resize", "image_size": size, "patch_grid": [h, w]}},
    )


@dataclass(frozen=True)
class _Axis:
    """Tiling of one axis: starts, the extent each tile covers, spans owned."""

    starts: list[int]
    extent: int  # pixels of the (padded) chip one tile covers
    spans: list[tuple[int, int]]
    length: int

    @classmethod
    def plan(cls, length: int, tile: int, pad_edges: bool) -> "_Axis":
        starts = tile_starts(length, tile)
        extent = tile if length >= tile or pad_edges else length
        return cls(starts, extent, owned_spans(starts, tile, length), length)

    def cells(self, patches: int) -> tuple[Fraction, np.ndarray, np.ndarray]:
        """Stitched cell size in pixels, and per cell its tile and patch index."""
        step = Fraction(self.extent, patches)
        bounds = [Fraction(self.length)]
        for start, (a, b) in zip(self.starts, self.spans):
            bounds.append(Fraction(a))
            first, last = math.ceil((a - start) / step), math.floor((b - start) / step)
            bounds += [start + k * step for k in range(first, last + 1)]
        size = _fraction_gcd(bounds)
        if size < 1:
            size = Fraction(1)
        centres = (np.arange(int(self.length / size)) + 0.5) * float(size)
        tiles = np.searchsorted([b for _, b in self.spans], centres, side="right")
        starts = np.asarray(self.starts)[tiles]
        patch = np.clip(np.floor((centres - starts) * patches / self.extent).astype(int), 0, patches - 1)
        return size, tiles, patch


def _fraction_gcd(values: Sequence[Fraction]) -> Fraction:
    """Greatest common divisor of non-negative rationals (0 is ignored)."""
    out = Fraction(0)
    for value in values:
        if value:
            denominator = out.denominator * value.denominator // math.gcd(out.denominator, value.denominator)
            out = Fraction(math.gcd(int(out * denominator), int(value * denominator)), denominator)
    return out


def _tiles(data: np.ndarray, valid: np.ndarray, ys: _Axis, xs: _Axis) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, ey, ex) tiles (row-major) and their (N, ey, ex) valid masks; edge-padded past the chip."""
    pad_y = max(0, ys.extent - ys.length)
    pad_x = max(0, xs.extent - xs.length)
    if pad_y or pad_x:
        data = np.pad(data, ((0, 0), (0, pad_y), (0, pad_x)), mode="edge")
        valid = np.pad(valid, ((0, pad_y), (0, pad_x)), constant_values=False)
    tiles = [(data[:, y:y + ys.extent, x:x + xs.extent], valid[y:y + ys.extent, x:x + xs.extent])
             for y in ys.starts for x in xs.starts]
    return np.stack([t for t, _ in tiles]), np.stack([v for _, v in tiles])


def _tiled(data: np.ndarray, valid: np.ndarray, transform: Affine, crs: str, prep: InputPrepSpec,
           tile: int, size: int, forward: Forward) -> FeatureMap:
    height, width = valid.shape
    ys, xs = _Axis.plan(height, tile, prep.pad_edges), _Axis.plan(width, tile, prep.pad_edges)
    batch, masks = _tiles(data, valid, ys, xs)
    features = _run(forward, _resize(batch, (size, size)))
    _, _, h, w = features.shape
    patch_valid = _patch_valid(masks, (h, w))
    gy, tile_y, patch_y = ys.cells(h)
    gx, tile_x, patch_x = xs.cells(w)
    index = tile_y[:, None] * len(xs.starts) + tile_x[None, :]
    rows, cols = patch_y[:, None], patch_x[None, :]
    values = np.moveaxis(features[index, :, rows, cols], -1, 0)
    meta: dict[str, Any] = {"input_prep": {
        "mode": "tile", "tile_size": tile, "image_size": size, "pad_edges": prep.pad_edges,
        "starts_y": ys.starts, "starts_x": xs.starts, "tiles": len(batch), "patch_grid": [h, w],
        "cell_px": [float(gy), float(gx)],
    }}
    return FeatureMap(np.ascontiguousarray(values), patch_valid[index, rows, cols],
                      transform @ Affine.scale(float(gx), float(gy)), crs, meta)
