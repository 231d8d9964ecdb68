"""The producer of an on-the-fly model: imagery from a source, run through an embedder."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

from rsembed_db.errors import TileFailure
from rsembed_db.models.base import Embedder, InputPrep
from rsembed_db.models.input_prep import resolved_mode
from rsembed_db.models.pooling import pool, to_dataarray
from rsembed_db.producers.base import Prepared, Producer
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.sources.base import Chip, ImagerySource
from rsembed_db.sources.frames import FRAME_META
from rsembed_db.sources.quality import check_input
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

    @property
    def default_dim(self) -> int:
        return type(self.embedder)().dim

    def request(self, spatial, temporal, output=OutputSpec(), sensor=None, fetch=None,
                input_prep=None, modality=None):
        self.check_modality(modality)
        sensor = resolve_sensor(self.embedder.default_sensor(), sensor, fetch)
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
        """Fetch the chip: ``describe().frames`` frames (one composite per frame bin for
        multi-temporal models); a UserWarning names the frames back-filled with the whole
        window's composite."""
        grid = chip_grid_for(request.spatial, request.sensor.scale_m)
        frames = self.description.frames
        chip = (self.source.fetch(grid, request.temporal, request.sensor, frames=frames) if frames > 1
                else self.source.fetch(grid, request.temporal, request.sensor))
        if chip.meta.get("n_backfilled_frames"):
            empty = [b for b, filled in zip(chip.meta["frame_bins"], chip.meta["frame_backfilled"]) if filled]
            warnings.warn(f"{self.model}: tile {tile_id(request.spatial)}: {len(empty)} of "
                          f"{chip.meta['n_frames']} frame bins have no imagery and repeat the whole window's "
                          f"composite: {', '.join(f'{a}..{b}' for a, b in empty)}", UserWarning, stacklevel=2)
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
            **{f"source_{k}": v for k, v in chip.meta.items() if k not in FRAME_META},
            **{k: chip.meta[k] for k in FRAME_META if k in chip.meta},
        }
