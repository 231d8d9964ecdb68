"""Producers turn requests into records: the seam between models and the store.

``prepare`` does the I/O for one request (threads call it concurrently); ``finish``
embeds a batch of prepared items. On-the-fly models fetch imagery and run an embedder
(``producers.onthefly``); precomputed products implement the same two steps over
their rasters, many requests per source tile (``BulkProducer``, ``producers.products``).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest, with_spatials
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec


@dataclass
class Prepared:
    request: EmbeddingRequest
    payload: Any


def table_name_for(model: str, dim: int, default_dim: int) -> str:
    """One table per model variant: ``model``, or ``model_d<dim>`` for a non-default width."""
    return model if dim == default_dim else f"{model}_d{dim}"


# The window of ``temporal=None`` for on-the-fly models: the reference library's package default.
DEFAULT_WINDOW = ("2022-06-01", "2022-09-01")
MODALITY_ALIASES = {"sentinel-1": "s1", "sentinel1": "s1", "sentinel-2": "s2", "sentinel2": "s2"}


class Producer(ABC):
    """Computes embeddings for one model variant, stored in ``table_name``."""

    description: ModelDescription
    default_commit_every = 64  # rows per atomic commit when the run does not say
    default_vector_dtype = "float32"  # how a new table stores the vectors (store.schema.VECTOR_DTYPES)
    backend = "auto"  # where inputs come from (``Embedding.meta["backend"]``)

    @property
    def model(self) -> str:
        return self.description.name

    @property
    def default_workers(self) -> int:
        """Fetch (or tile) threads when the run does not say."""
        return 4

    @property
    def dim(self) -> int:
        return self.description.dim

    @property
    @abstractmethod
    def default_dim(self) -> int:
        """Vector width of this model with its default configuration."""

    @property
    def table_name(self) -> str:
        return table_name_for(self.model, self.dim, self.default_dim)

    @abstractmethod
    def request(self, spatial: SpatialSpec, temporal: TemporalSpec | None, output: OutputSpec = OutputSpec(),
                sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                input_prep: InputPrepSpec | str | None = None,
                modality: str | None = None) -> EmbeddingRequest:
        """The fully resolved request (and so its key) for these specs."""

    def requests(self, spatials: Sequence[SpatialSpec], temporal: TemporalSpec | None,
                 output: OutputSpec = OutputSpec(), **options: Any) -> list[EmbeddingRequest]:
        """``request`` for many spatial specs; resolved once, keys computed in bulk."""
        if not spatials:
            return []
        return with_spatials(self.request(spatials[0], temporal, output, **options), spatials)

    def resolve_temporal(self, temporal: TemporalSpec | None) -> TemporalSpec:
        """The window a request really uses; ``None`` is the reference default window
        ``[2022-06-01, 2022-09-01)``, with a warning."""
        if temporal is not None:
            return temporal
        warnings.warn(f"temporal=None: {self.model} uses the default window {DEFAULT_WINDOW[0]}..{DEFAULT_WINDOW[1]}; "
                      "pass TemporalSpec.range(...) or .year(...) for reproducible, self-documented results",
                      UserWarning, stacklevel=4)
        return TemporalSpec.range(*DEFAULT_WINDOW)

    def for_request(self, modality: str | None = None, sensor: SensorSpec | None = None) -> Producer:
        """The producer for requests with ``modality`` (and ``sensor``): itself, unless the model
        runs another input branch for it (``OnTheFlyProducer``); SpecError for an unknown modality."""
        self.check_modality(modality)
        return self

    def check_modality(self, modality: str | None) -> str | None:
        """The model's name for ``modality`` (aliases such as ``sentinel-1`` -> ``s1``);
        SpecError unless the model accepts it (None: its default)."""
        if modality is None:
            return None
        name = modality.strip().lower() if isinstance(modality, str) else modality
        name = MODALITY_ALIASES.get(name, name)
        if name not in self.description.modalities:
            raise SpecError("modality", f"model {self.model!r} does not support {modality!r}",
                            self.description.modalities)
        return name

    @abstractmethod
    def prepare(self, request: EmbeddingRequest) -> Prepared:
        """Fetch what ``request`` needs; raise TileFailure when it cannot be had."""

    @abstractmethod
    def finish(self, batch: list[Prepared]) -> list[EmbeddingRecord | FailureRecord]:
        """Embed a batch; one record per item, in order."""


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
