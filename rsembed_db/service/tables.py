"""Which stored table a request means: ``table``, or ``model`` (+ ``model_config``)."""

from __future__ import annotations

from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.producers.catalog import model_table, model_variant
from rsembed_db.service import params
from rsembed_db.service.context import ServiceContext
from rsembed_db.service.errors import ApiError


def resolve_table(ctx: ServiceContext, table: Any, model: Any, config: Any = None) -> tuple[str, str | None]:
    """(stored table, model variant or None). A ``model`` stays within its variant (the
    stored ``model_config`` of that configuration); 404 when nothing is stored there."""
    if (table is None) == (model is None):
        raise SpecError("model", "give model (and optionally model_config) or table")
    for field, value in (("table", table), ("model", model)):
        if value is not None and not isinstance(value, str):
            raise SpecError(field, f"must be a string, got {type(value).__name__}")
    variant = None
    if table is None:
        table = model_table(model, params.model_config(config))
        variant = model_variant(model, params.model_config(config))
    if not ctx.is_stored(table):
        raise ApiError(404, "table" if model is None else "model", f"nothing stored in table {table!r}",
                       allowed=ctx.store.table_names())
    return table, variant
