"""Google Satellite Embedding V1 annual from Earth Engine (``computePixels``).

The collection ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL`` is filtered to the window and
the ROI, mosaicked, and the 64 bands A00..A63 are fetched on the request's chip grid
(its CRS, 10 m transform and size). Masked pixels are unmasked to a value outside
[-1, 1] and come back as NaN. Requests over the per-call size limit are split into
blocks; quota errors are retried with exponential backoff; a semaphore caps the calls
in flight. ``earthengine-api`` is imported on first use (``ee`` may be injected).
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from rasterio.warp import transform_bounds

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.sources.gse_cog import BANDS
from rsembed_db.specs.spatial import WGS84
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import ChipGrid

COLLECTION = "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
MASK_FILL = -2.0  # embeddings lie in [-1, 1]
MASK_CUT = -1.5  # below: a masked pixel
BLOCK_PIXELS = 256  # 256 x 256 x 64 bands x 8 bytes = 32 MiB, under the 48 MiB request limit
_QUOTA = re.compile(r"quota|too many|rate limit|429|resource.?exhausted", re.IGNORECASE)
CREDENTIALS_HINT = ("run `earthengine authenticate` once, then set RSEMBED_EE_PROJECT (or "
                    "GOOGLE_CLOUD_PROJECT, or --config project=...) to a Cloud project "
                    "registered for Earth Engine")


class GseEarthEngineSource:
    name = "gse-earthengine"

    def __init__(self, project: str | None, max_concurrency: int = 4, retries: int = 5,
                 backoff_s: float = 2.0, block_pixels: int = BLOCK_PIXELS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.project = project
        self.retries, self.backoff_s, self.block_pixels, self.sleep = retries, backoff_s, block_pixels, sleep
        self._slots = threading.BoundedSemaphore(max(int(max_concurrency), 1))
        self._lock = threading.Lock()
        self._ee: ModuleType | None = None

    def ee(self) -> ModuleType:
        """The initialised ``ee`` module; one SpecError naming the fix when it cannot start."""
        with self._lock:
            if self._ee is None:
                if not self.project:
                    raise SpecError("gse.project", f"no Earth Engine project configured: {CREDENTIALS_HINT}")
                try:
                    ee = importlib.import_module("ee")
                except ImportError:
                    raise SpecError("gse.backend", "the Earth Engine backend needs earthengine-api: "
                                    "pip install 'rsembed-db[gee]' (or use --config cogs=...)") from None
                try:
                    ee.Initialize(project=self.project)
                except Exception as exc:  # noqa: BLE001 - any start-up failure is a credentials problem
                    raise SpecError("gse.project", f"Earth Engine did not start ({exc}): "
                                    f"{CREDENTIALS_HINT}") from None
                self._ee = ee
            return self._ee

    def read(self, grid: ChipGrid, temporal: TemporalSpec) -> tuple[np.ndarray, list[str]]:
        """(64, H, W) float32 on ``grid``, NaN where masked; the collection used."""
        ee = self.ee()
        west, south, east, north = transform_bounds(grid.crs, WGS84, *grid.bounds, densify_pts=21)
        region = ee.Geometry.Rectangle([west, south, east, north], WGS84, False)
        image = (ee.ImageCollection(COLLECTION)
                 .filterDate(temporal.start_date.isoformat(), temporal.end_date.isoformat())
                 .filterBounds(region).mosaic().select(list(BANDS)).unmask(MASK_FILL, False))
        out = np.empty((len(BANDS), grid.height, grid.width), dtype=np.float32)
        t, step = grid.transform, self.block_pixels
        for r0 in range(0, grid.height, step):
            for c0 in range(0, grid.width, step):
                h, w = min(step, grid.height - r0), min(step, grid.width - c0)
                request = {
                    "expression": image, "fileFormat": "NUMPY_NDARRAY", "bandIds": list(BANDS),
                    "grid": {"dimensions": {"width": w, "height": h}, "crsCode": grid.crs,
                             "affineTransform": {"scaleX": t.a, "shearX": t.b,
                                                 "translateX": t.c + t.a * c0, "shearY": t.d,
                                                 "scaleY": t.e, "translateY": t.f + t.e * r0}},
                }
                pixels = self._compute(ee, request)
                out[:, r0:r0 + h, c0:c0 + w] = np.stack([pixels[b] for b in BANDS]).astype(np.float32)
        out[out < MASK_CUT] = np.nan
        return out, [COLLECTION]

    def _compute(self, ee: ModuleType, request: dict[str, Any]) -> np.ndarray:
        for attempt in range(self.retries + 1):
            with self._slots:
                try:
                    return ee.data.computePixels(request)
                except Exception as exc:  # noqa: BLE001 - classified below
                    error = exc
            if not _QUOTA.search(str(error)):
                raise TileFailure(f"Earth Engine computePixels failed: {error}")
            if attempt < self.retries:
                self.sleep(self.backoff_s * 2 ** attempt)
        raise TileFailure(f"Earth Engine quota still exceeded after {self.retries} retries: {error}")
