"""What every request shares: settings, the store, ingest jobs and cached producers."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import Depends, Request

from rsembed_db.producers.base import Producer
from rsembed_db.producers.catalog import get_embedder, is_product, make_producer
from rsembed_db.producers.onthefly import OnTheFlyProducer
from rsembed_db.query.sql import SqlWorkers
from rsembed_db.service.errors import ApiError
from rsembed_db.service.jobs import IngestJobs
from rsembed_db.service.settings import ServiceSettings
from rsembed_db.sources.base import Chip, ImagerySource
from rsembed_db.sources.factory import make_source
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.tiling.chip_grid import ChipGrid

# How long a listing of the stored tables answers "is this table stored?" for a name in it
# (s): a listing costs ~0.35 ms, a tenth of a search. A name not in it is looked up afresh.
TABLE_LISTING_TTL_S = 1.0
NO_IMAGERY = ("this server has no imagery for on-the-fly models: start it with --imagery PATH or "
              "--source, or set RSEMBED_IMAGERY / RSEMBED_SOURCE")


class NoImagery:
    """The source of on-the-fly models when the server has neither ``imagery`` nor
    ``source``: stored keys are still served, a miss answers 503 naming ``imagery``."""

    name = "none"

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> Chip:
        raise ApiError(503, "imagery", NO_IMAGERY)


class ServiceContext:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.store = EmbeddingStore(settings.db, dict(settings.storage_options))
        self.jobs = IngestJobs(self.store, settings.ingest_workers)
        self.sql_workers = SqlWorkers(spares=1)  # a query process started ahead of each query
        self._producers: OrderedDict[tuple[str, str], Future[Producer]] = OrderedDict()
        self._source: ImagerySource | None = None
        self._lock = threading.Lock()
        self._listing: tuple[float, frozenset[str]] = (-TABLE_LISTING_TTL_S, frozenset())

    def is_stored(self, table: str) -> bool:
        """Whether model table ``table`` is stored. A table created since the last listing
        is found at once (a miss lists again); one removed by another process may still
        count as stored for up to ``TABLE_LISTING_TTL_S``, and the store then answers
        NotFound (404) when it is read."""
        listed_at, names = self._listing
        if table in names and time.monotonic() - listed_at < TABLE_LISTING_TTL_S:
            return True
        names = frozenset(self.store.table_names())
        self._listing = (time.monotonic(), names)
        return table in names

    def producer(self, model: str, model_config: dict[str, Any] | None = None) -> Producer:
        """The producer of ``model`` over the server's imagery, kept for the next requests.

        At most ``settings.max_producers`` configurations stay loaded (least recently used
        evicted). A producer is built outside the lock, once, whoever else asks for it
        meanwhile (they wait for that build); a failed build is not kept."""
        config = dict(model_config or {})
        cache_key = (model, canonical_json(config))
        with self._lock:
            future = self._producers.get(cache_key)
            owner = future is None
            if owner:
                future = self._producers[cache_key] = Future()
                while len(self._producers) > self.settings.max_producers:
                    self._producers.popitem(last=False)
            else:
                self._producers.move_to_end(cache_key)
        assert future is not None
        if owner:
            try:
                future.set_result(self._make(model, config))
            except BaseException as exc:
                with self._lock:
                    if self._producers.get(cache_key) is future:
                        del self._producers[cache_key]
                future.set_exception(exc)
        return future.result()

    def loaded_producers(self) -> int:
        with self._lock:
            return len(self._producers)

    def _make(self, model: str, config: dict[str, Any]) -> Producer:
        if is_product(model):
            return make_producer(model, model_config=config)
        return OnTheFlyProducer(get_embedder(model, **config), self._imagery())

    def _imagery(self) -> ImagerySource:
        """One source shared by every model (shared scans and fetch statistics)."""
        if self._source is None:
            settings = self.settings
            configured = settings.source or settings.imagery
            self._source = (make_source(settings.source, list(settings.imagery) or None, settings.imagery_date)
                            if configured else NoImagery())
        return self._source

    @staticmethod
    def require_imagery(producer: Producer) -> None:
        """503 naming ``imagery`` when ``producer`` computes from imagery the server lacks."""
        if isinstance(getattr(producer, "source", None), NoImagery):
            raise ApiError(503, "imagery", NO_IMAGERY)

    def close(self) -> None:
        self.jobs.shutdown()
        self.sql_workers.close()


async def context(request: Request) -> ServiceContext:
    """The shared context (a coroutine: no thread-pool hop per request)."""
    return request.app.state.ctx


Context = Annotated[ServiceContext, Depends(context)]
