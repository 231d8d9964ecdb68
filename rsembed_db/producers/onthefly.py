"""The producer of an on-the-fly model: imagery from a source, run through an embedder."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.models.base import Embedder, InputPrep
from rsembed_db.models.input_prep import resolved_mode
from rsembed_db.models.pooling import pool, to_dataarray
from rsembed_db.producers.base import Prepared, Producer
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.sources.base import Chip, ImagerySource, fetch_threads
from rsembed_db.sources.frames import FRAME_META
from rsembed_db.sources.quality import check_input
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest, with_spatials
from rsembed_db.specs.sensor import SensorSpec, resolve_sensor
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for
from rsembed_db.tiling.plan import tile_id


class OnTheFlyProducer(Producer):
    """Imagery from a source, embedded by an on-the-fly model."""

    def __init__(self, embedder: Embedder, source: ImagerySource) -> None:
        self.embedder = embedder
        self.source = source
        self.description = embedder.describe()
        self.backend = source.name if source is not None else "none"
        self._branches: dict[str, OnTheFlyProducer] = {}  # per modality asked for (for_request)
        self._lock = threading.Lock()

    @property
    def default_dim(self) -> int:
        return type(self.embedder)().dim

    @property
    def default_workers(self) -> int:
        return fetch_threads(self.source)

    def for_request(self, modality: str | None = None, sensor: SensorSpec | None = None) -> Producer:
        """Itself, or for a model with several input branches the producer of the branch that
        ``modality`` (else ``sensor.modality``, when it names one) selects: the same source,
        an embedder configured for it, its own table when its width differs."""
        modality = self.check_modality(modality)
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
            temporal=self.resolve_temporal(temporal),
            output=output,
            sensor=sensor,
            input_prep=self.resolved_prep(input_prep, spatial, sensor, output),
            model_config=self.embedder.config,
        )

    def requests(self, spatials: Sequence[SpatialSpec], temporal: TemporalSpec | None,
                 output: OutputSpec = OutputSpec(), **options: Any) -> list[EmbeddingRequest]:
        """``request`` for many spatial specs, keys computed in bulk per resolved input prep
        (a model with a fixed input size may tile one chip and resize a smaller one)."""
        if not spatials:
            return []
        template = self.request(spatials[0], temporal, output, **options)
        if self.description.image_size is None:
            return with_spatials(template, spatials)
        given = options.get("input_prep")
        groups: dict[InputPrepSpec, list[int]] = {}
        for i, spatial in enumerate(spatials):
            groups.setdefault(self.resolved_prep(given, spatial, template.sensor, output), []).append(i)
        out: list[EmbeddingRequest | None] = [None] * len(spatials)
        for prep, indexes in groups.items():
            for i, request in zip(indexes, with_spatials(replace(template, input_prep=prep),
                                                          [spatials[i] for i in indexes])):
                out[i] = request
        return cast(list[EmbeddingRequest], out)

    def resolved_prep(self, given: InputPrepSpec | str | None, spatial: SpatialSpec, sensor: SensorSpec,
                      output: OutputSpec) -> InputPrepSpec:
        """The input preparation a request really gets, in one canonical spelling per
        computation, so that its key names what runs: models without a fixed input size
        ignore it (``resize``); ``None`` is the reference default ``tile`` (``resize`` for a
        grid of a model whose tiled grids show seams, with a warning); ``auto`` and
        single-tile layouts resolve to what they do (``models.input_prep.resolved_mode``)."""
        size = self.description.image_size
        if size is None:
            return InputPrepSpec()
        grid_output = output.mode == "grid"
        seams = grid_output and self.description.tiled_grid_seams
        if given is None or (seams and InputPrepSpec.parse(given).mode == "auto"):
            prep = InputPrepSpec.resize() if seams else InputPrepSpec.parse(given, default="tile")
            if seams:
                warnings.warn(f"{self.model}: a tiled grid would stitch independent per-tile token grids "
                              "(seams at tile edges), so this grid uses input_prep='resize'; pass "
                              "input_prep='tile' to tile anyway", UserWarning, stacklevel=3)
        else:
            prep = InputPrepSpec.parse(given)
            if seams and prep.mode == "tile":
                warnings.warn(f"{self.model}: a tiled grid stitches independent per-tile token grids and "
                              "can show seams at tile edges", UserWarning, stacklevel=3)
        chip = chip_grid_for(spatial, sensor.scale_m)
        if resolved_mode(prep, chip.height, chip.width, size, grid_output) == "resize":
            return InputPrepSpec()
        return InputPrepSpec("tile", tile_size=prep.tile_size or size, pad_edges=prep.pad_edges)

    def prepare(self, request: EmbeddingRequest) -> Prepared:
        """Fetch the chip: ``describe().frames`` frames (one composite per frame bin for
        multi-temporal models); a UserWarning names the frames back-filled with the whole
        window's composite."""
        sensor = request.require_sensor()
        grid = chip_grid_for(request.spatial, sensor.scale_m)
        frames = self.description.frames
        chip = (self.source.fetch(grid, request.temporal, sensor, frames=frames) if frames > 1
                else self.source.fetch(grid, request.temporal, sensor))
        if chip.meta.get("n_backfilled_frames"):
            empty = [b for b, filled in zip(chip.meta["frame_bins"], chip.meta["frame_backfilled"]) if filled]
            warnings.warn(f"{self.model}: tile {tile_id(request.spatial)}: {len(empty)} of "
                          f"{chip.meta['n_frames']} frame bins have no imagery and repeat the whole window's "
                          f"composite: {', '.join(f'{a}..{b}' for a, b in empty)}", UserWarning, stacklevel=2)
        if sensor.check_input:
            check_input(chip, sensor, tile_id(request.spatial), self.model)
        return Prepared(request, chip)

    def finish(self, batch: list[Prepared]) -> list[EmbeddingRecord | FailureRecord]:
        """Records of a batch: requests that keep a grid get the model's feature maps, pooled
        here; the others only their pooled vectors (``Embedder.embed_pooled``)."""
        out: list[EmbeddingRecord | FailureRecord | None] = [None] * len(batch)
        gridded = [i for i, item in enumerate(batch) if item.request.output.mode == "grid"]
        pooled = [i for i, item in enumerate(batch) if item.request.output.mode != "grid"]
        if gridded:
            chips = [batch[i].payload for i in gridded]
            preps = [InputPrep(batch[i].request.input_prep, True) for i in gridded]
            for i, chip, fmap in zip(gridded, chips, self.embedder.embed_prepared(chips, preps)):
                request = batch[i].request
                try:
                    vector = pool(fmap, chip.grid, request.output.pooling)
                except TileFailure as exc:
                    out[i] = FailureRecord(request, tile_id(request.spatial), str(exc))
                    continue
                out[i] = EmbeddingRecord(request, tile_id(request.spatial), vector, to_dataarray(fmap),
                                         {**self._meta(request, chip), **fmap.meta})
        if pooled:
            chips = [batch[i].payload for i in pooled]
            preps = [InputPrep(batch[i].request.input_prep, False) for i in pooled]
            results = self.embedder.embed_pooled(chips, preps, [batch[i].request.output.pooling for i in pooled])
            for i, chip, result in zip(pooled, chips, results, strict=True):
                request = batch[i].request
                out[i] = (FailureRecord(request, tile_id(request.spatial), result.failure or "no vector")
                          if result.vector is None
                          else EmbeddingRecord(request, tile_id(request.spatial), result.vector, None,
                                               {**self._meta(request, chip), **result.meta}))
        return cast(list[EmbeddingRecord | FailureRecord], out)

    def _meta(self, request: EmbeddingRequest, chip: Chip) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source.name,
            "sensor": request.require_sensor().to_dict(),
            "temporal": request.temporal.to_dict(),
            "input_time": request.temporal.midpoint.isoformat(),
            "scene_dates": chip.meta.get("dates", []),
            "image_size": [chip.grid.height, chip.grid.width],
            "crs": chip.grid.crs,
            **{f"source_{k}": v for k, v in chip.meta.items() if k not in FRAME_META},
            **{k: chip.meta[k] for k in FRAME_META if k in chip.meta},
        }

