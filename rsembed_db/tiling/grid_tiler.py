"""``grid:<size_m>`` tiling: square tiles on the UTM grid of the region's zone, enumerated lazily."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import shapely
from shapely.geometry import box

from rsembed_db.errors import SpecError
from rsembed_db.specs.spatial import GridCell, utm_crs_for
from rsembed_db.tiling.region import Region, check_utm_reach, project_lonlat

MIN_SIZE_M = 0.01
MAX_SIZE_M = 20_000_000.0  # half the equator
COLUMN_CHUNK = 4096  # tiles tested at once along a row


def check_size(size_m: object) -> float:
    """Return ``size_m`` as float if it is a number of metres in [0.01, 2e7], else raise SpecError."""
    if isinstance(size_m, bool) or not isinstance(size_m, (int, float)) \
            or not math.isfinite(size_m) or size_m <= 0:
        raise SpecError("tiles", f"grid tile size must be a positive number of metres, "
                                 f"got {size_m!r}")
    if not MIN_SIZE_M <= size_m <= MAX_SIZE_M:
        raise SpecError("tiles", f"grid tile size must be a positive number of metres from {MIN_SIZE_M:g} "
                                 f"to {MAX_SIZE_M:g}, got {size_m!r}")
    return float(size_m)


def grid_crs(region: Region) -> str:
    """The UTM zone CRS of the region's centroid: the CRS its grid tiles live in."""
    centre = region.centroid
    return utm_crs_for(centre.x, centre.y)


def grid_tiles(region: Region, size_m: float) -> list[GridCell]:
    """Tiles of side ``size_m`` whose interior meets the region, north to south, west to east.

    Tile origins are integer multiples of ``size_m`` in the zone's UTM CRS, so the same
    place gets the same ``GridCell.tile_id`` in every run and every region of that zone.
    """
    return list(iter_grid_tiles(region, size_m))


def iter_grid_tiles(region: Region, size_m: float) -> Iterator[GridCell]:
    """The tiles of ``grid_tiles``, lazily (row by row, ``COLUMN_CHUNK`` at a time), so
    that a caller can stop at a limit after work proportional to it."""
    size = check_size(size_m)
    crs = grid_crs(region)
    check_utm_reach(region.bounds, crs, "region", "a region tiled with grid tiles (h3 tiles have no such limit)")
    native = project_lonlat(region, crs)
    shapely.prepare(native)
    minx, miny, maxx, maxy = native.bounds
    for row in range(math.ceil(maxy / size) - 1, math.floor(miny / size) - 1, -1):
        band = native.intersection(box(minx, row * size, maxx, (row + 1) * size))
        if band.is_empty:
            continue
        first, stop = math.floor(band.bounds[0] / size), math.ceil(band.bounds[2] / size)
        for start in range(first, stop, COLUMN_CHUNK):
            cols = np.arange(start, min(start + COLUMN_CHUNK, stop))
            # types-shapely's box() overloads reject scalars broadcast with arrays, which shapely accepts.
            squares = shapely.box(cols * size, row * size, (cols + 1) * size, (row + 1) * size)  # type: ignore[call-overload]
            # Interiors must meet: a tile that only shares an edge with the region is dropped.
            keep = shapely.intersects(native, squares) & ~shapely.touches(native, squares)
            yield from (GridCell(crs, float(c * size), float(row * size), size) for c in cols[keep].tolist())
