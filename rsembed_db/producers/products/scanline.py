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


def polygon_pixels(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(flat row-major pixel indices, polygon index) for pixels whose centre is inside.

    Output is grouped by polygon index (ascending), then row, then column. Pixels
    outside the ``shape`` raster are dropped.
    """
    height, width = shape
    empty = np.empty(0, np.int64)
    parts, part_owner = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    if len(coords) < 2:
        return empty, empty
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
        return empty, empty
    row = r0[edge] + _ramp(crossings)
    centre = row + 0.5
    slope = (u1 - u0)[edge] / (v1 - v0)[edge]
    ucross = u0[edge] + (centre - v0[edge]) * slope
    order = np.lexsort((ucross, row, owner[edge]))
    start, stop = order[0::2], order[1::2]
    c0 = np.clip(np.ceil(ucross[start] - 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.ceil(ucross[stop] - 0.5), 0, width).astype(np.int64)
    run = np.maximum(c1 - c0, 0)
    # Pixel k of the output, i-th of run j: first[j] + k = row_j * width + c0_j + i (one repeat, one ramp).
    first = row[start] * width + c0 - (np.cumsum(run) - run)
    flat = np.repeat(first, run) + np.arange(int(run.sum()), dtype=np.int64)
    return flat, np.repeat(owner[edge][start], run)


def _ramp(counts: np.ndarray) -> np.ndarray:
    """0..n-1 for each n in ``counts``, concatenated."""
    total = int(counts.sum())
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - offsets
