"""The producer of an on-the-fly model: imagery from a source, run through an embedder."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.models.base import Embedder, InputPrep
from rsembed_db.models.input_prep import resolved_mode
from rsembed_db.models.pooling import pool, to_dataarray
from rsembed_db.producers.base import Prepared, Producer
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.sources.base import Chip, ImagerySource
from rsembed_db.sources.quality import check_input
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.sensor import SensorSpec, resolve_sensor
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.tiling.chip_grid import chip_grid_for
from rsembed_db.tiling.plan import tile_id


class OnTheFlyProducer(Producer):
    """Imagery from a source, embedded by an on-the-fly model."""

    def __init__(self, embedder: Embedder, source: ImagerySource) -> None:
        self.embedder = embedder
        self.source = source
        self.description = embedder.describe()
        self._branches: dict[str, OnTheFlyProducer] = {}  # per modality asked for (for_request)
        self._lock = threading.Lock()

    @property
    def default_dim(self) -> int:
        return type(self.embedder)().dim

    def for_request(self, modality: str | None = None, sensor: SensorSpec | None = None) -> Producer:
        """Itself, or for a model with several input branches the producer of the branch that
        ``modality`` (else ``sensor.modality``, when it names one) selects: the same source,
        an embedder configured for it, its own table when its width differs."""
        self.check_modality(modality)
        named = sensor.modality if sensor is not None else None
        if modality is not None and named is not None and named != modality:
            raise SpecError("modality", f"{modality!r} conflicts with sensor.modality {named!r}",
                            self.description.modalities)
        if modality is None and named in self.description.modalities:
            modality = named
        embedder = self.embedder.for_modality(modality)
        if embedder is self.embedder:
            return self
        with self._lock:
            return self._branches.setdefault(canonical_json(embedder.config), OnTheFlyProducer(embedder, self.source))

    def request(self, spatial, temporal, output=OutputSpec(), sensor=None, fetch=None,
                input_prep=None, modality=None):
        if self.for_request(modality, sensor) is not self:
            configured = self.embedder.config.get("modality")
            raise SpecError("modality", f"this {self.model!r} producer runs modality {configured!r}; take the "
                            f"producer for {modality or sensor.modality!r} from for_request()",
                            self.description.modalities)
        sensor = resolve_sensor(self.embedder.default_sensor(), sensor, fetch)
        self.embedder.check_sensor(sensor)
        return EmbeddingRequest(
            model=self.model,
            spatial=spatial,
            temporal=temporal,
            output=output,
            sensor=sensor,
            input_prep=self._resolved_prep(InputPrepSpec.parse(input_prep), spatial, sensor, output),
            model_config=self.embedder.config,
        )

    def _resolved_prep(self, prep: InputPrepSpec, spatial: SpatialSpec, sensor: SensorSpec,
                       output: OutputSpec) -> InputPrepSpec:
        """``auto`` resolved to what it will do, so that the key names one computation
        (auto depends on the output mode, which the key leaves out)."""
        size = self.description.image_size
        if prep.mode != "auto" or size is None:
            return prep
        grid = chip_grid_for(spatial, sensor.scale_m)
        return replace(prep, mode=resolved_mode(prep, grid.height, grid.width, size, output.mode == "grid"))

    def prepare(self, request: EmbeddingRequest) -> Prepared:
        grid = chip_grid_for(request.spatial, request.sensor.scale_m)
        chip = self.source.fetch(grid, request.temporal, request.sensor)
        if request.sensor.check_input:
            check_input(chip, request.sensor, tile_id(request.spatial), self.model)
        return Prepared(request, chip)

    def finish(self, batch: list[Prepared]) -> list[EmbeddingRecord | FailureRecord]:
        chips: list[Chip] = [item.payload for item in batch]
        preps = [InputPrep(item.request.input_prep, item.request.output.mode == "grid") for item in batch]
        features = self.embedder.embed_prepared(chips, preps)
        out: list[EmbeddingRecord | FailureRecord] = []
        for item, chip, fmap in zip(batch, chips, features):
            request = item.request
            try:
                vector = pool(fmap, chip.grid, request.output.pooling)
            except TileFailure as exc:
                out.append(FailureRecord(request, tile_id(request.spatial), str(exc)))
                continue
            grid = to_dataarray(fmap) if request.output.mode == "grid" else None
            out.append(EmbeddingRecord(request, tile_id(request.spatial), vector, grid,
                                       self._meta(request, chip)))
        return out

    def _meta(self, request: EmbeddingRequest, chip: Chip) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source.name,
            "sensor": request.sensor.to_dict(),
            "temporal": request.temporal.to_dict(),
            "input_time": request.temporal.midpoint.isoformat(),
            "image_size": [chip.grid.height, chip.grid.width],
            "crs": chip.grid.crs,
            **{f"source_{k}": v for k, v in chip.meta.items()},
        }
