"""Multi-frame chips: a window split into T frame bins, one composite per bin.

The contract between sources and multi-temporal models (``docs/sources.md``):

- ``frame_bins`` splits the half-open window ``[start, end)`` into T bins of equal
  length at day resolution: bin i is ``[start + floor(i * days / T), start +
  floor((i + 1) * days / T))``, the last bin ends at ``end``. A window shorter than T
  days cannot be split (SpecError naming ``frames``).
- Each bin is composited on its own, with the sensor's composite rule and filters,
  exactly as a single-frame fetch of that bin would be.
- A bin without imagery is back-filled with the whole-window composite (the frame is a
  duplicate) and flagged; when the whole window has no imagery the tile fails.

The chip holds (T, C, H, W) float32 data; ``valid`` is (H, W), True where a pixel is
valid in at least one real (not back-filled) frame. ``meta`` records ``frame_bins``,
``frame_dates`` (per frame the median acquisition date of the scenes used, the bin
midpoint for a back-filled frame), ``frame_backfilled``, ``frame_valid_fraction``,
``frame_scenes``, ``n_frames``, ``n_frames_requested``, ``n_distinct_frames``,
``n_backfilled_frames``, and for all frames together ``scenes``, ``dates``,
``covered_fraction`` and ``input_time`` (the window midpoint).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.sources.base import Chip
from rsembed_db.sources.composite import COMPOSITES
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import ChipGrid

FRAME_META = ("frame_bins", "frame_dates", "frame_backfilled", "frame_valid_fraction", "frame_scenes",
              "n_frames", "n_frames_requested", "n_distinct_frames", "n_backfilled_frames")
_SUMMED = ("requests",)  # per-fetch counters a source reports: summed over the frames' fetches
_OWN = ("source", "scenes", "dates", "composite", "covered_fraction", "input_time", *_SUMMED)


def require_frames(value: object) -> int:
    """The frame count: an integer >= 1; SpecError naming ``frames`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecError("frames", f"must be an integer >= 1, got {value!r}")
    return int(value)


def frame_bins(temporal: TemporalSpec, frames: int) -> list[TemporalSpec]:
    """The window split into ``frames`` half-open bins of equal length (whole days)."""
    frames = require_frames(frames)
    start, end = temporal.start_date, temporal.end_date
    days = (end - start).days
    if frames > days:
        raise SpecError("frames", f"a window of {days} day(s) ({start}..{end}) cannot be split into "
                        f"{frames} frame bins of at least one day; widen the window or ask for fewer frames")
    edges = [start + dt.timedelta(days=i * days // frames) for i in range(frames)] + [end]
    return [TemporalSpec.range(a, b) for a, b in zip(edges[:-1], edges[1:])]


def median_date(dates: Sequence[dt.date]) -> dt.date:
    """The median of acquisition dates; for an even count the day halfway between the
    middle two (rounded down)."""
    ordered = sorted(dates)
    n = len(ordered)
    low, high = ordered[(n - 1) // 2], ordered[n // 2]
    return low + (high - low) // 2


@dataclass(frozen=True)
class Composite:
    """One bin's (or the window's) composite: (C, H, W) data with ``fill_value`` where
    invalid, the (H, W) valid mask, and the scenes used (oldest first) with their ISO dates."""

    data: np.ndarray
    valid: np.ndarray
    scenes: tuple[str, ...]
    dates: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)  # the source's other fetch meta

    @classmethod
    def of_chip(cls, chip: Chip) -> Composite:
        other = {k: v for k, v in chip.meta.items() if k not in ("scenes", "dates")}
        return cls(chip.data, chip.valid, tuple(chip.meta["scenes"]), tuple(chip.meta["dates"]), other)


@dataclass(frozen=True)
class DatedPlane:
    """One scene on the chip grid: (C, H, W) float32, NaN where invalid."""

    scene: str
    date: dt.date
    plane: np.ndarray


def composite_planes(planes: Sequence[DatedPlane], sensor: SensorSpec) -> Composite:
    """The composite of scenes (oldest first) as a single-frame fetch makes it."""
    data = COMPOSITES[sensor.composite](np.stack([p.plane for p in planes]))
    valid = np.isfinite(data[0])
    data[:, ~valid] = sensor.fill_value
    return Composite(data, valid, tuple(p.scene for p in planes), tuple(p.date.isoformat() for p in planes))


def frames_from_planes(grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int,
                       planes: Sequence[DatedPlane], meta: dict[str, Any]) -> Chip:
    """A multi-frame chip from the window's valid scene planes (oldest first, at least one):
    each bin composites its own scenes; ``meta`` is the source's other fetch meta."""
    bins = frame_bins(temporal, frames)
    per_bin = []
    for window in bins:
        inside = [p for p in planes if window.contains(p.date)]
        per_bin.append(composite_planes(inside, sensor) if inside else None)
    return assemble_frames(grid, temporal, sensor, bins, per_bin, lambda: composite_planes(planes, sensor), meta)


def fetch_frames(fetch_one: Callable[[TemporalSpec], Chip], grid: ChipGrid, temporal: TemporalSpec,
                 sensor: SensorSpec, frames: int, meta: dict[str, Any]) -> Chip:
    """A multi-frame chip from one single-frame fetch per bin (``fetch_one(window)``); a
    bin whose fetch raises TileFailure is back-filled from a fetch of the whole window."""
    bins = frame_bins(temporal, frames)
    per_bin: list[Composite | None] = []
    for window in bins:
        try:
            per_bin.append(Composite.of_chip(fetch_one(window)))
        except TileFailure:
            per_bin.append(None)
    return assemble_frames(grid, temporal, sensor, bins, per_bin, lambda: Composite.of_chip(fetch_one(temporal)),
                           meta)


def assemble_frames(grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, bins: list[TemporalSpec],
                    per_bin: list[Composite | None], whole: Callable[[], Composite], meta: dict[str, Any]) -> Chip:
    """The (T, C, H, W) chip of per-bin composites, empty bins back-filled with ``whole()``
    (asked for only when a bin is empty; its TileFailure is the tile's)."""
    real = [c for c in per_bin if c is not None]
    backfill = whole() if len(real) < len(per_bin) else None
    filled: list[Composite] = [c if c is not None else backfill for c in per_bin]  # type: ignore[misc]
    valid = np.zeros(filled[0].valid.shape, dtype=bool)
    for composite in real:
        valid |= composite.valid
    used: dict[str, str] = {}
    for composite in filled:
        used.update(zip(composite.scenes, composite.dates))
    order = sorted(used, key=lambda scene: (used[scene], scene))
    fetched = [*real, *([backfill] if backfill is not None else [])]   # each composite once
    extra = {k: v for c in fetched for k, v in c.meta.items() if k not in _OWN}
    sums = {k: sum(c.meta.get(k, 0) for c in fetched) for k in _SUMMED if any(k in c.meta for c in fetched)}
    return Chip(
        np.stack([c.data for c in filled]).astype(np.float32, copy=False), valid, tuple(sensor.bands), grid,
        {**meta, **extra, **sums,
         "scenes": order,
         "dates": [used[scene] for scene in order],
         "composite": sensor.composite,
         "covered_fraction": float(valid.mean()),
         "input_time": temporal.midpoint.isoformat(),
         "frame_bins": [[b.start_date.isoformat(), b.end_date.isoformat()] for b in bins],
         "frame_dates": [(median_date([dt.date.fromisoformat(d) for d in c.dates]) if c is not None
                          else b.midpoint).isoformat() for b, c in zip(bins, per_bin)],
         "frame_backfilled": [c is None for c in per_bin],
         "frame_valid_fraction": [float(c.valid.mean()) for c in filled],
         "frame_scenes": [list(c.scenes) for c in filled],
         "n_frames": len(bins),
         "n_frames_requested": len(bins),
         "n_distinct_frames": len(real),
         "n_backfilled_frames": len(bins) - len(real)})
