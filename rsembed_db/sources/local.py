"""Imagery from local rasters (GeoTIFF, VRT, JPEG 2000): one file, several, or folders.

Scenes are scanned once, on first use: georeferencing, band names from the band
descriptions (normalised, see ``sources.bands``) and the acquisition date (resolved as
described in ``sources.scene_dates``: the ``date`` argument, then date tags, then the
file name). A fetch keeps the scenes whose date lies in the half-open window and whose
footprint meets the chip, warps their bands onto the chip grid (bilinear, source nodata
respected), and composites them per pixel:

- ``median``: the median over the scenes valid at that pixel;
- ``mosaic``: the most recent scene valid at that pixel (same-day scenes: the later
  path wins).

Values are cast to float32 as stored, never rescaled: models normalise their inputs.
Files carry no cloud information, so ``sensor.cloudy_pct`` is not applied here.

``frames=T > 1`` returns a multi-frame chip (``sources.frames``): each scene of the
window is warped once and composited with the other scenes of its frame bin.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds

from rsembed_db.errors import TileFailure
from rsembed_db.sources.base import Chip, local_fetch_threads
from rsembed_db.sources.composite import COMPOSITES
from rsembed_db.sources.frames import DatedPlane, frame_bins, frames_from_planes, require_frames
from rsembed_db.sources.scene_dates import compile_date_pattern
from rsembed_db.sources.scenes import Scene, discover, scan_scene
from rsembed_db.sources.warp import warp_to_grid
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec, parse_date
from rsembed_db.tiling.chip_grid import ChipGrid

MAX_OPEN_PER_THREAD = 64
_DATES_SHOWN = 10


class _Handles:
    """One thread's open datasets; beyond ``MAX_OPEN_PER_THREAD`` the least recently used closes."""

    def __init__(self) -> None:
        self._open: OrderedDict[Path, DatasetReader] = OrderedDict()

    def get(self, path: Path) -> DatasetReader:
        dataset = self._open.get(path)
        if dataset is None or dataset.closed:
            dataset = self._open[path] = rasterio.open(path)
            if len(self._open) > MAX_OPEN_PER_THREAD:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(path)
        return dataset

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


class LocalImagerySource:
    """``ImagerySource`` over local raster files; safe to call from many threads.

    Each thread keeps its own open datasets (rasterio handles are not thread-safe);
    they close when the thread ends or on ``close()``.
    """

    name = "local"

    @property
    def fetch_threads(self) -> int:
        return local_fetch_threads()

    def __init__(self, paths: str | Path | Sequence[str | Path], date: str | dt.date | None = None,
                 date_pattern: str | None = None):
        entries = [paths] if isinstance(paths, (str, Path)) else list(paths)
        self._paths = [Path(p) for p in entries]
        self._date = parse_date("date", date) if date is not None else None
        self._date_pattern = compile_date_pattern(date_pattern)
        self._scenes: tuple[Scene, ...] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._handles: weakref.WeakSet[_Handles] = weakref.WeakSet()

    @property
    def scenes(self) -> tuple[Scene, ...]:
        """All scenes, oldest first, scanned on first access; SpecError on a bad path, file or date."""
        with self._lock:
            if self._scenes is None:
                scanned = (scan_scene(path, self._date, self._date_pattern) for path in discover(self._paths))
                self._scenes = tuple(sorted(scanned, key=lambda s: (s.date, str(s.path))))
            return self._scenes

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> Chip:
        """Composite the scenes of ``temporal`` on ``grid`` (``frames`` > 1: one composite per
        frame bin); TileFailure when none covers it."""
        if require_frames(frames) > 1:
            frame_bins(temporal, frames)  # a bad frame count fails before any read
        scenes = self._candidates(grid, temporal)
        indexes = [scene.band_indexes(sensor.bands) for scene in scenes]
        used, planes = [], []
        for scene, bidx in zip(scenes, indexes):
            plane = self._warp(scene, bidx, grid)
            if np.isfinite(plane[0]).any():
                used.append(scene)
                planes.append(plane)
        if not planes:
            raise TileFailure(
                f"tile lies outside all imagery: {len(scenes)} scene(s) in window "
                f"{_window(temporal)} overlap its bounds but none has a valid pixel on it"
            )
        if frames > 1:
            dated = [DatedPlane(str(scene.path), scene.date, plane) for scene, plane in zip(used, planes)]
            return frames_from_planes(grid, temporal, sensor, frames, dated, {"source": self.name})
        data = COMPOSITES[sensor.composite](np.stack(planes))
        valid = np.isfinite(data[0])
        data[:, ~valid] = sensor.fill_value
        meta = {
            "source": self.name,
            "scenes": [str(scene.path) for scene in used],
            "dates": [scene.date.isoformat() for scene in used],
            "composite": sensor.composite,
            "covered_fraction": float(valid.mean()),
            "input_time": temporal.midpoint.isoformat(),
        }
        return Chip(data, valid, tuple(sensor.bands), grid, meta)

    def close(self) -> None:
        """Close every thread's open datasets; call only when no fetch is running."""
        with self._lock:
            for handles in list(self._handles):
                handles.close()

    def _candidates(self, grid: ChipGrid, temporal: TemporalSpec) -> list[Scene]:
        """Scenes dated in the window whose bounds meet the chip, oldest first."""
        scenes = self.scenes
        chip_bounds: dict[CRS, tuple[float, ...]] = {}
        hits = []
        in_window = [scene for scene in scenes if temporal.contains(scene.date)]
        for scene in in_window:
            if scene.crs not in chip_bounds:
                chip_bounds[scene.crs] = transform_bounds(grid.crs, scene.crs, *grid.bounds, densify_pts=21)
            if _overlaps(chip_bounds[scene.crs], scene.bounds):
                hits.append(scene)
        if in_window and not hits:
            raise TileFailure(f"the tile lies outside the footprint of every scene in window {_window(temporal)} "
                              f"({len(in_window)} scene(s) there cover other places)")
        if not hits:
            dates = sorted({scene.date.isoformat() for scene in scenes})
            shown = ", ".join(dates[:_DATES_SHOWN]) + (", ..." if len(dates) > _DATES_SHOWN else "")
            raise TileFailure(f"no scene is dated in window {_window(temporal)}; the {len(scenes)} scene(s) "
                              f"scanned are dated {shown}")
        return hits

    def _warp(self, scene: Scene, indexes: tuple[int, ...], grid: ChipGrid) -> np.ndarray:
        """(C, H, W) float32 of ``scene`` on ``grid``, NaN in every band where invalid."""
        return warp_to_grid(self._dataset(scene.path), indexes, scene.nodata, grid)

    def _dataset(self, path: Path) -> DatasetReader:
        """This thread's open handle on ``path``."""
        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = _Handles()
            with self._lock:
                self._handles.add(handles)
        return handles.get(path)


def _window(temporal: TemporalSpec) -> str:
    return f"{temporal.start_date.isoformat()}..{temporal.end_date.isoformat()}"


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when two (left, bottom, right, top) boxes share area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
