"""Tiler strings (``h3:<res>``, ``grid:<size_m>``), region -> tiles with a size guard, tile ids."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, cast

import h3
import numpy as np
import shapely

from rsembed_db.errors import SpecError
from rsembed_db.specs.canonical import sha256_key
from rsembed_db.specs.spatial import GridCell, H3Cell, SpatialSpec
from rsembed_db.specs.validate import require_choice
from rsembed_db.tiling.grid_tiler import check_size, iter_grid_tiles
from rsembed_db.tiling.h3_tiler import COVERS, Cover, check_res, iter_h3_tiles
from rsembed_db.tiling.region import Region

DEFAULT_MAX_TILES = 100_000
AUTHALIC_RADIUS_M = 6_371_007.181  # the sphere of the WGS 84 ellipsoid's area
_AREA_DENSIFY_DEG = 0.25
_USAGE = "expected h3:<res> (res 0..15) or grid:<size_m> (metres > 0), e.g. h3:8 or grid:1000"


class TooManyTilesError(SpecError):
    """A region would yield more tiles than allowed: ``count`` is the estimate, or (when
    counting stopped at the limit) ``max_tiles + 1``; ``amount`` says which in words."""

    def __init__(self, count: int, tiler: Tiler, max_tiles: int, estimated: bool):
        self.amount = f"about {count}" if estimated else f"more than {max_tiles}"
        over = f"about {count} tiles, more than the limit of {max_tiles}" if estimated \
            else f"more tiles than the limit of {max_tiles}"
        super().__init__("tiles", f"{tiler} gives {over}; raise it with --max-tiles or use a coarser tiler")
        self.count = count
        self.max_tiles = max_tiles


@dataclass(frozen=True)
class Tiler:
    """A parsed tiler: H3 cells at resolution ``value`` or grid squares of ``value`` metres."""

    kind: Literal["h3", "grid"]
    value: int | float

    def __str__(self) -> str:
        value = self.value
        return f"{self.kind}:{int(value) if float(value).is_integer() else value}"

    def tile_area_m2(self, region: Region) -> float:
        """Area of one tile near the region's centroid."""
        if self.kind == "grid":
            return float(self.value) ** 2
        centre = region.centroid
        return h3.cell_area(h3.latlng_to_cell(centre.y, centre.x, self.value), unit="m^2")


def parse_tiler(text: str) -> Tiler:
    """Parse ``"h3:<res>"`` or ``"grid:<size_m>"``; SpecError (field "tiles") otherwise."""
    kind, sep, value = str(text).strip().lower().partition(":")
    if not sep or kind not in ("h3", "grid"):
        raise SpecError("tiles", f"unknown tiler {text!r}; {_USAGE}")
    if kind == "h3":
        if not value.strip().isdigit():
            raise SpecError("tiles", f"H3 resolution must be an integer 0..15, got {value!r}")
        return Tiler("h3", check_res(int(value)))
    try:
        size = float(value)
    except ValueError:
        raise SpecError("tiles", f"grid tile size must be a positive number of metres, "
                                 f"got {value!r}") from None
    check_size(size)
    return Tiler("grid", int(size) if size.is_integer() else size)


def region_area_m2(region: Region) -> float:
    """The region's area in m^2: its lon/lat polygon (edges straight in lon/lat, densified)
    on the authalic sphere, through the cylindrical equal-area projection, which keeps
    rings spanning -180..180 and the poles whole."""
    coords = shapely.segmentize(region, _AREA_DENSIFY_DEG)

    def equal_area(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return AUTHALIC_RADIUS_M * np.radians(x), AUTHALIC_RADIUS_M * np.sin(np.radians(np.clip(y, -90, 90)))

    return float(shapely.transform(coords, lambda xy: np.column_stack(equal_area(xy[:, 0], xy[:, 1]))).area)


def estimate_tiles(region: Region, tiler: Tiler) -> int:
    """Region area over tile area: cheap, and close to the exact count for compact regions
    (thin ones give more tiles than this: ``tile_region`` also counts)."""
    estimate = region_area_m2(region) / tiler.tile_area_m2(region)
    return math.ceil(estimate) if math.isfinite(estimate) and estimate < 2 ** 62 else 2 ** 62


def iter_tiles(region: Region, tiler: Tiler, cover: Cover = "centre") -> Iterator[SpatialSpec]:
    """The tiles of ``region``, lazily (unsorted for H3)."""
    if tiler.kind == "h3":
        return iter_h3_tiles(region, int(tiler.value), cover)
    return iter_grid_tiles(region, tiler.value)


def tile_region(region: Region, tiler: str | Tiler, cover: str = "centre",
                max_tiles: int = DEFAULT_MAX_TILES) -> list[SpatialSpec]:
    """The tiles of ``region`` (H3 cells sorted by id, grid tiles north to south);
    TooManyTilesError from the area estimate before any tile is made, else once
    ``max_tiles + 1`` tiles are counted (work proportional to the limit, whatever the region).

    ``cover`` (``centre`` or ``full``, checked) applies to H3 tiling (see ``h3_tiles``);
    grid tiles always cover the region.
    """
    spec = tiler if isinstance(tiler, Tiler) else parse_tiler(tiler)
    require_choice("cover", cover, COVERS)
    if isinstance(max_tiles, bool) or not isinstance(max_tiles, int) or max_tiles < 1:
        raise SpecError("max_tiles", f"must be an integer >= 1, got {max_tiles!r}")
    estimate = estimate_tiles(region, spec)
    if estimate > max_tiles:
        raise TooManyTilesError(estimate, spec, max_tiles, estimated=True)
    tiles: list[SpatialSpec] = list(itertools.islice(iter_tiles(region, spec, cast(Cover, cover)),
                                                                   max_tiles + 1))
    if len(tiles) > max_tiles:
        raise TooManyTilesError(len(tiles), spec, max_tiles, estimated=False)
    if spec.kind == "h3":
        tiles.sort(key=lambda cell: cast(H3Cell, cell).int_id)
    if not tiles:
        raise SpecError("tiles", f"{spec} gives no tiles for this region (no cell centre lies "
                                 "in it); use a finer resolution or cover='full'")
    return tiles


def tile_id(spatial: SpatialSpec) -> str:
    """A short stable id: the H3 hex id, the grid tile id, or ``<kind>_<12 hex>``."""
    if isinstance(spatial, H3Cell):
        return spatial.hex
    if isinstance(spatial, GridCell):
        return spatial.tile_id
    data = spatial.to_dict()
    return f"{data['kind']}_{sha256_key(data)[:12]}"
