"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from rsembed_db import __version__
from rsembed_db.query import hot
from rsembed_db.service import (
    routes_catalog,
    routes_cells,
    routes_change,
    routes_embeddings,
    routes_explore,
    routes_ingest,
    routes_labels,
    routes_search,
    routes_sql,
)
from rsembed_db.service.context import Context, ServiceContext
from rsembed_db.service.errors import install_error_handlers
from rsembed_db.service.limits import BodySizeLimit, unicode_body
from rsembed_db.service.settings import ServiceSettings

DESCRIPTION = """An embedding database for Earth observation.

Authentication: send an API key as `X-API-Key` or `Authorization: Bearer`. With keys
configured, writes (ingest, computing missing embeddings) need a `write` key and reads
any key. Errors are JSON: `{"error": {"field": ..., "message": ...}}`.

The map explorer is at `/explore`.
"""


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The service over ``settings`` (default: ``ServiceSettings.from_env()``)."""
    shared = ServiceContext(settings or ServiceSettings.from_env())
    hot.configure(shared.settings.search_cache_mb)  # process-wide: the service is the process

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        shared.close()

    app = FastAPI(title="rsembed-db", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  dependencies=[Depends(unicode_body)])
    app.state.ctx = shared
    app.add_middleware(BodySizeLimit, max_bytes=shared.settings.max_body_bytes)
    install_error_handlers(app)
    for module in (routes_catalog, routes_embeddings, routes_search, routes_sql, routes_ingest, routes_cells,
                   routes_change, routes_labels, routes_explore):
        app.include_router(module.router)
    routes_explore.mount_assets(app)

    @app.get("/healthz", tags=["service"], summary="Liveness: the store is reachable")
    def healthz(ctx: Context) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "tables": len(ctx.store.table_names())}

    return app
