"""Input preparation for fixed-size models: resize, or tiled inference stitched on the patch layout.

A model with a fixed input size S (ViTs: 224 px...) sees a chip of any size in one of
two ways (``InputPrepSpec.mode``, DESIGN.md section 2), as the reference library does:

- ``resize``: the chip is resampled (bilinear) to S x S and run once; the model's
  (h, w) patch grid is georeferenced back onto the whole chip extent.
- ``tile``: the chip is cut into ``tile_size`` tiles (default: the model's S) with
  cover-shift starts (``tile_starts``: 300 px with 224 -> [0, 76]); an axis shorter
  than a tile is edge-padded to it (``pad_edges=True``) or stretched to S. All tiles
  run in one batch. Where tiles overlap, the midpoint cut decides which tile owns a
  pixel (``owned_spans``: width 7, tile 4 -> owned [0, 3) and [3, 7)).
- ``auto``: ``tile`` for grid output when at most ``max_tiles`` tiles are needed,
  else ``resize``.

A layout of a single tile always runs the plain model call (the ``resize`` path), so
``tile`` and ``auto`` on a chip that fits one tile give exactly the ``resize`` result
(``resolved_mode``; the storage key records the resolved mode).

Tiled output keeps the models' own patch layout. The grid is each tile's patch grid
cropped to the tile's owned span, the cuts snapped to patch edges one after the other
(``feature_crops``: 300 px, tile 224, 16 px patches -> 9 + 10 = 19 cells per axis),
georeferenced evenly over the chip (so a cell spans chip / cells pixels, about one
patch). The pooled vector is not taken from that grid but, as in the reference, from
the tiles: each tile's vector pooled over its cells inside the ROI, then averaged
with weights equal to the ROI pixels the tile owns (``models.pooling.pool`` reads the
tiles from ``FeatureMap.tiles``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine

from rsembed_db.errors import SpecError
from rsembed_db.models.base import FeatureMap, TileFeatures
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


def feature_crops(starts: Sequence[int], spans: Sequence[tuple[int, int]], extent: int,
                  patches: int) -> list[tuple[int, int]]:
    """Per tile, the half-open range of its ``patches`` feature cells kept in the stitched grid.

    A tile covers ``extent`` pixels from its start with ``patches`` cells. Cuts are
    snapped to cell edges in order: each tile's range starts at the cell holding the
    previous tile's snapped end, and ends at the cell edge nearest its owned end (the
    last tile keeps every cell up to its owned end). 300 px, tile 224, 14 cells:
    [(0, 9), (4, 14)].
    """
    crops, cut = [], None
    for position, (start, (own_start, own_end)) in enumerate(zip(starts, spans)):
        step = extent / patches
        first = math.floor(((own_start if cut is None else cut) - start) / step)
        first = max(0, min(patches - 1, first))
        end = (own_end - start) / step
        last = math.ceil(end) if position == len(starts) - 1 else math.floor(end + 0.5)
        last = max(first + 1, min(patches, last))
        cut = start + last * step
        crops.append((first, last))
    return crops


def tile_count(height: int, width: int, tile: int) -> int:
    return len(tile_starts(height, tile)) * len(tile_starts(width, tile))


def resolved_mode(prep: InputPrepSpec, height: int, width: int, image_size: int, grid_output: bool) -> str:
    """``resize`` or ``tile``: what ``prep`` means for an (height, width) chip.

    A single-tile layout is the plain model call (``resize``); ``auto`` tiles for grid
    output when at most ``max_tiles`` tiles are needed.
    """
    count = tile_count(height, width, prep.tile_size or image_size)
    if count == 1:
        return "resize"
    if prep.mode == "auto":
        return "tile" if grid_output and count <= prep.max_tiles else "resize"
    return prep.mode


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
    height, width = valid.shape
    if resolved_mode(prep, height, width, image_size, grid_output) == "resize":
        return _resized(chip_data, valid, chip_transform, crs, image_size, forward)
    return _tiled(chip_data, valid, chip_transform, crs, prep, prep.tile_size or image_size, image_size, forward)


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
    """Tiling of one axis: starts, the pixels one tile covers, the spans owned."""

    starts: list[int]
    extent: int  # pixels of the (padded) chip one tile covers
    spans: list[tuple[int, int]]

    @classmethod
    def plan(cls, length: int, tile: int, pad_edges: bool) -> _Axis:
        starts = tile_starts(length, tile)
        extent = tile if length >= tile or pad_edges else length
        return cls(starts, extent, owned_spans(starts, tile, length))


def _tiles(data: np.ndarray, valid: np.ndarray, ys: _Axis, xs: _Axis) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, ey, ex) tiles (row-major) and their (N, ey, ex) valid masks; edge-padded past the chip."""
    pad_y = max(0, ys.extent - valid.shape[0])
    pad_x = max(0, xs.extent - valid.shape[1])
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
    rows = feature_crops(ys.starts, ys.spans, ys.extent, h)
    cols = feature_crops(xs.starts, xs.spans, xs.extent, w)
    values = np.concatenate([
        np.concatenate([features[r * len(cols) + c][:, y0:y1, x0:x1] for c, (x0, x1) in enumerate(cols)], axis=2)
        for r, (y0, y1) in enumerate(rows)], axis=1)
    stitched_valid = np.concatenate([
        np.concatenate([patch_valid[r * len(cols) + c][y0:y1, x0:x1] for c, (x0, x1) in enumerate(cols)], axis=1)
        for r, (y0, y1) in enumerate(rows)], axis=0)
    tiles = [TileFeatures(features[r * len(cols) + c], patch_valid[r * len(cols) + c],
                          transform @ Affine.translation(x0, y0) @ Affine.scale(xs.extent / w, ys.extent / h),
                          (*ys.spans[r], *xs.spans[c]))
             for r, y0 in enumerate(ys.starts) for c, x0 in enumerate(xs.starts)]
    gh, gw = values.shape[1:]
    meta = {"input_prep": {
        "mode": "tile", "tile_size": tile, "image_size": size, "pad_edges": prep.pad_edges,
        "starts_y": ys.starts, "starts_x": xs.starts, "tiles": len(batch), "patch_grid": [h, w],
        "stitched_grid": [gh, gw], "stitch_policy": "midpoint_cut",
    }}
    return FeatureMap(np.ascontiguousarray(values), stitched_valid,
                      transform @ Affine.scale(width / gw, height / gh), crs, meta, tiles)
