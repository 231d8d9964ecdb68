"""The source interface: imagery for one chip grid and time window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import ChipGrid


@dataclass
class Chip:
    """Imagery on a chip grid: (C, H, W) float32 in ``bands`` order; a multi-frame chip
    (``sources.frames``) holds (T, C, H, W), frames oldest first.

    Pixels outside coverage hold ``sensor.fill_value`` and are False in ``valid`` (H, W);
    a multi-frame pixel is valid when valid in at least one real (not back-filled) frame.
    ``meta`` records the scenes used, their dates, the composite and ``covered_fraction``
    (and for multi-frame chips the frame bins, dates and back-fill flags).
    """

    data: np.ndarray
    valid: np.ndarray
    bands: tuple[str, ...]
    grid: ChipGrid
    meta: dict[str, Any] = field(default_factory=dict)


class ImagerySource(Protocol):
    """Anything that can fill a chip grid with imagery composited over a window."""

    name: str

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> Chip:
        """Return the composite chip (``frames`` > 1: a (T, C, H, W) chip of one composite
        per frame bin, ``sources.frames``), or raise TileFailure with a reason."""
        ...
