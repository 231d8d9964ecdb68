"""EmbeddingRequest: one fully resolved request and its storage key."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rsembed_db.errors import SpecError
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

    def require_sensor(self) -> SensorSpec:
        """The resolved sensor of a request for imagery (an on-the-fly model or a bare sensor)."""
        if self.sensor is None:
            raise SpecError("sensor", f"a request for {self.model!r} imagery needs a sensor")
        return self.sensor

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


_SPATIAL_SLOT = "\x00spatial\x00"


def with_spatials(template: EmbeddingRequest, spatials: Sequence[SpatialSpec]) -> list[EmbeddingRequest]:
    """``template`` once per spatial spec, keys precomputed.

    The canonical JSON of every request is the template's with only the ``spatial``
    member changed, so it is built once and each key hashes prefix + spatial + suffix:
    the same key as ``request.key``, at a fraction of the cost for large plans.
    """
    prefix, suffix = canonical_json({**template.canonical(), "spatial": _SPATIAL_SLOT}).split(
        canonical_json(_SPATIAL_SLOT))
    fields = {name: value for name, value in template.__dict__.items() if name != "key"}
    out = []
    for spatial in spatials:
        # A copy of the (already validated) template; the key fills the cached_property slot.
        request = object.__new__(EmbeddingRequest)
        text = prefix + canonical_json(spatial.to_dict()) + suffix
        request.__dict__.update(fields, spatial=spatial, key=hashlib.sha256(text.encode()).hexdigest())
        out.append(request)
    return out
