"""``GET /v1/cells``: the stored cells of a map view, paged, coloured by their embeddings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from rsembed_db.errors import SpecError
from rsembed_db.query.cells import view_cells
from rsembed_db.query.formats import ARROW_STREAM, JSON, ipc_stream_bytes
from rsembed_db.query.request import SearchFilters
from rsembed_db.service.auth import Reader
from rsembed_db.service.context import Context
from rsembed_db.service.errors import errors
from rsembed_db.service.limits import negotiate
from rsembed_db.service.tables import resolve_table

router = APIRouter(prefix="/v1", tags=["explore"])
GEOJSON = "application/geo+json"
FORMATS = (GEOJSON, JSON, ARROW_STREAM)


@router.get("/cells", summary="Stored cells of a view (bbox, window), paged, with PCA colours", response_model=None,
            responses={200: {"description": "A GeoJSON FeatureCollection (or Arrow IPC stream); headers "
                                            "X-Total-Count and X-Next-Offset.",
                             "content": {GEOJSON: {}, JSON: {}, ARROW_STREAM: {}}}, **errors(401, 404, 406, 413, 422)})
def cells(
    request: Request, ctx: Context, _: Reader,
    table: Annotated[str | None, Query(description="Table name (or model).")] = None,
    model: Annotated[str | None, Query(description="Model name: its default variant's rows.")] = None,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat: rows whose centre is inside.")] = None,
    year: Annotated[int | None, Query(description="Rows whose window's midpoint year is this.")] = None,
    start: Annotated[str | None, Query(description="Rows whose window overlaps [start, end).")] = None,
    end: str | None = None,
    h3_parent: Annotated[str | None, Query(description="Rows in this H3 cell (hex id).")] = None,
    limit: Annotated[int | None, Query(description="Rows per page (default and cap: the server's max_cells).")] = None,
    offset: Annotated[int, Query(description="First row of the page (rows are in key order).")] = 0,
) -> Response:
    media = negotiate(request.headers.get("accept"), FORMATS)
    cap = ctx.settings.max_cells
    if limit is not None and not 1 <= limit <= cap:
        raise SpecError("limit", f"must be in 1..{cap} (this server's max_cells), got {limit}")
    name, variant = resolve_table(ctx, table, model)
    filters = SearchFilters.from_text(model_config=variant, year=year, start=start, end=end, bbox=bbox, h3_parent=h3_parent)
    page = view_cells(ctx.store, name, filters, limit or cap, offset, max_rows=ctx.settings.max_view_rows)
    headers = {"X-Total-Count": str(page.total), "X-Next-Offset": "" if page.next_offset is None else str(page.next_offset)}
    if media == ARROW_STREAM:
        return Response(ipc_stream_bytes(page.rows), media_type=ARROW_STREAM, headers=headers)
    body: dict[str, Any] = page.to_geojson()
    body["properties"]["table"] = name
    return JSONResponse(body, media_type=media, headers=headers)
