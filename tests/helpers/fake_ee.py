"""A fake ``ee`` module: records what Earth Engine sources ask for and computes it.

Scenes are dicts ``{"id", "date" (ISO), "properties", "bands", "value": f(band, x, y) ->
array, "footprint": g(x, y) -> bool array (optional)}``; x, y are pixel-centre
coordinates in the requested CRS; pixels outside the footprint are masked. Collections
evaluate their recorded filters, ``map``, ``median``/``mosaic`` for real, so tests can
check values, not only calls. ``computePixels`` enforces a byte limit and can fail its
first calls with a quota error.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import warnings
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

LIMIT_TEXT = "Total request size ({} bytes) must be less than or equal to {} bytes."


class EEException(Exception):
    pass


Bands = dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (values, mask)


class Image:
    """A lazy image: ``evaluate(x, y)`` -> bands; every operation is logged."""

    def __init__(self, fake: "FakeEE", evaluate: Callable[[np.ndarray, np.ndarray], Bands]):
        self.fake, self.evaluate = fake, evaluate

    def _op(self, name: str, *args, fn: Callable[[Bands], Bands]) -> "Image":
        self.fake.log.append((name, *args))
        return Image(self.fake, lambda x, y: fn(self.evaluate(x, y)))

    def select(self, bands):
        return self._op("select", list(bands), fn=lambda b: {n: b[n] for n in bands})

    def toFloat(self):
        return self._op("toFloat", fn=lambda b: {n: (v.astype(np.float32), m) for n, (v, m) in b.items()})

    def resample(self, method):
        return self._op("resample", method, fn=lambda b: b)

    def rename(self, names):
        return self._op("rename", list(names), fn=lambda b: dict(zip(names, b.values())))

    def _binary(self, name, other, combine):
        def fn(bands: Bands) -> Bands:
            return {n: (combine(v, c), m) for (n, (v, m)), c in zip(bands.items(), other.values)}
        return self._op(name, list(other.values), fn=fn)

    def multiply(self, other):
        return self._binary("multiply", other, lambda v, c: v * c)

    def add(self, other):
        return self._binary("add", other, lambda v, c: v + c)

    def mask(self):
        return self._op("mask", fn=lambda b: {n: (m.astype(np.float32), np.ones_like(m))
                                              for n, (_, m) in b.items()})

    def reduce(self, reducer):
        def fn(b: Bands) -> Bands:
            values = np.min([v for v, _ in b.values()], axis=0)
            return {"min": (values, np.ones(values.shape, bool))}
        return self._op("reduce", reducer, fn=fn)

    def unmask(self, value, same_footprint=True):
        return self._op("unmask", value, same_footprint,
                        fn=lambda b: {n: (np.where(m, v, value), np.ones_like(m)) for n, (v, m) in b.items()})

    def addBands(self, other):
        def evaluate(x, y):
            return {**self.evaluate(x, y), **other.evaluate(x, y)}
        self.fake.log.append(("addBands",))
        return Image(self.fake, evaluate)


class Constant:
    def __init__(self, values):
        self.values = list(values)


class Collection:
    def __init__(self, fake: "FakeEE", scenes: list[dict], ids: list[str]):
        self.fake, self.scenes, self.ids = fake, scenes, ids
        self.mapper: Callable[[Image], Image] = lambda image: image

    def _with(self, name, *args, scenes=None):
        self.fake.log.append((name, *args))
        out = Collection(self.fake, self.scenes if scenes is None else scenes, self.ids)
        out.mapper = self.mapper
        return out

    def merge(self, other):
        return self._with("merge", other.ids[0], scenes=self.scenes + other.scenes)

    def filterDate(self, start, end):
        keep = [s for s in self.scenes if start <= s["date"] < end]
        return self._with("filterDate", start, end, scenes=keep)

    def filterBounds(self, geometry):
        return self._with("filterBounds", geometry)

    def filter(self, condition):
        return self._with("filter", condition.text, scenes=[s for s in self.scenes if condition.test(s)])

    def map(self, fn):
        out = self._with("map")
        out.mapper = lambda image, previous=self.mapper: fn(previous(image))
        return out

    def sort(self, prop):
        return self._with("sort", prop, scenes=sorted(self.scenes, key=lambda s: s["date"]))

    def aggregate_array(self, prop):
        getter = {"system:index": lambda s: s["id"],
                  "system:time_start": lambda s: int(dt.datetime.fromisoformat(s["date"]).replace(
                      tzinfo=dt.timezone.utc).timestamp() * 1000)}[prop]
        return SimpleNamespace(getInfo=lambda: [getter(s) for s in self.scenes])

    def _images(self) -> list[Image]:
        return [self.mapper(Image(self.fake, _scene_bands(s))) for s in self.scenes]

    def _composite(self, name: str, combine: Callable[[np.ndarray], np.ndarray]) -> Image:
        self.fake.log.append((name,))
        images = self._images()

        def evaluate(x, y):
            evaluated = [image.evaluate(x, y) for image in images]
            out: Bands = {}
            for band in evaluated[0]:
                stack = np.stack([np.where(e[band][1], e[band][0], np.nan) for e in evaluated])
                values = combine(stack)
                out[band] = (np.nan_to_num(values), np.isfinite(values))
            return out
        return Image(self.fake, evaluate)

    def median(self):
        def median(stack):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
                return np.nanmedian(stack, axis=0)
        return self._composite("median", median)

    def mosaic(self):
        def top(stack):
            out = stack[0].copy()
            for layer in stack[1:]:
                out = np.where(np.isfinite(layer), layer, out)
            return out
        return self._composite("mosaic", top)


def _scene_bands(scene: dict) -> Callable:
    def evaluate(x, y):
        inside = scene.get("footprint", lambda x, y: np.ones(x.shape, bool))(x, y)
        return {b: (np.asarray(scene["value"](b, x, y), dtype=np.float64), inside.copy())
                for b in scene["bands"]}
    return evaluate


def _rectangle(coords: list[float], proj: str | None = None, geodesic: bool | None = None) -> SimpleNamespace:
    return SimpleNamespace(coords=list(coords), proj=proj, geodesic=geodesic)


class Condition:
    def __init__(self, text: str, test: Callable[[dict], bool]):
        self.text, self.test = text, test


class FakeEE:
    """Stand-in for the ``ee`` module (see the module docstring)."""

    EEException = EEException

    def __init__(self, collections: dict[str, list[dict]], *, init_error: str | None = None,
                 quota_failures: int = 0, max_request_bytes: int | None = None, delay_s: float = 0.0):
        self.collections = collections
        self.init_error = init_error
        self.quota_failures = quota_failures
        self.max_request_bytes = max_request_bytes
        self.delay_s = delay_s
        self.log: list[tuple] = []
        self.requests: list[dict] = []
        self.initialized: list[Any] = []
        self._lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.Filter = SimpleNamespace(
            lte=lambda p, v: Condition(f"{p}<={v}", lambda s: s["properties"][p] <= v),
            eq=lambda p, v: Condition(f"{p}=={v}", lambda s: s["properties"][p] == v),
            listContains=lambda p, v: Condition(f"{v} in {p}", lambda s: v in s["properties"][p]),
        )
        self.Geometry = SimpleNamespace(Rectangle=_rectangle)
        self.Reducer = SimpleNamespace(min=lambda: "min")
        self.Image = SimpleNamespace(constant=Constant)
        self.data = SimpleNamespace(computePixels=self.computePixels)

    def Initialize(self, project=None):
        if self.init_error:
            raise EEException(self.init_error)
        self.initialized.append(project)

    def ImageCollection(self, collection_id: str) -> Collection:
        self.log.append(("ImageCollection", collection_id))
        return Collection(self, [dict(s) for s in self.collections.get(collection_id, [])], [collection_id])

    def Dictionary(self, values: dict):
        return SimpleNamespace(getInfo=lambda: {k: v.getInfo() for k, v in values.items()})

    def computePixels(self, params: dict) -> np.ndarray:
        with self._lock:
            self.requests.append(params)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fail = self.quota_failures > 0
            self.quota_failures -= fail
        try:
            time.sleep(self.delay_s)
            if fail:
                raise EEException("Too many concurrent aggregations.")
            dims, t = params["grid"]["dimensions"], params["grid"]["affineTransform"]
            width, height, names = dims["width"], dims["height"], params["bandIds"]
            size = width * height * len(names) * 4
            if self.max_request_bytes is not None and size > self.max_request_bytes:
                raise EEException(LIMIT_TEXT.format(size, self.max_request_bytes))
            x, y = np.meshgrid(t["translateX"] + (np.arange(width) + 0.5) * t["scaleX"],
                               t["translateY"] + (np.arange(height) + 0.5) * t["scaleY"])
            bands = params["expression"].evaluate(x, y)
            out = np.zeros((height, width), dtype=[(n, np.float32) for n in names])
            for name in names:
                out[name] = bands[name][0]
            return out
        finally:
            with self._lock:
                self.in_flight -= 1
