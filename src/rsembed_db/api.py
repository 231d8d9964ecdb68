"""The Python API, with the reference library's names, reading through the store.

``get_embedding`` returns a stored embedding when its key is already in the store
(``meta["from_store"] = True``); a miss is computed, stored and returned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from rsembed_db.ingest.producer import Producer, make_producer
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.registry import describe_model as _describe_embedder
from rsembed_db.models.registry import list_models as _list_embedders
from rsembed_db.ingest.producer import PRODUCT_FACTORIES
from rsembed_db.sources.base import TileFailure
from rsembed_db.specs.embedding import Embedding
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.records import EmbeddingRecord, FailureRecord
from rsembed_db.store.schema import grid_from_row

StoreLike = EmbeddingStore | str | Path | None


def list_models() -> list[str]:
    """Every model name usable in ``get_embedding`` and ``rsembed-db ingest``."""
    return sorted({*_list_embedders(), *PRODUCT_FACTORIES})


def describe_model(model: str, **model_config: Any) -> ModelDescription:
    if model in PRODUCT_FACTORIES:
        return PRODUCT_FACTORIES[model](**model_config).description
    return _describe_embedder(model, **model_config)


def _store(store: StoreLike) -> EmbeddingStore | None:
    if store is None or isinstance(store, EmbeddingStore):
        return store
    return EmbeddingStore(store)


def _producer(model: str, imagery: Any, imagery_date: str | None,
              model_config: dict[str, Any] | None) -> Producer:
    return make_producer(model, imagery or os.environ.get("RSEMBED_IMAGERY"), imagery_date, model_config)


def _from_row(row: dict[str, Any], request: EmbeddingRequest) -> Embedding:
    meta = {**json.loads(row["meta"]), "key": row["key"], "from_store": True}
    if request.output.mode == "grid":
        return Embedding(grid_from_row(row), meta)
    return Embedding(np.asarray(row["vector"], dtype=np.float32), meta)


def _from_record(record: EmbeddingRecord) -> Embedding:
    meta = {**record.meta, "key": record.request.key, "from_store": False}
    return Embedding(record.grid if record.request.output.mode == "grid" else record.vector, meta)


def compute_records(producer: Producer, requests: list[EmbeddingRequest]) -> list[EmbeddingRecord]:
    """Compute requests now (no store); a tile that cannot be computed raises TileFailure."""
    prepared = [producer.prepare(r) for r in requests]
    records = producer.finish(prepared)
    for record in records:
        if isinstance(record, FailureRecord):
            raise TileFailure(f"{record.tile_id}: {record.error}")
    return records


def get_embeddings_batch(model: str, *, spatials: list[SpatialSpec], temporal: TemporalSpec,
                         output: OutputSpec = OutputSpec.pooled(), sensor: SensorSpec | None = None,
                         fetch: FetchSpec | None = None, modality: str | None = None,
                         input_prep: InputPrepSpec | str | None = "resize", store: StoreLike = None,
                         imagery: Any = None, imagery_date: str | None = None,
                         model_config: dict[str, Any] | None = None) -> list[Embedding]:
    """Embeddings for several ROIs: stored ones read back, the misses computed in one batch."""
    producer = _producer(model, imagery, imagery_date, model_config)
    db = _store(store)
    requests = [producer.request(s, temporal, output, sensor, fetch, input_prep, modality) for s in spatials]
    results: dict[str, Embedding] = {}
    if db is not None:
        for request in requests:
            row = db.get(producer.table_name, request.key)
            if row is not None and (request.output.mode != "grid" or row["grid"] is not None):
                results[request.key] = _from_row(row, request)
    misses = list({r.key: r for r in requests if r.key not in results}.values())
    if misses:
        records = compute_records(producer, misses)
        if db is not None:
            db.write(producer.table_name, records, producer.dim)
        results.update({rec.request.key: _from_record(rec) for rec in records})
    return [results[r.key] for r in requests]


def get_embedding(model: str, *, spatial: SpatialSpec, temporal: TemporalSpec,
                  output: OutputSpec = OutputSpec.pooled(), sensor: SensorSpec | None = None,
                  fetch: FetchSpec | None = None, modality: str | None = None,
                  input_prep: InputPrepSpec | str | None = "resize", store: StoreLike = None,
                  imagery: Any = None, imagery_date: str | None = None,
                  model_config: dict[str, Any] | None = None) -> Embedding:
    """One embedding; with a store, read-through (stored keys are not recomputed)."""
    return get_embeddings_batch(model, spatials=[spatial], temporal=temporal, output=output,
                                sensor=sensor, fetch=fetch, modality=modality, input_prep=input_prep,
                                store=store, imagery=imagery, imagery_date=imagery_date,
                                model_config=model_config)[0]
