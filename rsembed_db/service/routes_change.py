"""``POST /v1/change``: the cosine distance between each place's vectors of two years."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rsembed_db.errors import SpecError
from rsembed_db.query.change import change
from rsembed_db.query.export import with_geo_metadata
from rsembed_db.query.formats import ARROW_STREAM, JSON, PARQUET, ipc_stream_bytes, parquet_bytes
from rsembed_db.query.request import SearchFilters
from rsembed_db.service.auth import Reader
from rsembed_db.service.context import Context
from rsembed_db.service.errors import errors
from rsembed_db.service.limits import negotiate
from rsembed_db.service.tables import resolve_table

router = APIRouter(prefix="/v1", tags=["explore"])
GEOJSON = "application/geo+json"
FORMATS = (GEOJSON, JSON, ARROW_STREAM, PARQUET)


class ChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {"model": "mosaiks", "from_year": 2017, "to_year": 2021, "filters": {"bbox": [12.5, 52.45, 12.7, 52.52]}}]})

    model: str | None = None
    table: str | None = None
    config: dict[str, Any] | None = Field(None, alias="model_config", description="Model configuration.")
    from_year: int
    to_year: int
    filters: dict[str, Any] | None = Field(None, description="Search filters without a time part: bbox, polygon, "
                                                              "h3_parent, where, spatial_match.")
    limit: int | None = Field(None, description="Rows per page (default and cap: the server's max_cells).")
    offset: int = 0


@router.post("/change", summary="Change between two years per place (cosine distance), largest first",
             response_model=None, responses={200: {"description": "GeoJSON (default), Arrow IPC stream or GeoParquet.",
                                                   "content": {GEOJSON: {}, JSON: {}, ARROW_STREAM: {}, PARQUET: {}}},
                                             **errors(401, 404, 406, 413, 422)})
def post_change(body: ChangeBody, request: Request, ctx: Context, _: Reader) -> Response:
    media = negotiate(request.headers.get("accept"), FORMATS)
    cap = ctx.settings.max_cells
    if body.limit is not None and not 1 <= body.limit <= cap:
        raise SpecError("limit", f"must be in 1..{cap} (this server's max_cells), got {body.limit}")
    table, variant = resolve_table(ctx, body.table, body.model, body.config)
    filters = SearchFilters.from_dict(body.filters)
    if variant is not None and filters.model_config is None:
        filters = SearchFilters.from_dict({**(body.filters or {}), "model_config": variant})
    result = change(ctx.store, table, body.from_year, body.to_year, filters, body.limit or cap, body.offset,
                    max_rows=ctx.settings.max_view_rows)
    headers = {"X-Total-Count": str(result.total),
               "X-Next-Offset": "" if result.next_offset is None else str(result.next_offset)}
    if media == ARROW_STREAM:
        return Response(ipc_stream_bytes(result.rows), media_type=ARROW_STREAM, headers=headers)
    if media == PARQUET:
        return Response(parquet_bytes(with_geo_metadata(result.rows)), media_type=PARQUET, headers=headers)
    out = result.to_geojson()
    out["properties"]["table"] = table
    return JSONResponse(out, media_type=media, headers=headers)
