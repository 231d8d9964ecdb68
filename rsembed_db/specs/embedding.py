"""Embedding: the value returned to users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr


@dataclass
class Embedding:
    """A float32 (D,) vector or (D, H, W) grid, plus metadata.

    ``meta`` carries the model, source, sensor, temporal window used, ``input_time``,
    image size and, for rsembed-db, the storage ``key`` and ``from_store``.
    """

    data: np.ndarray | xr.DataArray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def numpy(self) -> np.ndarray:
        return np.asarray(self.data.values if isinstance(self.data, xr.DataArray) else self.data)
