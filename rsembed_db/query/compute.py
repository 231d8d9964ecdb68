"""Read-through embeddings: stored keys come from the store, misses are computed once.

``read_through`` answers a batch of requests: stored keys are read back
(``meta["from_store"] = True``); misses are computed, written and returned. The
process-wide ``SingleFlight`` makes N concurrent requests for the same missing key
trigger exactly one computation: the first caller computes (after re-reading the store,
in case another caller has just written the key), the others wait for its result.
Used by the Python API and the HTTP service alike; it is per process, so run the
service as one process (threads serve the concurrency).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from rsembed_db.errors import NotFound, TileFailure
from rsembed_db.producers.base import Producer
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.query.rows import grid_from_row
from rsembed_db.specs.embedding import Embedding
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.tiling.chip_grid import check_roi, roi_field, roi_pixels


class MissingEmbeddings(NotFound):
    """Keys not in the store, raised when computing is not allowed."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__("key", f"{len(keys)} embedding(s) not stored: {', '.join(keys[:5])}"
                         + (" ..." if len(keys) > 5 else ""), keys)


class SingleFlight:
    """At most one computation in flight per id; concurrent callers share its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future] = {}

    def run(self, ids: Sequence[Hashable], compute: Callable[[list[Hashable]], dict[Hashable, Any]]
            ) -> dict[Hashable, Any]:
        """A value for every id. ``compute(owned)`` runs for the ids nobody else is computing
        and must return a value for each; ids already in flight are awaited. An exception
        of ``compute`` reaches every caller waiting on its ids."""
        owned: dict[Hashable, Future] = {}
        awaited: dict[Hashable, Future] = {}
        with self._lock:
            for flight_id in dict.fromkeys(ids):
                if flight_id in self._flights:
                    awaited[flight_id] = self._flights[flight_id]
                else:
                    owned[flight_id] = self._flights[flight_id] = Future()
        results: dict[Hashable, Any] = {}
        if owned:
            try:
                results = compute(list(owned))
                for flight_id, future in owned.items():
                    future.set_result(results[flight_id])
            except BaseException as exc:
                for future in owned.values():
                    if not future.done():
                        future.set_exception(exc)
                raise
            finally:
                with self._lock:
                    for flight_id in owned:
                        del self._flights[flight_id]
        for flight_id, future in awaited.items():
            results[flight_id] = future.result()
        return results

    def in_flight(self) -> int:
        with self._lock:
            return len(self._flights)


FLIGHTS = SingleFlight()


def check_roi_sizes(producer: Producer, requests: Sequence[EmbeddingRequest], max_pixels: int | None,
                    prefixes: Sequence[str], scale_field: str = "scale_m") -> None:
    """SpecError before anything is read or computed when an ROI has more than ``max_pixels``
    pixels at the scale its request uses (None: no limit). The field is the ROI's own under
    its prefix (``spatials[3].buffer_m``; a bare ``buffer_m`` for an empty prefix), or
    ``scale_field`` when the ROI would fit at the model's default scale."""
    if max_pixels is None:
        return
    for request, prefix in zip(requests, prefixes):
        scale = request.sensor.scale_m if request.sensor is not None else producer.description.scale_m
        default = producer.description.scale_m
        field = ".".join(part for part in (prefix, roi_field(request.spatial)) if part)
        if scale < default and roi_pixels(request.spatial, default) <= max_pixels:
            field = scale_field
        check_roi(request.spatial, scale, max_pixels, field)


def compute_records(producer: Producer, requests: list[EmbeddingRequest]) -> list[EmbeddingRecord]:
    """Compute requests now (no store); a tile that cannot be computed raises TileFailure."""
    prepared = []
    for request in requests:
        try:
            prepared.append(producer.prepare(request))
        except TileFailure as exc:
            raise TileFailure(str(exc), key=request.key) from exc
    records: list[EmbeddingRecord] = []
    for record in producer.finish(prepared):
        if isinstance(record, FailureRecord):
            raise TileFailure(f"{record.tile_id}: {record.error}", key=record.request.key)
        records.append(record)
    return records


