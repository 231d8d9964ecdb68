"""``POST /v1/search``: similarity search (``query.search``) over one model table."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from rsembed_db.errors import SpecError
from rsembed_db.query.formats import ARROW_STREAM, JSON, ipc_stream_bytes
from rsembed_db.query.request import SearchRequest
from rsembed_db.query.search import search
from rsembed_db.query.text import text_query
from rsembed_db.service import params
from rsembed_db.service.auth import Reader
from rsembed_db.service.context import Context
from rsembed_db.service.errors import errors
from rsembed_db.service.limits import negotiate
from rsembed_db.service.tables import resolve_table

router = APIRouter(prefix="/v1", tags=["search"])
GEOJSON = "application/geo+json"
FORMATS = (JSON, GEOJSON, ARROW_STREAM)
EXAMPLE = {"model": "mosaiks", "near": [12.6, 52.49], "k": 10, "metric": "cosine",
           "filters": {"year": 2017, "bbox": [12.5, 52.45, 12.7, 52.52]}}


@router.post("/search", summary="Similarity search over a model's table", response_model=None, responses={
    200: {"description": "Nearest rows first.", "content": {JSON: {}, GEOJSON: {}, ARROW_STREAM: {}}},
    **errors(401, 404, 406, 413, 422, 503)})
def post_search(
    body: Annotated[dict[str, Any], Body(
        description="`model` (+ `model_config`) or `table`, plus a SearchRequest: exactly one of vector, "
                    "key, near [lon, lat], h3, positives (+ negatives), or `text` (with `model`: text-image "
                    "models such as remoteclip); k, metric, filters, exclude_query, include_vector, exact.",
        examples=[EXAMPLE])],
    request: Request, ctx: Context, _: Reader,
) -> Response:
    media = negotiate(request.headers.get("accept"), FORMATS)
    fields = dict(body)
    table, model = fields.pop("table", None), fields.pop("model", None)
    config, text = fields.pop("model_config", None), fields.pop("text", None)
    table, variant = resolve_table(ctx, table, model, config)
    if text is not None:
        if model is None or not isinstance(text, str) or not text.strip() or "vector" in fields:
            raise SpecError("text", "a text query needs model (a text-image model such as remoteclip), "
                                    "a non-empty string and no vector")
        fields["vector"], variant = text_query(model, text, params.model_config(config))
    search_request = SearchRequest.from_dict(fields)
    if variant is not None and search_request.filters.model_config is None:  # stay within one model variant
        search_request = replace(search_request, filters=replace(search_request.filters, model_config=variant))
    result = search(ctx.store, table, search_request)
    if media == ARROW_STREAM:
        return Response(ipc_stream_bytes(result.to_arrow()), media_type=ARROW_STREAM)
    if media == GEOJSON:
        return JSONResponse(result.to_geojson(), media_type=GEOJSON)
    # A JSONResponse goes out as built: a returned dict would first be walked by FastAPI's
    # jsonable_encoder (every coordinate of every footprint), slower than the search itself.
    return JSONResponse({"table": table, "metric": result.metric, "k": result.k, "route": result.route,
                         "matched": result.matched, "query_keys": list(result.query_keys),
                         "seconds": round(result.seconds, 4), "notes": result.notes, "results": result.to_dicts()})
