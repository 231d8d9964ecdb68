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
    """Imagery on a chip grid: (C, H, W) float32 in ``bands`` order.

    Pixels outside coverage hold ``sensor.fill_value`` and are False in ``valid``.
    ``meta`` records the scenes used, their dates, the composite and ``covered_fraction``.
    """

    data: np.ndarray
    valid: np.ndarray
    bands: tuple[str, ...]
    grid: ChipGrid
    meta: dict[str, Any] = field(default_factory=dict)


class ImagerySource(Protocol):
    """Anything that can fill a chip grid with imagery composited over a window."""

    name: str

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec) -> Chip:
        """Return the composite chip, or raise TileFailure with a reason."""
        ...
