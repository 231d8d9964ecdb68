"""What every request shares: settings, the store, ingest jobs and cached producers."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import Depends, Request

from rsembed_db.ingest.producer import PRODUCT_FACTORIES, OnTheFlyProducer, Producer, make_producer
from rsembed_db.models.registry import get_embedder
from rsembed_db.service.errors import ApiError
from rsembed_db.service.jobs import IngestJobs
from rsembed_db.service.settings import ServiceSettings
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.tiling.chip_grid import ChipGrid


class NoImagery:
    """The source of on-the-fly models when the server has no imagery: stored keys are
    still served, a miss answers 503 naming ``imagery``."""

    name = "none"

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec):
        raise ApiError(503, "imagery", "this server has no imagery for on-the-fly models: "
                                       "start it with --imagery PATH or set RSEMBED_IMAGERY")


class ServiceContext:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.store = EmbeddingStore(settings.db)
        self.jobs = IngestJobs(self.store, settings.ingest_workers)
        self._producers: dict[tuple[str, str], Producer] = {}
        self._lock = threading.Lock()

    def producer(self, model: str, model_config: dict[str, Any] | None = None) -> Producer:
        """The (cached) producer of ``model`` over the server's imagery."""
        config = dict(model_config or {})
        cache_key = (model, canonical_json(config))
        with self._lock:
            if cache_key not in self._producers:
                self._producers[cache_key] = self._make(model, config)
            return self._producers[cache_key]

    def _make(self, model: str, config: dict[str, Any]) -> Producer:
        settings = self.settings
        if model in PRODUCT_FACTORIES or settings.imagery:
            return make_producer(model, list(settings.imagery) or None, settings.imagery_date, config)
        return OnTheFlyProducer(get_embedder(model, **config), NoImagery())

    def close(self) -> None:
        self.jobs.shutdown()


def context(request: Request) -> ServiceContext:
    return request.app.state.ctx


Context = Annotated[ServiceContext, Depends(context)]
