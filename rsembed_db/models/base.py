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
    default_sensor: dict[str, Any] = field(default_factory=dict)  # on-the-fly models: SensorSpec.to_dict()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bands"] = list(self.bands)
        out["modalities"] = list(self.modalities)
        out["years"] = list(self.years)
        return out


@dataclass
class FeatureMap:
    """Per-location features (D, h, w) on a north-up grid in the chip's CRS.

    ``valid`` marks cells computed from real imagery; pooling ignores the rest.
    """

    values: np.ndarray
    valid: np.ndarray
    transform: Affine
    crs: str
    meta: dict[str, Any] = field(default_factory=dict)


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
