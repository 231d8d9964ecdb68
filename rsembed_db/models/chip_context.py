"""What a chip says about itself beyond pixels: where, when, and at what ground sampling.

Models conditioned on location, time or resolution (Prithvi-EO-2.0 TL, Clay, Scale-MAE)
read their side inputs from here.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from rsembed_db.sources.base import Chip
from rsembed_db.specs.spatial import WGS84, transformer


def centre_lonlat(chip: Chip) -> tuple[float, float]:
    """Longitude and latitude (degrees) of the chip grid's centre."""
    grid = chip.grid
    x, y = grid.transform @ (grid.width / 2, grid.height / 2)
    lon, lat = transformer(grid.crs, WGS84).transform(x, y)
    return float(lon), float(lat)


def frame_dates(chip: Chip, frames: int) -> list[dt.date] | None:
    """One date per frame: ``meta["frame_dates"]`` for multi-frame chips, else the
    single composite's ``meta["input_time"]`` (the window midpoint); None when unknown."""
    values = chip.meta.get("frame_dates") if frames > 1 else [chip.meta.get("input_time")]
    if not values or len(values) != frames or any(v is None for v in values):
        return None
    return [v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10]) for v in values]


def model_gsd(chip: Chip, prep: dict[str, Any]) -> float:
    """Metres per model-input pixel after input preparation (``FeatureMap.meta["input_prep"]``).

    ``resize`` stretches the chip (H x W) to S x S: sqrt(H * W) / S source pixels per model
    pixel; ``tile`` feeds ``tile_size`` source pixels to S model pixels.
    """
    size = prep["image_size"]
    source = prep["tile_size"] if prep.get("mode") == "tile" else math.sqrt(chip.grid.height * chip.grid.width)
    return chip.grid.scale_m * source / size
