"""The embedder interface and the feature maps embedders return."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from affine import Affine

from rsembed_db.sources.base import Chip
from rsembed_db.specs.output import InputPrepSpec
from rsembed_db.specs.sensor import SensorSpec


@dataclass(frozen=True)
class ModelDescription:
    """What ``describe_model`` reports."""

    name: str
    dim: int
    kind: str  # "on_the_fly" or "precomputed"
    bands: tuple[str, ...]
    scale_m: float
    image_size: int | None = None
    patch_size: int | None = None
    normalisation: dict[str, Any] = field(default_factory=dict)
    weights: str = ""
    licence: str = ""
    summary: str = ""
    citation: str = ""  # the paper to cite: authors, title, venue, year
    modalities: tuple[str, ...] = ("optical",)
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # precomputed products: where the published embeddings come from
    years: tuple[int, ...] = ()  # precomputed products: the years published
    frames: int = 1  # on-the-fly models: time steps per input (multi-temporal models > 1)
    tiled_grid_seams: bool = False  # image-level ViT token grids: tiling stitches independent grids

    def __getitem__(self, key: str) -> Any:
        """The reference's ``describe_model(m)[key]`` view (``"type"``, ``"output"``,
        ``"defaults"``, ``"inputs"``, ``"temporal"``, ``"modalities"``, ``"model_config"``...),
        plus every field of ``to_dict``."""
        precomputed = self.kind == "precomputed"
        view = {
            **self.to_dict(),
            "type": self.kind,
            "backend": ["auto"] if precomputed else ["auto", "gee"],
            "inputs": {"bands": list(self.bands)},
            "temporal": {"mode": "year" if precomputed else "range"},
            "output": ["pooled", "grid"],
            "defaults": {"scale_m": self.scale_m, "image_size": self.image_size, "patch_size": self.patch_size},
            "model_config": dict(self.config),
        }
        return view[key]
    default_sensor: dict[str, Any] = field(default_factory=dict)  # on-the-fly models: SensorSpec.to_dict()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bands"] = list(self.bands)
        out["modalities"] = list(self.modalities)
        out["years"] = list(self.years)
        return out


@dataclass(frozen=True)
class TileFeatures:
    """One tile of a tiled model run: its own patch features (D, h, w) and validity,
    georeferenced on the tile, and the pixel rectangle ``(y0, y1, x0, x1)`` of the chip it
    owns (midpoint cuts), which weights its pooled vector."""

    values: np.ndarray
    valid: np.ndarray
    transform: Affine
    owned: tuple[int, int, int, int]


@dataclass
class FeatureMap:
    """Per-location features (D, h, w) on a north-up grid in the chip's CRS.

    ``valid`` marks cells computed from real imagery; pooling ignores the rest. A tiled
    model run also keeps its ``tiles``: pooling then combines per-tile vectors weighted
    by owned area (``models.input_prep``), the grid is only the stitched view.
    """

    values: np.ndarray
    valid: np.ndarray
    transform: Affine
    crs: str
    meta: dict[str, Any] = field(default_factory=dict)
    tiles: list[TileFeatures] | None = None


@dataclass(frozen=True)
class InputPrep:
    """What a request asks of input preparation: the spec, and whether a grid is kept."""

    spec: InputPrepSpec = InputPrepSpec()
    grid_output: bool = False


class Embedder(ABC):
    """An on-the-fly model: imagery chips in, feature maps out.

    Subclasses set ``name`` and take their configuration as keyword arguments;
    ``config`` must hold every value that changes the output (it is part of the key).
    """

    name: ClassVar[str]
    runtime_options: ClassVar[tuple[str, ...]] = ()  # config keys that never change values (device...)

    def __init__(self, **config: Any) -> None:
        self.config = config

    @property
    def dim(self) -> int:
        return self.describe().dim

    @abstractmethod
    def describe(self) -> ModelDescription:
        ...

    @abstractmethod
    def default_sensor(self) -> SensorSpec:
        ...

    def normalised(self, chip: Chip) -> tuple[np.ndarray, np.ndarray]:
        """What the model's network receives for ``chip``: values ((C, H, W), or (T, C, H, W)
        for multi-frame models) and the (H, W) valid mask. Models that select or normalise
        bands override this; ``inspect_model_input`` reports it."""
        return chip.data, chip.valid

    def for_modality(self, modality: str | None) -> "Embedder":
        """The embedder for the request-level ``modality`` (one of ``describe().modalities``).

        Single-modality models return themselves; models whose input branch is chosen by
        modality (TerraFM: ``s2``/``s1``) return an instance configured for it, so that
        the modality is part of ``config`` and of every key.
        """
        return self

    def check_sensor(self, sensor: SensorSpec) -> None:
        """SpecError when ``sensor`` cannot feed this model (checked per request); default: accept."""

    @abstractmethod
    def embed(self, chips: list[Chip]) -> list[FeatureMap]:
        """Embed a batch of chips; one feature map per chip, same order."""
        ...

    def embed_prepared(self, chips: list[Chip], preps: list[InputPrep]) -> list[FeatureMap]:
        """Embed chips with their requests' input preparation; what producers call.

        Fixed-size models override this and run each chip through
        ``models.input_prep.run_with_input_prep``; the default ignores ``preps``
        (pixel-resolution models such as MOSAIKS need no resize or tiling).
        """
        return self.embed(chips)
