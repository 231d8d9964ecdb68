"""The model zoo's shared machinery: configuration, lazy loading, batched inference.

Each zoo model (remoteclip, prithvi, satmae, scalemae, dofa, clay) subclasses
``ZooEmbedder``. The architecture packages (timm, open_clip, torchgeo, terratorch: the
``zoo`` extra) are imported only when a model is first run, so ``list_models`` and
``describe_model`` work without them; running a model without them raises SpecError.

Inference: every chip is prepared by ``run_with_input_prep`` (resize or tiles). The
model inputs of all chips are first collected, then run together in batches of
``batch_size`` under ``torch.inference_mode`` (on CUDA when present, with optional
bf16/fp16 autocast), and finally handed back to the same preparation to be stitched
into each chip's feature map.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from abc import abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import Embedder, FeatureMap, InputPrep, ModelDescription
from rsembed_db.models.input_prep import run_with_input_prep
from rsembed_db.models.weights import ResolvedWeights, WeightSource, load_state_dict, resolve_weights
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.validate import require_choice

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RUNTIME_OPTIONS = ("device", "batch_size", "weights_dir", "cache_dir")  # never change values
COMMON_OPTIONS = ("precision", "revision")
DEFAULT_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
RGB = ("B04", "B03", "B02")  # Sentinel-2 red, green, blue
CUDNN_ENV = "TORCH_CUDNN_V8_API_DISABLED"


def require_zoo(model: str, modules: Sequence[str]) -> None:
    """SpecError unless the architecture packages ``model`` needs are installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SpecError("model", f"{model!r} needs the zoo extra (missing {', '.join(missing)}): "
                        "pip install 'rsembed-db[zoo]'")


def import_keeping_torch_settings(module: str) -> ModuleType:
    """``importlib.import_module(module)``, undoing the process-wide settings terratorch
    changes on import (its Clay module sets ``torch.set_float32_matmul_precision("medium")``,
    which lowers the precision of every later float32 matmul, CPU included, and sets
    ``TORCH_CUDNN_V8_API_DISABLED``)."""
    precision, cudnn = torch.get_float32_matmul_precision(), os.environ.get(CUDNN_ENV)
    try:
        return importlib.import_module(module)
    finally:
        torch.set_float32_matmul_precision(precision)
        if cudnn is None:
            os.environ.pop(CUDNN_ENV, None)
        else:
            os.environ[CUDNN_ENV] = cudnn


