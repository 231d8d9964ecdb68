"""``/v1/models`` and ``/v1/tables``: what can be computed and what is stored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from rsembed_db.api import describe_model, list_models
from rsembed_db.query.formats import json_columns
from rsembed_db.query.tables import table_summary
from rsembed_db.query.text import has_text_tower
from rsembed_db.service.auth import Reader
from rsembed_db.service.context import Context
from rsembed_db.service.errors import ApiError, errors

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/models", summary="Every model, with its description", responses=errors(401))
def models(_: Reader) -> dict[str, Any]:
    return {"models": [describe_model(name).to_dict() for name in list_models()]}


@router.get("/models/{name}", summary="One model's description", responses=errors(401, 404))
def model(name: str, _: Reader) -> dict[str, Any]:
    if name not in list_models():
        raise ApiError(404, "model", f"unknown model {name!r}", allowed=list_models())
    return describe_model(name).to_dict()


@router.get("/tables", summary="Stored tables: rows, vector width, models", responses=errors(401))
def tables(ctx: Context, _: Reader) -> dict[str, Any]:
    return {"tables": [{"name": i.name, "rows": i.rows, "dim": i.dim, "models": list(i.models), "tilings": i.tilings,
                        "vector_dtype": i.vector_dtype} for i in ctx.store.info()]}


@router.get("/tables/{name}", summary="One table: counts, columns, time windows, extent, text search",
            responses=errors(401, 404))
def table(name: str, ctx: Context, _: Reader) -> dict[str, Any]:
    info = next((i for i in ctx.store.info() if i.name == name), None)
    if info is None:
        raise ApiError(404, "table", f"no table {name!r}", allowed=ctx.store.table_names())
    return {"name": name, "rows": info.rows, "dim": info.dim, "vector_dtype": info.vector_dtype,
            "models": list(info.models),
            "columns": json_columns(ctx.store.table(name).schema), **table_summary(ctx.store, name),
            "text_search": any(has_text_tower(m) for m in info.models)}
