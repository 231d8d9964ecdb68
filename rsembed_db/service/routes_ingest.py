"""``/v1/ingest``: ingest a GeoJSON region as a background job, with status and progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from rsembed_db.service import params
from rsembed_db.service.auth import Reader, Writer
from rsembed_db.service.context import Context
from rsembed_db.service.errors import ApiError, errors
from rsembed_db.specs.output import OutputSpec
from rsembed_db.specs.validate import require_choice
from rsembed_db.store.schema import check_vector_dtype
from rsembed_db.tiling.plan import TooManyTilesError, tile_region
from rsembed_db.tiling.region import region_from_geojson

router = APIRouter(prefix="/v1", tags=["ingest"])


class IngestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "model": "mosaiks", "tiles": "h3:8", "temporal": {"year": 2017},
        "region": {"type": "Polygon", "coordinates": [[[12.55, 52.47], [12.60, 52.47], [12.60, 52.50],
                                                        [12.55, 52.50], [12.55, 52.47]]]}}]})

    model: str
    region: dict[str, Any] = Field(description="GeoJSON Feature, FeatureCollection or (Multi)Polygon, lon/lat.")
    temporal: dict[str, Any] | None = Field(None, description=(
        '{"year": 2022}, {"start": ..., "end": ...} or {"mode", "year", "start", "end"}; omitted: the model default'))
    input_prep: str | dict[str, Any] | None = Field(None, description="resize, tile, auto or a spec; omitted: tile")
    tiles: str = Field("h3:8", description="h3:<res> or grid:<size_m>")
    cover: str = Field("centre", description="h3 tiles: centre (cell centre inside) or full (cover the region)")
    output: str = Field("pooled", description="pooled, grid or both (grid/both keep the (D,H,W) grid)")
    pooling: str = "mean"
    config: dict[str, Any] | None = Field(None, alias="model_config", description="Model configuration.")
    vector_dtype: str | None = Field(None, description=(
        "float32 or float16: how a new table stores vectors (omitted: float16 for int8 products such as "
        "tessera and gse, else float32); an existing table keeps its own and refuses another"))


@router.post("/ingest", status_code=202, summary="Start an ingest job (needs a write key)",
             responses=errors(401, 403, 413, 422, 503))
def start_ingest(body: IngestBody, response: Response, ctx: Context, _: Writer) -> dict[str, Any]:
    require_choice("output", body.output, ("pooled", "grid", "both"))
    out_spec = OutputSpec.pooled(body.pooling) if body.output == "pooled" else OutputSpec.grid(pooling=body.pooling)
    temporal = params.temporal(body.temporal)
    if body.vector_dtype is not None:
        check_vector_dtype(body.vector_dtype)
    producer = ctx.producer(body.model, params.model_config(body.config))
    if body.vector_dtype is not None and ctx.store.has_table(producer.table_name):
        ctx.store.ensure_table(producer.table_name, producer.dim, body.vector_dtype)  # SpecError on a mismatch
    limit = ctx.settings.max_region_tiles
    try:
        spatials = tile_region(region_from_geojson(body.region), body.tiles, cover=body.cover, max_tiles=limit)
    except TooManyTilesError as exc:
        raise ApiError(413, "region", f"the region gives {exc.amount} {body.tiles} tiles, more than "
                                      f"this server's limit of {limit}; split it or use a coarser tiler") from None
    ctx.require_imagery(producer)
    requests = producer.requests(spatials, temporal, out_spec, input_prep=params.input_prep(body.input_prep))
    job = ctx.jobs.submit(producer, requests, body.tiles, body.vector_dtype)
    response.headers["Location"] = f"/v1/ingest/{job['id']}"
    return job


@router.get("/ingest", summary="Ingest jobs of every replica over this store, newest first", responses=errors(401))
def list_jobs(ctx: Context, _: Reader) -> dict[str, Any]:
    return {"jobs": ctx.jobs.list()}


@router.get("/ingest/{job_id}", summary="An ingest job: state, planned/done/failed, errors", responses=errors(401, 404))
def job_status(job_id: str, ctx: Context, _: Reader) -> dict[str, Any]:
    try:
        return ctx.jobs.get(job_id)
    except KeyError:
        raise ApiError(404, "job_id", f"no ingest job {job_id!r}") from None


@router.delete("/ingest/{job_id}", summary="Cancel an ingest job after its current batch",
               responses=errors(401, 403, 404))
def cancel_job(job_id: str, ctx: Context, caller: Writer) -> dict[str, Any]:
    try:
        return ctx.jobs.cancel(job_id, who=caller.key_id)
    except KeyError:
        raise ApiError(404, "job_id", f"no ingest job {job_id!r}") from None
