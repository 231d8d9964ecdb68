"""What one stored row holds, before it becomes Arrow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from rsembed_db.specs.request import EmbeddingRequest


@dataclass
class EmbeddingRecord:
    """One computed embedding: the request, its pooled vector, optional grid, meta."""

    request: EmbeddingRequest
    tile_id: str
    vector: np.ndarray
    grid: xr.DataArray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class FailureRecord:
    """A tile that could not be computed, kept so the next run retries and reports it."""

    request: EmbeddingRequest
    tile_id: str
    error: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
