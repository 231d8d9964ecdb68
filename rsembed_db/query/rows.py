"""Stored rows back into the values users get."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from rsembed_db.models.base import FeatureMap
from rsembed_db.models.pooling import to_dataarray


def grid_from_row(row: dict[str, Any]) -> xr.DataArray | None:
    """Rebuild the georeferenced (D, y, x) DataArray stored in a row, or None."""
    if row.get("grid") is None:
        return None
    values = np.asarray(row["grid"], dtype=np.float32).reshape(row["grid_shape"])
    features = FeatureMap(values, np.ones(values.shape[1:], bool), Affine(*row["grid_transform"]),
                          row["grid_crs"])
    return to_dataarray(features)
