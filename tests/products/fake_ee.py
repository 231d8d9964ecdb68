"""A fake ``ee`` module that records what is asked of Earth Engine and answers from a formula."""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable

import numpy as np

from rsembed_db.sources.gse_cog import BANDS
from rsembed_db.sources.gse_earthengine import MASK_FILL


def band_values(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(64, ...) values in [-1, 1] that vary with position and band."""
    k = np.arange(len(BANDS)).reshape(-1, *([1] * x.ndim))
    return np.sin(x / 137.0 + k) * np.cos(y / 91.0 - k) * 0.9


class _Image:
    def __init__(self, log: dict, collection: str) -> None:
        self.log = log
        log["collection"] = collection

    def filterDate(self, start, end):  # noqa: N802 - the ee API's names
        self.log["date"] = (start, end)
        return self

    def filterBounds(self, region):  # noqa: N802
        self.log["region"] = region.coords
        return self

    def mosaic(self):
        self.log["mosaic"] = True
        return self

    def select(self, bands):
        self.log["bands"] = list(bands)
        return self

    def unmask(self, value, same_footprint=True):
        self.log["unmask"] = (value, same_footprint)
        return self


class FakeEE(types.ModuleType):
    """``masked(x, y)`` marks pixels Earth Engine would mask; ``quota_failures`` first calls fail."""

    def __init__(self, masked: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 quota_failures: int = 0, init_error: str | None = None, delay_s: float = 0.0) -> None:
        super().__init__("ee")
        self.log: dict = {}
        self.requests: list[dict] = []
        self.initialised_with: list[str | None] = []
        self.masked, self.quota_failures, self.init_error, self.delay_s = (
            masked, quota_failures, init_error, delay_s)
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self.Geometry = types.SimpleNamespace(Rectangle=self._rectangle)
        self.data = types.SimpleNamespace(computePixels=self._compute_pixels)

    def Initialize(self, project=None):  # noqa: N802
        if self.init_error:
            raise RuntimeError(self.init_error)
        self.initialised_with.append(project)

    def ImageCollection(self, collection):  # noqa: N802
        return _Image(self.log, collection)

    @staticmethod
    def _rectangle(coords, proj=None, geodesic=None):
        return types.SimpleNamespace(coords=list(coords), proj=proj, geodesic=geodesic)

    def _compute_pixels(self, request: dict) -> np.ndarray:
        with self._lock:
            self.requests.append(request)
            if self.quota_failures:
                self.quota_failures -= 1
                raise RuntimeError("Too Many Requests: quota exceeded for project")
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            grid = request["grid"]
            t, dims = grid["affineTransform"], grid["dimensions"]
            rows, cols = np.mgrid[0:dims["height"], 0:dims["width"]]
            x = t["translateX"] + t["scaleX"] * (cols + 0.5)
            y = t["translateY"] + t["scaleY"] * (rows + 0.5)
            values = band_values(x, y)
            if self.masked is not None:
                values[:, self.masked(x, y)] = MASK_FILL
            out = np.empty((dims["height"], dims["width"]), dtype=[(b, "<f8") for b in BANDS])
            for k, band in enumerate(request["bandIds"]):
                out[band] = values[k]
            return out
        finally:
            with self._lock:
                self.in_flight -= 1
