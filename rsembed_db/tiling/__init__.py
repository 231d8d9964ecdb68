"""Regions -> tiles (H3 cells or projected grid squares) -> chip grids."""

from rsembed_db.tiling.chip_grid import ChipGrid, chip_grid_for
from rsembed_db.tiling.grid_tiler import grid_tiles
from rsembed_db.tiling.h3_tiler import h3_tiles
from rsembed_db.tiling.plan import (
    DEFAULT_MAX_TILES,
    Tiler,
    TooManyTilesError,
    estimate_tiles,
    parse_tiler,
    tile_id,
    tile_region,
)
from rsembed_db.tiling.region import Region, RegionError, load_region, region_from_geojson

__all__ = [
    "DEFAULT_MAX_TILES",
    "ChipGrid",
    "Region",
    "RegionError",
    "Tiler",
    "TooManyTilesError",
    "chip_grid_for",
    "estimate_tiles",
    "grid_tiles",
    "h3_tiles",
    "load_region",
    "parse_tiler",
    "region_from_geojson",
    "tile_id",
    "tile_region",
]
