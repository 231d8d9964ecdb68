"""EmbeddingRequest: one fully resolved request and its storage key."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rsembed_db.specs.canonical import canonical_json, sha256_key
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec


@dataclass(frozen=True)
class EmbeddingRequest:
    """Everything that determines an embedding's values.

    The key hashes model + config, the normalised window, the spatial spec, the pooling,
    the resolved sensor and the input prep. Whether a grid is *kept* is not part of the
    key: one row per place holds the pooled vector and, when asked for, its grid, so a
    similarity search never sees the same place twice.
    """

    model: str
    spatial: SpatialSpec
    temporal: TemporalSpec
    output: OutputSpec = OutputSpec()
    sensor: SensorSpec | None = None
    input_prep: InputPrepSpec = InputPrepSpec()
    model_config: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_config": self.model_config,
            "spatial": self.spatial.to_dict(),
            "temporal": self.temporal.to_dict(),
            "pooling": self.output.pooling,
            "sensor": self.sensor.to_dict() if self.sensor is not None else None,
            "input_prep": self.input_prep.to_dict(),
        }

    @cached_property
    def key(self) -> str:
        return sha256_key(self.canonical())

    def canonical_json(self) -> str:
        return canonical_json(self.canonical())
