"""Imagery from Google Earth Engine (``earthengine-api``), computed on the chip grid.

A fetch filters the collection (``sources.earthengine_collections``) to the chip's
footprint and the half-open window (``filterDate`` excludes its end), applies the
family's metadata filters (cloud cover, Sentinel-1 mode/polarisation/orbit), selects
and scales the bands, resamples bilinearly, composites (``median``, or ``mosaic``
with the most recent scene on top) and asks ``ee.data.computePixels`` for the pixels
on the chip's own grid: its CRS, ``crsTransform`` and size, so values line up with
the local and STAC sources. A validity band (the composite's mask) travels with the
bands; masked pixels get ``sensor.fill_value``.

Requests stay within Earth Engine's computePixels limits (48 MB of uncompressed
pixels, 32768 px a side): larger chips are split into blocks on the same grid and
stitched exactly, and a block refused as too large is halved again. At most
``max_concurrent`` requests run at once; quota and transient errors (HTTP 429, "Too
many concurrent aggregations", 5xx) are retried with exponential backoff.

``frames=T > 1``: one fetch (collection filter, composite, pixels) per frame bin,
exactly as a single-frame fetch of that bin; a bin without a scene or a valid pixel is
back-filled with the whole window's composite (``sources.frames``).

Credentials: run ``earthengine authenticate`` once and set ``RSEMBED_EE_PROJECT`` (or
``EE_PROJECT``) to the Google Cloud project registered for Earth Engine.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
from affine import Affine
from rasterio.warp import transform_bounds

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.sources.base import Chip
from rsembed_db.sources.counting import FetchStats
from rsembed_db.sources.earthengine_collections import EECollection, find_collection
from rsembed_db.sources.frames import fetch_frames, frame_bins, require_frames
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import ChipGrid

PROJECT_ENV = ("RSEMBED_EE_PROJECT", "EE_PROJECT")
MAX_REQUEST_BYTES = 48 * 1024 * 1024
MAX_DIMENSION = 32768
VALID_BAND = "rsembed_valid"
BYTES_PER_VALUE = 4  # every band is requested as float32
_TRANSIENT = ("429", "too many requests", "too many concurrent aggregations", "quota exceeded",
              "resource_exhausted", "rate limit", "503", "service unavailable", "internal error",
              "backend error")
_TOO_LARGE = ("request size", "must be less than or equal to", "too large")


def _mentions(exc: BaseException, markers: tuple[str, ...]) -> bool:
    text = f"{exc} {getattr(getattr(exc, 'resp', None), 'status', '')}".lower()
    return any(marker in text for marker in markers)


def import_ee() -> Any:
    """The ``ee`` module; SpecError naming the package when it is not installed."""
    try:
        import ee
    except ImportError as exc:
        raise SpecError("source", "the Earth Engine source needs the earthengine-api package: "
                        "pip install 'rsembed-db[gee]'") from exc
    return ee


Block = tuple[int, int, int, int]  # row, col, height, width


class EarthEngineSource:
    """``ImagerySource`` over Earth Engine; thread-safe, one initialisation per instance.

    ``ee`` replaces the ``ee`` module (tests pass a fake); ``sleep`` the backoff wait.
    ``stats.retries`` counts repeated requests.
    """

    name = "gee"

    def __init__(self, project: str | None = None, *, ee: Any = None, max_concurrent: int = 8,
                 retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 64.0,
                 max_request_bytes: int = MAX_REQUEST_BYTES, max_dimension: int = MAX_DIMENSION,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if max_concurrent < 1:
            raise SpecError("max_concurrent", f"must be >= 1, got {max_concurrent}")
        self.project = project or next((os.environ[v] for v in PROJECT_ENV if os.environ.get(v)), None)
        self._ee = ee
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.max_request_bytes, self.max_dimension = max_request_bytes, max_dimension
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._init_lock = threading.Lock()
        self._ready = False
        self.stats = FetchStats()

    def initialize(self) -> Any:
        """Initialise Earth Engine once; SpecError with the fix when credentials are missing."""
        with self._init_lock:
            ee = self._ee if self._ee is not None else import_ee()
            if not self._ready:
                try:
                    ee.Initialize(project=self.project) if self.project else ee.Initialize()
                except Exception as exc:  # noqa: BLE001 - any failure here is a set-up problem
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise SpecError(
                        "source", f"cannot initialise Earth Engine ({reason}): run `earthengine "
                        f"authenticate` once, and set {PROJECT_ENV[0]} (or {PROJECT_ENV[1]}) to the "
                        "Google Cloud project registered for Earth Engine") from exc
                self._ee, self._ready = ee, True
            return ee

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> Chip:
        """The composite on ``grid`` (``frames`` > 1: one composite per frame bin); TileFailure
        when no scene or no valid pixel covers it."""
        if require_frames(frames) > 1:
            frame_bins(temporal, frames)  # a bad frame count fails before any request
            return fetch_frames(lambda window: self.fetch(grid, window, sensor), grid, temporal, sensor, frames,
                                {"source": self.name})
        ee = self.initialize()
        family = find_collection(sensor.collection)
        bands = tuple(family.band_name(b) for b in sensor.bands)
        collection, scenes = self._scenes(ee, family, grid, temporal, sensor, bands)
        relaxed = not scenes["ids"] and family.sar and sensor.s1_require_iw and sensor.s1_relax_iw_on_empty
        if relaxed:  # no IW scene: the other acquisition modes, as SensorSpec.s1_relax_iw_on_empty says
            collection, scenes = self._scenes(ee, family, grid, temporal, replace(sensor, s1_require_iw=False), bands)
        if not scenes["ids"]:
            raise TileFailure(f"no {family.names[0]} scene in window {temporal.start_date}..{temporal.end_date} "
                              f"intersects tile (cloudy_pct={sensor.cloudy_pct:g})")
        image = self._composite(ee, family, collection, sensor, bands)
        data, valid, requests = self._pixels(ee, image, bands, grid)
        if not valid.any():
            raise TileFailure(f"{len(scenes['ids'])} scene(s) in window but no valid pixel on the tile")
        data[:, ~valid] = sensor.fill_value
        order = np.argsort(scenes["times"], kind="stable")
        meta = {
            "source": self.name,
            "collection": "+".join(family.collection_ids(sensor)),
            "scenes": [scenes["ids"][i] for i in order],
            "dates": [time.strftime("%Y-%m-%d", time.gmtime(scenes["times"][i] / 1000)) for i in order],
            "composite": sensor.composite,
            "covered_fraction": float(valid.mean()),
            "input_time": temporal.midpoint.isoformat(),
            "requests": requests,
            **({"s1_iw_relaxed": True} if relaxed else {}),
        }
        return Chip(data, valid, tuple(sensor.bands), grid, meta)

    def _scenes(self, ee: Any, family: EECollection, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec,
                bands: tuple[str, ...]) -> tuple[Any, dict[str, list]]:
        """The filtered collection and its scene ids and times."""
        collection = self._collection(ee, family, grid, temporal, sensor, bands)
        scenes = self._call(lambda: ee.Dictionary({
            "ids": collection.aggregate_array("system:index"),
            "times": collection.aggregate_array("system:time_start"),
        }).getInfo())
        return collection, scenes

    def _collection(self, ee: Any, family: EECollection, grid: ChipGrid, temporal: TemporalSpec,
                    sensor: SensorSpec, bands: tuple[str, ...]) -> Any:
        ids = family.collection_ids(sensor)
        collection = ee.ImageCollection(ids[0])
        for other in ids[1:]:
            collection = collection.merge(ee.ImageCollection(other))
        footprint = ee.Geometry.Rectangle(list(transform_bounds(grid.crs, "EPSG:4326", *grid.bounds,
                                                                densify_pts=21)))
        collection = collection.filterDate(temporal.start_date.isoformat(), temporal.end_date.isoformat())
        collection = collection.filterBounds(footprint)
        for condition in family.filters(ee, sensor, bands):
            collection = collection.filter(condition)
        return collection

    @staticmethod
    def _composite(ee: Any, family: EECollection, collection: Any, sensor: SensorSpec,
                   bands: tuple[str, ...]) -> Any:
        gains = [family.scales.get(b, (1.0, 0.0)) for b in bands]

        def prepare(image: Any) -> Any:
            image = image.select(list(bands)).toFloat().resample("bilinear")
            if any(g != (1.0, 0.0) for g in gains):
                image = image.multiply(ee.Image.constant([g for g, _ in gains])) \
                    .add(ee.Image.constant([o for _, o in gains])).rename(list(bands))
            return image

        prepared = collection.map(prepare)
        composite = prepared.median() if sensor.composite == "median" \
            else prepared.sort("system:time_start").mosaic()
        valid = composite.mask().reduce(ee.Reducer.min()).rename([VALID_BAND])
        return composite.unmask(sensor.fill_value, False).addBands(valid).toFloat()

    def _pixels(self, ee: Any, image: Any, bands: tuple[str, ...], grid: ChipGrid
                ) -> tuple[np.ndarray, np.ndarray, int]:
        """(C, H, W) float32, (H, W) valid, number of requests; blocks stitched in place."""
        names = [*bands, VALID_BAND]
        out = np.empty((len(names), grid.height, grid.width), dtype=np.float32)
        todo = self.plan_blocks(grid.height, grid.width, len(names))
        requests = 0
        while todo:
            block = todo.pop()
            try:
                pixels = self._call(partial(self._request, ee, image, names, grid, block))
            except Exception as exc:
                if _mentions(exc, _TOO_LARGE) and block[2] * block[3] > 1:
                    todo += _halves(block)
                    continue
                raise
            requests += 1
            row, col, height, width = block
            for i, name in enumerate(names):
                out[i, row:row + height, col:col + width] = pixels[name]
        return out[:-1], out[-1] > 0, requests

    def plan_blocks(self, height: int, width: int, bands: int) -> list[Block]:
        """Blocks covering the grid, each within the byte and dimension limits."""
        max_pixels = max(1, self.max_request_bytes // (bands * BYTES_PER_VALUE))
        block_w = min(width, self.max_dimension, max_pixels)
        block_h = min(height, self.max_dimension, max(1, max_pixels // block_w))
        return [(r, c, min(block_h, height - r), min(block_w, width - c))
                for r in range(0, height, block_h) for c in range(0, width, block_w)]

    @staticmethod
    def _request(ee: Any, image: Any, names: list[str], grid: ChipGrid, block: Block) -> np.ndarray:
        row, col, height, width = block
        t = grid.transform @ Affine.translation(col, row)
        return ee.data.computePixels({
            "expression": image,
            "fileFormat": "NUMPY_NDARRAY",
            "bandIds": names,
            "grid": {
                "dimensions": {"width": width, "height": height},
                "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": t.c,
                                    "shearY": t.d, "scaleY": t.e, "translateY": t.f},
                "crsCode": grid.crs,
            },
        })

    def _call(self, request: Callable[[], Any]) -> Any:
        """``request()`` under the concurrency cap, retried with backoff on transient errors."""
        attempt = 0
        while True:
            with self._slots:
                try:
                    return request()
                except Exception as exc:
                    if not _mentions(exc, _TRANSIENT):
                        if _mentions(exc, _TOO_LARGE):
                            raise
                        raise TileFailure(f"Earth Engine: {exc}") from exc
                    if attempt >= self.retries:
                        raise TileFailure(f"Earth Engine quota or service error after {attempt} "
                                          f"retries: {exc}") from exc
            self.stats.add(retries=1)
            self._sleep(min(self.backoff_s * 2 ** attempt, self.max_backoff_s))
            attempt += 1


def _halves(block: Block) -> list[Block]:
    """Split a block in two along its longer side."""
    row, col, height, width = block
    if width >= height:
        half = width // 2
        return [(row, col, height, half), (row, col + half, height, width - half)]
    half = height // 2
    return [(row, col, half, width), (row + half, col, height - half, width)]
