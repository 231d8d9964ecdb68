"""The Python API, with the reference library's names and signatures, reading through the store.

``get_embedding(model, *, spatial, temporal=None, sensor=None, fetch=None, modality=None,
output=OutputSpec.pooled(), backend="auto", device="auto", input_prep=None, **model_kwargs)``
is the reference call; rsembed-db adds keyword-only ``store`` (read-through: a stored key
is returned with ``meta["from_store"] = True``, a miss is computed, stored and returned),
``imagery`` / ``imagery_date`` (local files) and ``source`` (``local:<path>``,
``gee[:<project>]``, ``stac:<url>[#collection]``; default ``$RSEMBED_SOURCE``, then
``$RSEMBED_IMAGERY``). Model settings are keyword arguments (``variant="large"``) or a
``model_config`` mapping.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from rsembed_db.display import disable_pretty_warnings, enable_pretty_warnings
from rsembed_db.errors import SpecError
from rsembed_db.export import export_batch
from rsembed_db.inspect import inspect_gee_patch
from rsembed_db.models.base import Embedder, ModelDescription
from rsembed_db.producers.base import Producer
from rsembed_db.producers.catalog import (
    describe_model,
    get_embedder,
    imagery_source,
    is_product,
    list_models,
    make_producer,
    resolve_runtime,
)
from rsembed_db.producers.onthefly import OnTheFlyProducer
from rsembed_db.query.compute import check_roi_sizes, compute_records, read_through
from rsembed_db.sources.factory import make_source
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.embedding import Embedding
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.tiling.chip_grid import DEFAULT_MAX_ROI_PIXELS

StoreLike = EmbeddingStore | str | Path | None
__all__ = ["Model", "compute_records", "describe_model", "disable_pretty_warnings", "enable_pretty_warnings",
           "export_batch", "get_embedding", "get_embeddings_batch", "inspect_gee_patch", "list_models",
           "reset_runtime"]
POOLED = OutputSpec.pooled()


def _store(store: StoreLike) -> EmbeddingStore | None:
    if store is None or isinstance(store, EmbeddingStore):
        return store
    return EmbeddingStore(store)


def _settings(model_config: dict[str, Any] | None, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model_config`` and the keyword settings together; one key given twice is an error."""
    if model_config is not None and not isinstance(model_config, dict):
        raise SpecError("model_config", f"must be a mapping of settings, got {model_config!r}")
    twice = sorted(set(model_config or {}) & set(model_kwargs))
    if twice:
        raise SpecError(twice[0], "given both as a keyword and in model_config")
    return {**(model_config or {}), **model_kwargs}


_EMBEDDERS: OrderedDict[Hashable, Embedder] = OrderedDict()  # recently used models: weights load once
_EMBEDDERS_MAX = 8
_EMBEDDERS_LOCK = threading.Lock()


def _embedder(model: str, config: dict[str, Any]) -> Embedder:
    """The embedder of ``model`` with ``config``, reused across calls (``reset_runtime`` forgets them)."""
    key = (model, canonical_json(config))
    with _EMBEDDERS_LOCK:
        if key in _EMBEDDERS:
            _EMBEDDERS.move_to_end(key)
            return _EMBEDDERS[key]
    embedder = get_embedder(model, **config)
    with _EMBEDDERS_LOCK:
        _EMBEDDERS[key] = embedder
        while len(_EMBEDDERS) > _EMBEDDERS_MAX:
            _EMBEDDERS.popitem(last=False)
    return embedder


def _producer(model: str, backend: str, device: str, imagery: Any, imagery_date: str | None,
              settings: dict[str, Any], source: Any) -> Producer:
    """A product's producer, or a cached model over imagery opened for this call."""
    config = resolve_runtime(model, settings, backend, device)
    if is_product(model):
        return make_producer(model, model_config=config)
    return OnTheFlyProducer(_embedder(model, config),
                            make_source(imagery_source(model, backend, source),
                                        imagery or os.environ.get("RSEMBED_IMAGERY"), imagery_date))


def reset_runtime() -> None:
    """Forget the models kept between calls (their loaded weights)."""
    with _EMBEDDERS_LOCK:
        _EMBEDDERS.clear()