def embedding_from_row(row: dict[str, Any], request: EmbeddingRequest) -> Embedding:
    meta = {**json.loads(row["meta"]), "key": row["key"], "from_store": True}
    if request.output.mode == "grid":
        grid = grid_from_row(row)
        assert grid is not None  # grid requests read only rows that store a grid (existing_keys)
        return Embedding(grid, meta)
    return Embedding(np.asarray(row["vector"], dtype=np.float32), meta)


def embedding_from_record(record: EmbeddingRecord) -> Embedding:
    meta = {**record.meta, "key": record.request.key, "from_store": False}
    data = record.grid if record.request.output.mode == "grid" else record.vector
    assert data is not None  # producers fill the grid of grid requests and always the vector
    return Embedding(data, meta)


def stored_embeddings(store: EmbeddingStore | None, table: str,
                      requests: Iterable[EmbeddingRequest]) -> dict[str, Embedding]:
    """Key -> stored embedding for the requests already stored (with a grid, for grid requests)."""
    found: dict[str, Embedding] = {}
    if store is None:
        return found
    for request in requests:
        row = store.get(table, request.key)
        if row is not None and (request.output.mode != "grid" or row["grid"] is not None):
            found[request.key] = embedding_from_row(row, request)
    return found


def read_through(producer: Producer, requests: list[EmbeddingRequest],
                 store: EmbeddingStore | None = None, compute: bool = True,
                 flights: SingleFlight = FLIGHTS) -> list[Embedding]:
    """One embedding per request, in order; misses computed once and stored.

    ``compute=False`` raises MissingEmbeddings for misses instead. A failing computation
    raises (TileFailure, SpecError, ...) and writes nothing: the table is unchanged.
    """
    table = producer.table_name
    unique = {r.key: r for r in requests}
    found = stored_embeddings(store, table, unique.values())
    misses = {_flight_id(store, table, r): r for key, r in unique.items() if key not in found}
    if misses and not compute:
        raise MissingEmbeddings([r.key for r in misses.values()])

    def compute_owned(owned: list[Hashable]) -> dict[Hashable, Embedding]:
        todo = [misses[flight_id] for flight_id in owned]
        done = stored_embeddings(store, table, todo)  # a leader may have written them meanwhile
        todo = [r for r in todo if r.key not in done]
        if todo:
            records = compute_records(producer, todo)
            if store is not None:
                store.write(table, records, producer.dim, create_dtype=producer.default_vector_dtype)
            done.update({rec.request.key: embedding_from_record(rec) for rec in records})
        return {flight_id: done[misses[flight_id].key] for flight_id in owned}

    if misses:
        for flight_id, embedding in flights.run(list(misses), compute_owned).items():
            found[misses[flight_id].key] = embedding
    # Callers may share one computed value: each gets its own meta.
    return [Embedding(found[r.key].data, {**found[r.key].meta, **contract_meta(producer, r, found[r.key])})
            for r in requests]


def contract_meta(producer: Producer, request: EmbeddingRequest, embedding: Embedding) -> dict[str, Any]:
    """The reference's stable ``Embedding.meta`` fields, for stored and computed embeddings alike."""
    description = producer.description
    grid = request.output.mode == "grid"
    meta: dict[str, Any] = {
        "model": producer.model, "type": description.kind, "backend": producer.backend,
        "temporal": request.temporal.to_dict(),
        "sensor": request.sensor.to_dict() if request.sensor is not None else None,
        "output": request.output.mode, "pooling": f"{request.output.pooling} over the ROI",
        "grid_hw": list(embedding.data.shape[-2:]) if grid else None,
        "cls_removed": description.kind == "on_the_fly" and description.patch_size not in (None, 1),
    }
    if "input_prep" not in embedding.meta:
        meta["input_prep"] = request.input_prep.to_dict()
    return meta


def _flight_id(store: EmbeddingStore | None, table: str, request: EmbeddingRequest) -> Hashable:
    return (store.uri if store is not None else None, table, request.key, request.output.mode)
