"""The Python API, with the reference library's names, reading through the store.

``get_embedding`` returns a stored embedding when its key is already in the store
(``meta["from_store"] = True``); a miss is computed, stored and returned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rsembed_db.export import export_batch
from rsembed_db.inspect import inspect_gee_patch
from rsembed_db.producers.base import Producer
from rsembed_db.producers.catalog import describe_model, list_models, make_producer
from rsembed_db.query.compute import compute_records, read_through
from rsembed_db.specs.embedding import Embedding
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store.lance_store import EmbeddingStore

StoreLike = EmbeddingStore | str | Path | None
__all__ = ["compute_records", "describe_model", "export_batch", "get_embedding", "get_embeddings_batch",
           "inspect_gee_patch", "list_models"]


def _store(store: StoreLike) -> EmbeddingStore | None:
    if store is None or isinstance(store, EmbeddingStore):
        return store
    return EmbeddingStore(store)


def _producer(model: str, imagery: Any, imagery_date: str | None,
              model_config: dict[str, Any] | None, source: Any = None) -> Producer:
    return make_producer(model, imagery or os.environ.get("RSEMBED_IMAGERY"), imagery_date, model_config,
                         source)


def get_embeddings_batch(model: str, *, spatials: list[SpatialSpec], temporal: TemporalSpec,
                         output: OutputSpec = OutputSpec.pooled(), sensor: SensorSpec | None = None,
                         fetch: FetchSpec | None = None, modality: str | None = None,
                         input_prep: InputPrepSpec | str | None = "resize", store: StoreLike = None,
                         imagery: Any = None, imagery_date: str | None = None,
                         model_config: dict[str, Any] | None = None, source: Any = None) -> list[Embedding]:
    """Embeddings for several ROIs: stored ones read back, the misses computed in one batch
    (once per key, even under concurrent calls; see ``query.compute``)."""
    producer = _producer(model, imagery, imagery_date, model_config, source).for_request(modality, sensor)
    requests = [producer.request(s, temporal, output, sensor, fetch, input_prep, modality) for s in spatials]
    return read_through(producer, requests, _store(store))


def get_embedding(model: str, *, spatial: SpatialSpec, temporal: TemporalSpec,
                  output: OutputSpec = OutputSpec.pooled(), sensor: SensorSpec | None = None,
                  fetch: FetchSpec | None = None, modality: str | None = None,
                  input_prep: InputPrepSpec | str | None = "resize", store: StoreLike = None,
                  imagery: Any = None, imagery_date: str | None = None,
                  model_config: dict[str, Any] | None = None, source: Any = None) -> Embedding:
    """One embedding; with a store, read-through (stored keys are not recomputed).

    Imagery: ``source`` (``"local:<path>"``, ``"gee[:<project>]"``,
    ``"stac:<url>[#collection]"``, or ``$RSEMBED_SOURCE``) or local ``imagery`` files."""
    return get_embeddings_batch(model, spatials=[spatial], temporal=temporal, output=output,
                                sensor=sensor, fetch=fetch, modality=modality, input_prep=input_prep,
                                store=store, imagery=imagery, imagery_date=imagery_date,
                                model_config=model_config, source=source)[0]
