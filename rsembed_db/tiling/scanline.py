"""Vectorised polygon rasterisation: the pixels whose centre lies inside each polygon.

One scanline pass over every edge of every polygon at once (no per-polygon Python
loop): each edge yields its crossings with the pixel-centre rows it spans, crossings
are sorted per (polygon, row) and paired (even-odd rule, so holes and multipolygons
work). Rows and columns are half-open (``[top, bottom)``, ``[left, right)`` in pixel
space), so polygons sharing an edge never share a pixel and a tiling of polygons
partitions the pixels. Polygons may overlap one another: each gets its own pixels.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine


def polygon_pixel_groups(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(flat row-major pixel indices, (n + 1,) offsets) of the pixels whose centre is inside
    each polygon: polygon ``i`` holds ``flat[offsets[i]:offsets[i + 1]]``, by row, then
    column. Pixels outside the ``shape`` raster are dropped."""
    start, run, owner = _runs(geoms, transform, shape)
    offsets = np.zeros(len(geoms) + 1, np.int64)
    np.cumsum(np.bincount(owner, weights=run, minlength=len(geoms)).astype(np.int64), out=offsets[1:])
    return _expand(start, run), offsets


def polygon_mask(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels whose centre lies inside any of ``geoms``."""
    height, width = shape
    start, run, _ = _runs(geoms, transform, shape)
    # +1 where a run starts, -1 just past its end, then a running sum along each row.
    steps = np.zeros(height * (width + 1), np.int32)
    row = start // width
    np.add.at(steps, start + row, 1)
    np.add.at(steps, start + row + run, -1)
    depth = steps.reshape(height, width + 1)
    return np.cumsum(depth, axis=1, out=depth)[:, :width] > 0


def _runs(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-empty row runs of pixel centres inside each polygon: (flat index of the first
    pixel, length, polygon index), grouped by polygon, then row, then column."""
    height, width = shape
    empty = np.empty(0, np.int64)
    parts, part_owner = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    if len(coords) < 2:
        return empty, empty, empty
    inv = ~transform
    u = inv.a * coords[:, 0] + inv.b * coords[:, 1] + inv.c
    v = inv.d * coords[:, 0] + inv.e * coords[:, 1] + inv.f
    same_ring = coord_ring[:-1] == coord_ring[1:]
    u0, v0, u1, v1 = u[:-1][same_ring], v[:-1][same_ring], u[1:][same_ring], v[1:][same_ring]
    owner = part_owner[ring_part[coord_ring[:-1][same_ring]]]
    # Rows r whose centre r + 0.5 lies in [min(v0, v1), max(v0, v1)).
    r0 = np.clip(np.ceil(np.minimum(v0, v1) - 0.5), 0, height).astype(np.int64)
    r1 = np.clip(np.ceil(np.maximum(v0, v1) - 0.5), 0, height).astype(np.int64)
    crossings = np.maximum(r1 - r0, 0)
    edge = np.repeat(np.arange(len(r0)), crossings)
    if not len(edge):
        return empty, empty, empty
    row = r0[edge] + _ramp(crossings)
    centre = row + 0.5
    slope = (u1 - u0)[edge] / (v1 - v0)[edge]
    ucross = u0[edge] + (centre - v0[edge]) * slope
    order = np.lexsort((ucross, owner[edge] * height + row))  # by polygon, row, then column
    start, stop = order[0::2], order[1::2]
    c0 = np.clip(np.ceil(ucross[start] - 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.ceil(ucross[stop] - 0.5), 0, width).astype(np.int64)
    run = c1 - c0
    some = run > 0
    return (row[start] * width + c0)[some], run[some], owner[edge][start][some]


def _expand(start: np.ndarray, run: np.ndarray) -> np.ndarray:
    """The flat indices of the runs (``start[j]``, ``start[j] + 1``, ..., ``run[j]`` of
    them), concatenated: one array of steps summed in place, no per-pixel temporaries."""
    total = int(run.sum())
    flat = np.ones(total, np.int64)
    if not total:
        return flat
    ends = np.cumsum(run)
    flat[0] = start[0]
    flat[ends[:-1]] = start[1:] - (start[:-1] + run[:-1] - 1)  # jump from a run's last pixel to the next's first
    return np.cumsum(flat, out=flat)


def _ramp(counts: np.ndarray) -> np.ndarray:
    """0..n-1 for each n in ``counts``, concatenated."""
    total = int(counts.sum())
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - offsets