def get_embeddings_batch(model: str, *, spatials: list[SpatialSpec], temporal: TemporalSpec | None = None,
                         sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                         modality: str | None = None, output: OutputSpec = POOLED, backend: str = "auto",
                         device: str = "auto", input_prep: InputPrepSpec | str | None = None,
                         store: StoreLike = None, imagery: Any = None, imagery_date: str | None = None,
                         source: Any = None, model_config: dict[str, Any] | None = None,
                         max_roi_pixels: int | None = DEFAULT_MAX_ROI_PIXELS, **model_kwargs: Any) -> list[Embedding]:
    """Embeddings for several ROIs, in input order: stored ones read back, the misses
    computed in one batch (once per key, even under concurrent calls; see ``query.compute``).

    ``temporal=None`` resolves to the model's documented default (with a warning) or is an
    error naming ``temporal``; the resolved window is what the key and ``meta`` record.
    ``max_roi_pixels``: refuse (SpecError naming ``spatials[i]``) an ROI with more pixels
    at the model's scale, 1024 x 1024 by default; None: no limit.
    """
    if not isinstance(spatials, (list, tuple)) or not spatials:
        raise SpecError("spatials", f"must be a non-empty list of spatial specs, got {spatials!r}")
    producer = _producer(model, backend, device, imagery, imagery_date, _settings(model_config, model_kwargs),
                         source)
    producer = producer.for_request(modality, sensor)
    requests = producer.requests(list(spatials), temporal, output, sensor=sensor, fetch=fetch, input_prep=input_prep,
                                 modality=modality)
    check_roi_sizes(producer, requests, _max_pixels(max_roi_pixels), [f"spatials[{i}]" for i in range(len(requests))],
                    "sensor.scale_m" if sensor is not None else "fetch.scale_m")
    return read_through(producer, requests, _store(store))


def _max_pixels(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SpecError("max_roi_pixels", f"must be an integer >= 1 or None, got {value!r}")
    return value


def get_embedding(model: str, *, spatial: SpatialSpec, temporal: TemporalSpec | None = None,
                  sensor: SensorSpec | None = None, fetch: FetchSpec | None = None, modality: str | None = None,
                  output: OutputSpec = POOLED, backend: str = "auto", device: str = "auto",
                  input_prep: InputPrepSpec | str | None = None, store: StoreLike = None, imagery: Any = None,
                  imagery_date: str | None = None, source: Any = None, model_config: dict[str, Any] | None = None,
                  max_roi_pixels: int | None = DEFAULT_MAX_ROI_PIXELS, **model_kwargs: Any) -> Embedding:
    """One embedding of ``spatial`` (see ``get_embeddings_batch``); with a store, read-through."""
    try:
        return get_embeddings_batch(model, spatials=[spatial], temporal=temporal, sensor=sensor, fetch=fetch,
                                    modality=modality, output=output, backend=backend, device=device,
                                    input_prep=input_prep, store=store, imagery=imagery, imagery_date=imagery_date,
                                    source=source, model_config=model_config, max_roi_pixels=max_roi_pixels,
                                    **model_kwargs)[0]
    except SpecError as exc:
        field = exc.field or ""
        if not field.startswith("spatials[0]"):
            raise
        raise SpecError("spatial" + field[len("spatials[0]"):], exc.message, exc.allowed) from None


class Model:
    """A model kept ready across calls (weights load once): ``Model("dofa", variant="large")``.

    Takes ``get_embedding``'s settings once (``backend``, ``device``, ``sensor``,
    ``fetch``, ``modality``, ``output``, ``input_prep``, model keywords, and rsembed-db's
    ``store`` / ``imagery`` / ``imagery_date`` / ``source``); each call then gives the
    place and window.
    """

    def __init__(self, name: str, *, backend: str = "auto", device: str = "auto", sensor: SensorSpec | None = None,
                 fetch: FetchSpec | None = None, modality: str | None = None, output: OutputSpec = POOLED,
                 input_prep: InputPrepSpec | str | None = None, store: StoreLike = None, imagery: Any = None,
                 imagery_date: str | None = None, source: Any = None,
                 max_roi_pixels: int | None = DEFAULT_MAX_ROI_PIXELS, **model_kwargs: Any) -> None:
        self.name = name
        self.max_roi_pixels = _max_pixels(max_roi_pixels)
        self.producer = _producer(name, backend, device, imagery, imagery_date, _settings(None, model_kwargs),
                                  source).for_request(modality, sensor)
        self.options = {"sensor": sensor, "fetch": fetch, "modality": modality, "input_prep": input_prep}
        self.output, self.store = output, _store(store)

    def get_embedding(self, spatial: SpatialSpec, *, temporal: TemporalSpec | None = None) -> Embedding:
        return self.get_embeddings_batch([spatial], temporal=temporal)[0]

    def get_embeddings_batch(self, spatials: list[SpatialSpec], *,
                             temporal: TemporalSpec | None = None) -> list[Embedding]:
        if not isinstance(spatials, (list, tuple)) or not spatials:
            raise SpecError("spatials", f"must be a non-empty list of spatial specs, got {spatials!r}")
        requests = self.producer.requests(list(spatials), temporal, self.output, **self.options)
        check_roi_sizes(self.producer, requests, self.max_roi_pixels, [f"spatials[{i}]" for i in range(len(requests))],
                        "sensor.scale_m" if self.options["sensor"] is not None else "fetch.scale_m")
        return read_through(self.producer, requests, self.store)

    def describe(self) -> ModelDescription:
        return self.producer.description

    @staticmethod
    def list_models() -> list[str]:
        return list_models()
