"""MOSAIKS random convolutional features: the offline default embedder.

Rolf et al. 2021, "A generalizable and accessible approach to machine learning with
global satellite imagery", Nature Communications 12, 4392. Each of ``num_filters``
random ``k x k`` filters is convolved with the standardised image and the response
``z`` gives two features per pixel, ``relu(z - bias)`` and ``relu(-z - bias)``; pooling
(average by default) over an ROI yields the vector. Features are at pixel resolution.

Determinism: the convolution is an explicit shift-and-add in float64 with a fixed tap
order, made of element-wise IEEE multiplications and additions only. Every output
value is therefore computed by the same rounding sequence whatever the thread count,
batch composition or chunking, and vectors are bit-identical across runs and processes.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import Embedder, FeatureMap, ModelDescription
from rsembed_db.models.s2_stats import S2_STATS, SOURCE
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.validate import require_choice, require_number, require_positive

DEFAULT_BANDS = ("B02", "B03", "B04", "B08")  # blue, green, red, NIR
# ReLU threshold. The input is standardised with global (between-scene) statistics, so
# within one scene responses of unit-norm filters are small and scene-dependent: the
# per-filter std of z is 0.05-0.3 on the bundled Havelland scene and 0.14-0.54 (median)
# on BigEarthNet patches. A threshold of 1 leaves 67 of 128 filters silent on Havelland;
# 0 is scale-free, keeps every feature informative (their sum is |z|, their difference z).
DEFAULT_BIAS = 0.0
# Part of every resolved config (and so of storage keys): bump it whenever the filter
# draw or the feature computation changes, so old rows are never mistaken for new ones.
METHOD = "gaussian-rcf/1"
REFLECTANCE_SCALE = 1e-4  # Sentinel-2 digital numbers are reflectance x 10000
_MAX_BUFFER = 1 << 20  # float64 elements per response buffer (8 MiB: stays in cache)
MAX_FILTERS = 4096  # 8192-d vectors; more only costs memory and time per pixel
MAX_KERNEL = 15  # pixels


def draw_filters(num_filters: int, channels: int, kernel_size: int, seed: int) -> np.ndarray:
    """(F, C, k, k) float64 Gaussian filters, each zero-mean with unit L2 norm.

    Drawn from numpy's PCG64 generator; the centring and norm use ``math.fsum`` (exactly
    rounded), so the filters do not depend on numpy's summation order.
    """
    raw = np.random.default_rng(seed).standard_normal((num_filters, channels * kernel_size**2))
    out = np.empty_like(raw)
    for f, row in enumerate(raw.tolist()):
        mean = math.fsum(row) / len(row)
        centred = [v - mean for v in row]
        norm = math.sqrt(math.fsum(v * v for v in centred))
        out[f] = [v / norm for v in centred]
    return out.reshape(num_filters, channels, kernel_size, kernel_size)


def _reflect_pad(array: np.ndarray, pad: int) -> np.ndarray:
    """Reflect-pad the last two axes (numpy repeats the reflection for tiny chips)."""
    widths = [(0, 0)] * (array.ndim - 2) + [(pad, pad), (pad, pad)]
    return np.pad(array, widths, mode="reflect")


def _correlate(padded: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, F, H, W) float64 'valid' cross-correlation of (B, C, H+k-1, W+k-1) with (F, C, k, k).

    Shift-and-add with separate multiply and add kernels (never fused), so each output
    is the same sequence of correctly rounded operations on any thread count.
    """
    b, channels, hp, wp = padded.shape
    f, _, k, _ = weights.shape
    h, w = hp - k + 1, wp - k + 1
    z = torch.zeros((b, f, h, w), dtype=torch.float64)
    term = torch.empty_like(z)
    for c in range(channels):
        for i in range(k):
            for j in range(k):
                shifted = padded[:, c : c + 1, i : i + h, j : j + w]
                torch.mul(shifted, weights[:, c, i, j].view(1, f, 1, 1), out=term)
                z.add_(term)
    return z


