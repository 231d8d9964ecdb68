"""Producers turn requests into stored records: the seam between models and ingest.

``prepare`` does the I/O for one request (threads call it concurrently); ``finish``
embeds a batch of prepared items. On-the-fly models fetch imagery and run an embedder;
precomputed products implement the same two steps over their rasters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rsembed_db.inspect import check_input
from rsembed_db.models.base import Embedder, InputPrep, ModelDescription
from rsembed_db.models.input_prep import resolved_mode
from rsembed_db.models.pooling import pool, to_dataarray
from rsembed_db.models.registry import get_embedder
from rsembed_db.sources.base import Chip, ImagerySource, TileFailure
from rsembed_db.sources.factory import Imagery, make_source
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.errors import SpecError
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest, with_spatials
from rsembed_db.specs.sensor import FetchSpec, SensorSpec, resolve_sensor
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store.records import EmbeddingRecord, FailureRecord
from rsembed_db.tiling.chip_grid import chip_grid_for
from rsembed_db.tiling.plan import tile_id


@dataclass
class Prepared:
    request: EmbeddingRequest
    payload: Any


class Producer(ABC):
    """Computes embeddings for one model variant, stored in ``table_name``."""

    description: ModelDescription
    default_commit_every = 64  # rows per atomic commit when the run does not say

    @property
    def model(self) -> str:
        return self.description.name

    @property
    def dim(self) -> int:
        return self.description.dim

    @property
    def table_name(self) -> str:
        return table_name_for(self.model, self.dim)

    @abstractmethod
    def request(self, spatial: SpatialSpec, temporal: TemporalSpec, output: OutputSpec = OutputSpec(),
                sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                input_prep: InputPrepSpec | str | None = None,
                modality: str | None = None) -> EmbeddingRequest:
        """The fully resolved request (and so its key) for these specs."""

    def requests(self, spatials: Sequence[SpatialSpec], temporal: TemporalSpec,
                 output: OutputSpec = OutputSpec(), **options: Any) -> list[EmbeddingRequest]:
        """``request`` for many spatial specs; resolved once, keys computed in bulk."""
        if not spatials:
            return []
        return with_spatials(self.request(spatials[0], temporal, output, **options), spatials)

    def check_modality(self, modality: str | None) -> None:
        """SpecError unless the model accepts ``modality`` (None: its default)."""
        if modality is not None and modality not in self.description.modalities:
            raise SpecError("modality", f"model {self.model!r} does not support {modality!r}",
                            self.description.modalities)

    @abstractmethod
    def prepare(self, request: EmbeddingRequest) -> Prepared:
        """Fetch what ``request`` needs; raise TileFailure when it cannot be had."""

    @abstractmethod
    def finish(self, batch: list[Prepared]) -> list[EmbeddingRecord | FailureRecord]:
        """Embed a batch; one record per item, in order."""


class OnTheFlyProducer(Producer):
    """Imagery from a source, embedded by an on-the-fly model."""

    def __init__(self, embedder: Embedder, source: ImagerySource) -> None:
        self.embedder = embedder
        self.source = source
        self.description = embedder.describe()

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
        grid = chip_grid_for(request.spatial, request.sensor.scale_m)
        chip = self.source.fetch(grid, request.temporal, request.sensor)
        if request.sensor.check_input:
            check_input(chip, request.sensor, tile_id(request.spatial), self.description)
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


class BulkProducer(Producer):
    """A producer that computes many requests in one pass (e.g. each source tile read once).

    ``run_ingest`` hands it every pending request; ``prepare``/``finish`` (used by the
    API for a few requests) delegate to ``compute_many``.
    """

    default_commit_every = 16384

    @abstractmethod
    def compute_many(self, requests: list[EmbeddingRequest], workers: int = 2
                     ) -> Iterator[list[EmbeddingRecord | FailureRecord]]:
        """One record per request, yielded in groups as they complete (any order).

        Per-request problems become FailureRecords; a SpecError (configuration, missing
        data or credentials) stops the run.
        """

    def prepare(self, request: EmbeddingRequest) -> Prepared:
        return Prepared(request, None)

    def finish(self, batch: list[Prepared]) -> list[EmbeddingRecord | FailureRecord]:
        unique = list({item.request.key: item.request for item in batch}.values())
        done = {r.request.key: r for group in self.compute_many(unique) for r in group}
        return [done[item.request.key] for item in batch]


ProducerFactory = Callable[..., Producer]
# Precomputed products register a factory here (name -> factory(**options)).
PRODUCT_FACTORIES: dict[str, ProducerFactory] = {}


def default_dim(model: str) -> int:
    """Vector width of ``model`` with its default configuration."""
    if model in PRODUCT_FACTORIES:
        return PRODUCT_FACTORIES[model]().dim
    return get_embedder(model).dim


def table_name_for(model: str, dim: int) -> str:
    """One table per model variant: ``model``, or ``model_d<dim>`` for a non-default width."""
    return model if dim == default_dim(model) else f"{model}_d{dim}"


def model_table(model: str, model_config: dict[str, Any] | None = None) -> str:
    """The table holding ``model`` (with ``model_config``) embeddings, without any source."""
    if model in PRODUCT_FACTORIES:
        return PRODUCT_FACTORIES[model](**(model_config or {})).table_name
    return table_name_for(model, get_embedder(model, **(model_config or {})).dim)


def model_variant(model: str, model_config: dict[str, Any] | None = None) -> str | None:
    """The stored ``model_config`` value of an on-the-fly model's rows with this config
    (canonical JSON of the resolved config), so searches stay within one variant;
    None for products, whose config does not change values."""
    if model in PRODUCT_FACTORIES:
        return None
    return canonical_json(get_embedder(model, **(model_config or {})).config)


def make_producer(model: str, imagery: Imagery = None, imagery_date: str | None = None,
                  model_config: dict[str, Any] | None = None,
                  source: str | ImagerySource | None = None) -> Producer:
    """The producer for ``model``: a precomputed product, or an embedder over imagery.

    Imagery comes from ``source`` (``local:<path>``, ``gee[:<project>]``,
    ``stac:<url>[#collection]`` or a source instance; see ``sources.factory``), else
    from the local files ``imagery``. Producers given the same source instance share
    its fetches (and its ``stats``).
    """
    config = dict(model_config or {})
    if model in PRODUCT_FACTORIES:
        return PRODUCT_FACTORIES[model](**config)
    embedder = get_embedder(model, **config)
    return OnTheFlyProducer(embedder, make_source(source, imagery, imagery_date))


# Importing the products registers them in PRODUCT_FACTORIES (they subclass BulkProducer).
from rsembed_db.models import products as _products  # noqa: E402,F401
