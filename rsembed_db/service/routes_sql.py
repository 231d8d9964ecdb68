"""``POST /v1/sql``: read-only SQL in the DuckDB sandbox; JSON, Arrow IPC or Parquet by ``Accept``."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from rsembed_db.query.formats import (
    ARROW_STREAM,
    JSON,
    PARQUET,
    ipc_stream_bytes,
    json_columns,
    json_rows,
    parquet_bytes,
)
from rsembed_db.query.sql import run_sql
from rsembed_db.service.auth import Reader
from rsembed_db.service.context import Context
from rsembed_db.service.errors import errors
from rsembed_db.service.limits import negotiate

router = APIRouter(prefix="/v1", tags=["sql"])
FORMATS = (JSON, ARROW_STREAM, PARQUET)


class SqlBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"sql": "SELECT year, count(*) AS n FROM mosaiks GROUP BY year ORDER BY year"}]})

    sql: str = Field(description="One SELECT statement; every model table is a view of that name.")
    max_rows: int | None = Field(None, ge=1, description="At most this many rows (capped by the server limit).")


@router.post("/sql", summary="Read-only SQL over the stored tables", response_model=None, responses={
    200: {"description": "The rows; headers X-Row-Count and X-Truncated.",
          "content": {JSON: {}, ARROW_STREAM: {}, PARQUET: {}}},
    **errors(401, 406, 413, 422, 503, 504)})
def sql(body: SqlBody, request: Request, response: Response, ctx: Context, _: Reader) -> Response | dict[str, Any]:
    media = negotiate(request.headers.get("accept"), FORMATS)
    limits = ctx.settings.sql
    if body.max_rows is not None:
        limits = dataclasses.replace(limits, max_rows=min(body.max_rows, limits.max_rows))
    result = run_sql(ctx.store, body.sql, limits, ctx.sql_workers)
    headers = {"X-Row-Count": str(result.table.num_rows), "X-Truncated": str(result.truncated).lower()}
    if media == ARROW_STREAM:
        return Response(ipc_stream_bytes(result.table), media_type=ARROW_STREAM, headers=headers)
    if media == PARQUET:
        return Response(parquet_bytes(result.table), media_type=PARQUET, headers=headers)
    response.headers.update(headers)
    return {"columns": json_columns(result.table.schema), "rows": json_rows(result.table),
            "row_count": result.table.num_rows, "truncated": result.truncated,
            "seconds": round(result.seconds, 4)}
