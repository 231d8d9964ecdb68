"""Fetch counters and shared fetches, for any imagery source.

``CountingSource`` wraps a source: it counts fetches (planned, done, failed, cached,
plus the retries the source reports) and fetches each (chip grid, window, sensor)
once: concurrent callers of the same fetch wait for the one in flight, and the last
``cache_size`` chips are kept, so models that need the same imagery share one fetch.
The frame count is part of what makes two fetches the same (``frames``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from rsembed_db.sources.base import Chip, ImagerySource, fetch_threads
from rsembed_db.sources.frames import require_frames
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import ChipGrid

COUNTERS = ("planned", "done", "failed", "cached", "retries")


@dataclass
class FetchStats:
    """Thread-safe fetch counters.

    ``planned``: fetches asked for; ``done``: fetched from the source; ``failed``: raised;
    ``cached``: answered by a fetch already done or in flight; ``retries``: requests the
    source repeated (quota, HTTP 429...). In flight = planned - done - failed - cached.
    """

    planned: int = 0
    done: int = 0
    failed: int = 0
    cached: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                if name not in COUNTERS:
                    raise KeyError(name)
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: getattr(self, name) for name in COUNTERS}

    def __str__(self) -> str:
        counts = self.snapshot()
        return ", ".join(f"{counts[name]} {name}" for name in COUNTERS)


def fetch_key(grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> str:
    """What makes two fetches the same: the pixel grid (not the ROI), the window, the sensor,
    the frame count."""
    frame_count = {"frames": frames} if frames != 1 else {}
    return canonical_json({"crs": grid.crs, "transform": list(grid.transform)[:6],
                           "shape": [grid.height, grid.width], "temporal": temporal.to_dict(),
                           "sensor": sensor.to_dict(), **frame_count})


class CountingSource:
    """An ``ImagerySource`` around another: counted, and one fetch per fetch key."""

    def __init__(self, source: ImagerySource, cache_size: int = 0) -> None:
        self.source = source
        self.name = source.name
        self.fetch_threads = fetch_threads(source)
        self.cache_size = cache_size
        inner = getattr(source, "stats", None)
        self.stats: FetchStats = inner if isinstance(inner, FetchStats) else FetchStats()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Chip] = OrderedDict()
        self._flights: dict[str, Future] = {}

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> Chip:
        key = fetch_key(grid, temporal, sensor, require_frames(frames))
        self.stats.add(planned=1)
        with self._lock:
            chip = self._cache.get(key)
            if chip is not None:
                self._cache.move_to_end(key)
            flight = self._flights.get(key)
            owner = chip is None and flight is None
            if owner:
                flight = self._flights[key] = Future()
        if chip is not None:
            self.stats.add(cached=1)
            return replace(chip, grid=grid)
        assert flight is not None  # nothing cached: a fetch of this chip is under way (ours when owner)
        if not owner:
            try:
                chip = flight.result()  # the owner's chip, or its error
            except BaseException:
                self.stats.add(failed=1)
                raise
            self.stats.add(cached=1)
            return replace(chip, grid=grid)
        try:
            # frames only when > 1: a source written before multi-frame chips still serves single frames
            chip = (self.source.fetch(grid, temporal, sensor, frames=frames) if frames > 1
                    else self.source.fetch(grid, temporal, sensor))
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            self.stats.add(failed=1)
            flight.set_exception(exc)
            raise
        with self._lock:
            if self.cache_size > 0:
                self._cache[key] = chip
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            del self._flights[key]
        self.stats.add(done=1)
        flight.set_result(chip)
        return chip

    def close(self) -> None:
        """Drop cached chips and close the wrapped source when it can be closed."""
        with self._lock:
            self._cache.clear()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