def require_int(field: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f"within {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(field, f"must be an integer {bound}, got {value!r}")
    return int(value)


def require_flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SpecError(field, f"must be true or false, got {value!r}")
    return value


def require_bands(value: object, allowed: Sequence[str]) -> list[str]:
    """Canonical band names (``sources.bands``), each in ``allowed``, none repeated."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value \
            or not all(isinstance(b, str) for b in value):
        raise SpecError("bands", f"must be a non-empty list of band names, got {value!r}")
    bands = [normalise_band(b) for b in value]
    unknown = [b for b in bands if b not in allowed]
    if unknown:
        raise SpecError("bands", f"unsupported bands {unknown}", allowed)
    if len(set(bands)) != len(bands):
        raise SpecError("bands", f"must not repeat a band, got {bands}")
    return bands


@dataclass(frozen=True)
class ModelInput:
    """A chip ready for input preparation: (C, H, W) float32, normalised, invalid pixels 0."""

    data: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    batch_size: int
    weights_dir: str | None
    cache_dir: str | None


def _runtime(options: dict[str, Any]) -> Runtime:
    device = options.get("device", "auto")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise SpecError("device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:<n>', got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in ("weights_dir", "cache_dir"):
        if options.get(name) is not None and not isinstance(options[name], str):
            raise SpecError(name, f"must be a folder path, got {options[name]!r}")
    return Runtime(torch.device(device), require_int("batch_size", options.get("batch_size", 16), 1),
                   options.get("weights_dir"), options.get("cache_dir"))


class ZooEmbedder(Embedder):
    """A pretrained ViT from the zoo: chips in, patch-token grids (D, h, w) out.

    Config common to all zoo models: ``precision`` (``fp32``, ``bf16``, ``fp16``: autocast
    on CUDA; CPU always computes in fp32) and ``revision`` (of the Hugging Face weights).
    Run-time options, not part of the storage key: ``device`` (``auto``), ``batch_size``
    (16), ``weights_dir`` and ``cache_dir`` (see ``models.weights``).

    Subclasses name their architecture table in ``variants`` (the module's ``VARIANTS``
    dict itself, so edits to it take effect; entries have ``dim`` and ``patch_size``) and
    the ``variant`` config default in ``default_variant``. A model with several input
    branches lists them in ``modalities`` (first: the default) and takes a ``modality``
    config key, which the request-level ``modality`` sets (``for_modality``).
    """

    runtime_options = RUNTIME_OPTIONS

    requires: ClassVar[tuple[str, ...]] = ()
    token_semantics: ClassVar[str] = "patch tokens of the last layer, CLS dropped"
    options: ClassVar[tuple[str, ...]] = ()  # model-specific config keys, ``variant`` included
    variants: ClassVar[Mapping[str, Any]]
    default_variant: ClassVar[str]
    image_size: ClassVar[int]  # side of the square model input (pixels)
    input_bands: ClassVar[tuple[str, ...] | None] = None  # None: the ``bands`` config key chooses
    scale_m: ClassVar[float] = 10.0  # native ground sampling of the input bands (metres)
    weights_source: ClassVar[WeightSource]  # the checkpoint, unless published_weights picks one per variant
    modalities: ClassVar[tuple[str, ...]] = ("optical",)
    citation: ClassVar[str] = ""  # the paper: authors, title, venue, year

    def __init__(self, **config: Any) -> None:
        self._given = dict(config)  # as the caller passed it (for_modality rebuilds from it)
        for key in config:
            require_choice("model_config", key, (*self.options, *COMMON_OPTIONS, *RUNTIME_OPTIONS))
        self.runtime = _runtime({k: config.pop(k) for k in RUNTIME_OPTIONS if k in config})
        common = {"precision": config.pop("precision", "fp32"), "revision": config.pop("revision", None)}
        require_choice("precision", common["precision"], tuple(PRECISIONS))
        variant = config.pop("variant", self.default_variant)
        require_choice("variant", variant, tuple(self.variants))
        self.config = {"variant": variant}  # resolve_config may read ``self.variant``
        super().__init__(variant=variant, **self.resolve_config(config))
        self.config["precision"] = common["precision"]
        revision = common["revision"] or self.published_weights().revision
        if not isinstance(revision, str) or not revision:
            raise SpecError("revision", f"must be a commit hash or branch name, got {revision!r}")
        self.config["revision"] = revision
        self._model: torch.nn.Module | None = None
        self._weights: ResolvedWeights | None = None
        self._load_lock = threading.Lock()

    # -- what subclasses provide ------------------------------------------------------
    @abstractmethod
    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Validated model-specific config but ``variant``, with every default filled in."""

    @abstractmethod
    def build(self) -> torch.nn.Module:
        """The randomly initialised architecture (imports the zoo packages)."""

    @abstractmethod
    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        """Load a checkpoint's tensors into ``module`` (``weights.load_weights``)."""

    @abstractmethod
    def model_input(self, chip: Chip) -> ModelInput:
        """Select and normalise the chip's bands."""

    def normalised(self, chip: Chip) -> tuple[np.ndarray, np.ndarray]:
        prepared = self.model_input(chip)
        return prepared.data, prepared.valid

    @abstractmethod
    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        """(B, D, h, w) patch features of a (B, C, S, S) batch; ``sides`` per sample."""

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        """Per-chip conditioning (time, location, resolution); ``prep`` from input prep."""
        return {}

    def group_key(self, side: dict[str, Any]) -> Hashable:
        """Samples with different keys never share a batch (e.g. a per-batch GSD)."""
        return None

    # -- shared behaviour ---------------------------------------------------------------
    @property
    def variant(self) -> Any:
        """The ``variants`` entry of the configured variant."""
        return self.variants[self.config["variant"]]

    @property
    def patch_size(self) -> int:
        return self.variant.patch_size

    @property
    def bands(self) -> tuple[str, ...]:
        """The model's input bands, in order."""
        return self.input_bands if self.input_bands is not None else tuple(self.config["bands"])

    def published_weights(self) -> WeightSource:
        """The checkpoint of the configured variant, at its published revision."""
        return self.weights_source

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def weights(self) -> WeightSource:
        return replace(self.published_weights(), revision=self.config["revision"])

    def default_sensor(self) -> SensorSpec:
        return SensorSpec(collection=DEFAULT_COLLECTION, bands=self.bands, scale_m=self.scale_m, composite="median")

    def for_modality(self, modality: str | None) -> Embedder:
        """This model configured for ``modality`` (None: as configured); SpecError when
        ``model_config`` already names another modality."""
        if modality is None or "modality" not in self.options or modality == self.config.get("modality"):
            return self
        given = self._given.get("modality")
        if given is not None:
            raise SpecError("modality", f"{modality!r} conflicts with model_config modality {given!r}",
                            self.modalities)
        return type(self)(**{**self._given, "modality": modality})

    def check_sensor(self, sensor: SensorSpec) -> None:
        """SpecError unless ``sensor`` fetches every band the model takes."""
        have = {normalise_band(b) for b in sensor.bands}
        missing = [b for b in self.bands if b not in have]
        if missing:
            modality = f" (modality {self.config['modality']!r})" if "modality" in self.config else ""
            raise SpecError("sensor.bands", f"model {self.name!r}{modality} takes {len(self.bands)} bands "
                            f"{list(self.bands)}; the sensor lacks {missing}", self.bands)

    def description(self, normalisation: dict[str, Any], summary: str, **fields: Any) -> ModelDescription:
        """The ``ModelDescription`` of the configured model; ``fields`` adds others (``frames``).

        ``patch_size`` is ``self.patch_size`` (the variant's unless configured), even where
        the output grid is coarser. The summary gains the output grid and the default sensor.
        """
        sensor = self.default_sensor()
        fields = {"modalities": self.modalities, "citation": self.citation, "default_sensor": sensor.to_dict(),
                  **fields}
        h, w = self.grid
        summary = (f"{summary}. Grid {h} x {w} per {self.image_size} px model input; default sensor "
                   f"{sensor.collection} at {sensor.scale_m:g} m ({sensor.composite})")
        return ModelDescription(
            name=self.name, dim=self.variant.dim, kind="on_the_fly", bands=self.bands, scale_m=self.scale_m,
            image_size=self.image_size, patch_size=self.patch_size, normalisation=normalisation,
            weights=self.weights.describe(), licence=self.weights.licence, summary=summary,
            config=dict(self.config), **fields)

    def checkpoint(self) -> tuple[ResolvedWeights, dict[str, torch.Tensor]]:
        """The local checkpoint file and its tensors (``models.weights``); read before ``build``.

        Models whose published file wraps its tensors differently, or comes with a
        config file the architecture is built from, override this.
        """
        resolved = resolve_weights(self.name, self.weights, self.runtime.weights_dir, self.runtime.cache_dir)
        return resolved, load_state_dict(resolved.path, allow_pickle=resolved.origin == "huggingface")

    def model(self) -> torch.nn.Module:
        """The model with its pretrained weights, on the device, in eval mode (loaded once)."""
        with self._load_lock:
            if self._model is None:
                require_zoo(self.name, self.requires)
                resolved, state = self.checkpoint()
                module = self.build()
                self.load(module, state, resolved.path)
                self._model, self._weights = module.to(self.runtime.device).eval(), resolved
            return self._model

    def embed(self, chips: list[Chip]) -> list[FeatureMap]:
        return self.embed_prepared(chips, [InputPrep() for _ in chips])

    def embed_prepared(self, chips: list[Chip], preps: list[InputPrep]) -> list[FeatureMap]:
        """One feature map per chip; the model inputs of all chips run in shared batches."""
        if not chips:
            return []
        model = self.model()
        inputs = [self.model_input(chip) for chip in chips]
        recorded: list[list[np.ndarray]] = []
        sides: list[dict[str, Any]] = []
        for chip, data, prep in zip(chips, inputs, preps):
            batches: list[np.ndarray] = []
            planned = self._prepare(chip, data, prep, self._recorder(batches))
            recorded.append(batches)
            sides.append(self.side_inputs(chip, planned.meta["input_prep"]))
        samples = [(sample, side) for batches, side in zip(recorded, sides) for b in batches for sample in b]
        outputs = self._infer(model, samples)
        maps, cursor = [], 0
        for chip, data, prep, batches in zip(chips, inputs, preps, recorded):
            fmap = self._prepare(chip, data, prep, self._replayer(outputs, cursor))
            cursor += sum(len(b) for b in batches)
            fmap.meta.update(self._meta())
            maps.append(fmap)
        return maps

    def _prepare(self, chip: Chip, data: ModelInput, prep: InputPrep, forward: Any) -> FeatureMap:
        return run_with_input_prep(data.data, data.valid, chip.grid.transform, chip.grid.crs, prep.spec,
                                   self.image_size, forward, prep.grid_output)

    def _recorder(self, batches: list[np.ndarray]) -> Any:
        def record(batch: np.ndarray) -> np.ndarray:
            batches.append(batch)
            return np.zeros((len(batch), self.dim, *self.grid), dtype=np.float32)
        return record

    @staticmethod
    def _replayer(outputs: np.ndarray, start: int) -> Any:
        position = [start]

        def replay(batch: np.ndarray) -> np.ndarray:
            begin = position[0]
            position[0] += len(batch)
            return outputs[begin:position[0]]
        return replay

    def _infer(self, model: torch.nn.Module, samples: list[tuple[np.ndarray, dict[str, Any]]]) -> np.ndarray:
        """(N, D, h, w) float32 outputs for N samples, batched by ``group_key``."""
        out = np.empty((len(samples), self.dim, *self.grid), dtype=np.float32)
        groups: dict[Hashable, list[int]] = {}
        for index, (_, side) in enumerate(samples):
            groups.setdefault(self.group_key(side), []).append(index)
        device = self.runtime.device
        dtype = PRECISIONS[self.config["precision"]] if device.type == "cuda" else None
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
        with torch.inference_mode(), autocast:
            for indices in groups.values():
                for start in range(0, len(indices), self.runtime.batch_size):
                    chunk = indices[start:start + self.runtime.batch_size]
                    x = torch.from_numpy(np.stack([samples[i][0] for i in chunk])).to(device)
                    y = self.forward(model, x, [samples[i][1] for i in chunk])
                    out[chunk] = y.float().cpu().numpy()
        return out

    def _meta(self) -> dict[str, Any]:
        device = self.runtime.device
        return {"tokens": self.token_semantics, "device": str(device),
                "precision": self.config["precision"] if device.type == "cuda" else "fp32",
                **(self._weights.to_meta() if self._weights else {})}

    def select_bands(self, chip: Chip) -> tuple[np.ndarray, np.ndarray]:
        """(C, ...) float32 chip data in the model's band order and the (H, W) valid mask."""
        have = [normalise_band(b) for b in chip.bands]
        missing = [b for b in self.bands if b not in have]
        if missing:
            raise SpecError("bands", f"model {self.name!r} needs bands {missing}; the chip has {list(chip.bands)}")
        index = [have.index(b) for b in self.bands]
        data = np.asarray(chip.data, dtype=np.float32)[..., index, :, :]
        channel_axis = data.ndim - 3
        valid = np.asarray(chip.valid, dtype=bool) & np.isfinite(data).all(axis=channel_axis)
        while valid.ndim > 2:  # multi-frame: valid in every frame
            valid = np.asarray(valid.all(axis=0))
        return data, valid


def standardised(data: np.ndarray, valid: np.ndarray, mean: Sequence[float] | np.ndarray,
                 std: Sequence[float] | np.ndarray, scale: float = 1.0,
                 clip: tuple[float, float] | None = None) -> ModelInput:
    """``((data * scale) clipped - mean) / std`` per band; frames (T, C, H, W) become T*C
    channels; invalid pixels become 0 (the mean)."""
    x = data * np.float32(scale)
    if clip is not None:
        x = np.clip(x, *clip)
    shape = (-1, 1, 1)
    x = (x - np.asarray(mean, np.float32).reshape(shape)) / np.asarray(std, np.float32).reshape(shape)
    x = x.reshape(-1, *x.shape[-2:]).astype(np.float32)
    x[:, ~valid] = 0.0
    return ModelInput(x, valid)


def rgb_max(value: object) -> float:
    """The digital number shown as full brightness (Sentinel-2 L2A: 10000 = reflectance 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpecError("rgb_max", f"must be a number > 0, got {value!r}")
    return float(value)


def rgb_normalisation(maximum: float, mean: Sequence[float], std: Sequence[float], source: str) -> dict[str, Any]:
    """The described normalisation of RGB scaled to [0, 1] by ``maximum`` (``rgb_max``), then standardised."""
    return {"scale": f"clip(DN / {maximum:g}, 0, 1)", "mean": list(mean), "std": list(std),
            "formula": "(clip(DN / rgb_max, 0, 1) - mean) / std", "source": source}