def _neighbourhood_valid(valid: np.ndarray, kernel_size: int) -> np.ndarray:
    """(B, H, W): True where every pixel of the (reflect-padded) k x k window is valid."""
    pad = kernel_size // 2
    padded = _reflect_pad(valid, pad)
    h, w = valid.shape[-2:]
    out = np.ones_like(valid)
    for i in range(kernel_size):
        for j in range(kernel_size):
            out &= padded[..., i : i + h, j : j + w]
    return out


class MosaiksEmbedder(Embedder):
    """MOSAIKS features on Sentinel-2 bands; D = 2 * num_filters, pixel resolution.

    Config: ``bands`` (Sentinel-2 band names), ``num_filters``, ``kernel_size`` (odd),
    ``seed``, ``bias`` (ReLU threshold, >= 0), ``scale_m`` and ``stats`` (``"s2_l1c"``
    or ``"s2_l2a"``: which published band statistics standardise the input).
    """

    name = "mosaiks"

    def __init__(self, **config: Any) -> None:
        super().__init__(**_resolve_config(config))
        table = S2_STATS[self.config["stats"]]
        self._mean = np.array([table[b].mean * REFLECTANCE_SCALE for b in self.bands])
        self._std = np.array([table[b].std * REFLECTANCE_SCALE for b in self.bands])

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.config["bands"])

    @cached_property
    def _filters(self) -> np.ndarray:
        """Drawn on first use: describing or keying a model never pays for it."""
        return draw_filters(self.config["num_filters"], len(self.bands), self.config["kernel_size"], self.config["seed"])

    @property
    def filters(self) -> np.ndarray:
        """(F, C, k, k) float64 filters (a copy)."""
        return self._filters.copy()

    def describe(self) -> ModelDescription:
        cfg = self.config
        return ModelDescription(
            name=self.name,
            dim=2 * cfg["num_filters"],
            kind="on_the_fly",
            bands=self.bands,
            scale_m=cfg["scale_m"],
            image_size=None,
            patch_size=1,
            normalisation={"mean": self._mean.tolist(), "std": self._std.tolist(),
                           "scale": REFLECTANCE_SCALE, "stats": cfg["stats"], "source": SOURCE,
                           "formula": "(DN * scale - mean) / std; invalid pixels -> 0"},
            weights=f"none (seeded random filters, seed={cfg['seed']})",
            licence="MIT (method: Rolf et al. 2021)",
            summary=(f"MOSAIKS random convolutional features: {cfg['num_filters']} Gaussian "
                     f"{cfg['kernel_size']}x{cfg['kernel_size']} filters, relu(+-z - {cfg['bias']}), "
                     "per-pixel features pooled over the ROI"),
            config=dict(cfg),
        )

    def default_sensor(self) -> SensorSpec:
        return SensorSpec(collection="local", bands=self.bands, scale_m=self.config["scale_m"],
                          composite="median")

    def embed(self, chips: list[Chip]) -> list[FeatureMap]:
        """One pixel-resolution feature map per chip; chips of equal shape share one pass."""
        groups: dict[tuple[int, int], list[int]] = {}
        for index, chip in enumerate(chips):
            groups.setdefault(chip.data.shape[-2:], []).append(index)
        maps: dict[int, FeatureMap] = {}
        for indices in groups.values():
            inputs = [self.normalised(chips[i]) for i in indices]
            x = np.stack([data for data, _ in inputs])
            valid = _neighbourhood_valid(np.stack([v for _, v in inputs]), self.config["kernel_size"])
            features = self._features(x)
            features *= valid[:, None]  # invalid pixels hold 0
            for n, i in enumerate(indices):
                grid = chips[i].grid
                maps[i] = FeatureMap(features[n], valid[n], grid.transform, grid.crs)
        return [maps[i] for i in range(len(chips))]

    def normalised(self, chip: Chip) -> tuple[np.ndarray, np.ndarray]:
        """(C, H, W) float64 standardised bands and the (H, W) valid mask; invalid pixels -> 0."""
        shape = (chip.grid.height, chip.grid.width)
        if chip.data.shape[-2:] != shape or chip.valid.shape != shape:
            raise ValueError(f"chip data {chip.data.shape} / valid {chip.valid.shape} "
                             f"do not match its grid {shape}")
        missing = [b for b in self.bands if b not in chip.bands]
        if missing:
            raise SpecError("bands", f"chip lacks bands {missing}; it has {list(chip.bands)}")
        data = chip.data[[chip.bands.index(b) for b in self.bands]].astype(np.float64)
        valid = chip.valid.astype(bool) & np.isfinite(data).all(axis=0)
        x = (data * REFLECTANCE_SCALE - self._mean[:, None, None]) / self._std[:, None, None]
        x[:, ~valid] = 0.0
        return x, valid

    def _features(self, x: np.ndarray) -> np.ndarray:
        """(B, 2F, H, W) float32 features of a standardised (B, C, H, W) batch."""
        k, bias, f_total = self.config["kernel_size"], self.config["bias"], self.config["num_filters"]
        b, _, h, w = x.shape
        step = max(1, _MAX_BUFFER // (b * h * w))
        weights = torch.from_numpy(self._filters)
        features = torch.empty((b, 2 * f_total, h, w), dtype=torch.float32)
        with torch.inference_mode():
            padded = torch.from_numpy(_reflect_pad(x, k // 2))
            for f0 in range(0, f_total, step):
                f1 = min(f0 + step, f_total)
                z = _correlate(padded, weights[f0:f1])
                features[:, f0:f1] = torch.relu(z - bias)
                features[:, f_total + f0 : f_total + f1] = torch.relu(-z - bias)
        return features.numpy()


_OPTIONS = ("bands", "num_filters", "kernel_size", "seed", "bias", "scale_m", "stats", "method")


def _require_int(field: str, value: object, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
        raise SpecError(field, f"must be an integer within {minimum}..{maximum}, got {value!r}")
    return int(value)


def _resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validated, JSON-serialisable config with every default filled in."""
    for key in config:
        require_choice("model_config", key, _OPTIONS)
    require_choice("method", config.get("method", METHOD), (METHOD,))
    stats = config.get("stats", "s2_l1c")
    require_choice("stats", stats, tuple(S2_STATS))
    bands = config.get("bands", DEFAULT_BANDS)
    if isinstance(bands, str) or not isinstance(bands, (list, tuple)) or not bands \
            or not all(isinstance(b, str) for b in bands):
        raise SpecError("bands", f"must be a non-empty list of band names, got {bands!r}")
    unknown = [b for b in bands if b not in S2_STATS[stats]]
    if unknown:
        raise SpecError("bands", f"no {stats} statistics for {unknown}", tuple(S2_STATS[stats]))
    if len(set(bands)) != len(bands):
        raise SpecError("bands", f"must not repeat a band, got {list(bands)}")
    num_filters = _require_int("num_filters", config.get("num_filters", 128), 1, MAX_FILTERS)
    kernel_size = _require_int("kernel_size", config.get("kernel_size", 3), 1, MAX_KERNEL)
    if kernel_size % 2 == 0:
        raise SpecError("kernel_size", f"must be odd, got {kernel_size}")
    if len(bands) * kernel_size**2 < 2:
        raise SpecError("kernel_size", "a zero-mean filter needs >= 2 weights: "
                        "use a larger kernel or more bands")
    seed = _require_int("seed", config.get("seed", 0), 0, 2**63 - 1)
    bias = require_number("bias", config.get("bias", DEFAULT_BIAS))
    if bias < 0:
        raise SpecError("bias", f"must be >= 0, got {bias!r}")
    scale_m = require_positive("scale_m", config.get("scale_m", 10.0))
    return {"bands": list(bands), "num_filters": num_filters, "kernel_size": kernel_size,
            "seed": seed, "bias": bias, "scale_m": scale_m, "stats": stats, "method": METHOD}
