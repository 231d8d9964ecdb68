"""The source interface: imagery for one chip grid and time window."""

from __future__ import annotations

import os
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


REMOTE_FETCH_THREADS = 4  # fetches that mostly wait on a network: more threads than cores


def fetch_threads(source: Any) -> int:
    """Fetch threads an ingest runs over ``source`` when the run does not say: the source's
    ``fetch_threads`` (local files: ``local_fetch_threads``), else ``REMOTE_FETCH_THREADS``."""
    return int(getattr(source, "fetch_threads", REMOTE_FETCH_THREADS))


def local_fetch_threads() -> int:
    """Threads for reading and warping local rasters in this process: one per core beyond
    the first (which the model uses), 1 to 4. On 2 cores 4 threads made a MOSAIKS ingest of
    371 local tiles 1.83 s against 1.63 s with 1: the threads only contend (bench/RESULTS.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(REMOTE_FETCH_THREADS, cores - 1))


class ImagerySource(Protocol):
    """Anything that can fill a chip grid with imagery composited over a window."""

    name: str

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> Chip:
        """Return the composite chip (``frames`` > 1: a (T, C, H, W) chip of one composite
        per frame bin, ``sources.frames``), or raise TileFailure with a reason."""
        ...
