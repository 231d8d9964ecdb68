"""``/v1/embeddings``: read-through embeddings with single-flight compute-on-miss.

Stored keys are read back; misses are computed, stored and returned (a write key is
needed for that when keys are configured); ``compute=never`` answers 404 for misses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

import numpy as np
import xarray as xr
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.query.compute import MissingEmbeddings, check_roi_sizes, read_through
from rsembed_db.query.formats import json_value
from rsembed_db.service import params
from rsembed_db.service.auth import KEY_HEADER, Principal, Reader
from rsembed_db.service.context import Context, ServiceContext
from rsembed_db.service.errors import ApiError, errors
from rsembed_db.specs.embedding import Embedding
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec

router = APIRouter(prefix="/v1", tags=["embeddings"])
ROI_FIELDS = ("buffer_m", "bbox", "h3", "spatial")
Compute = Literal["auto", "never"]


class EmbeddingsBody(BaseModel):
    """A batch of ROIs sharing one model, window and output."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "model": "mosaiks", "spatials": [{"lon": 12.6, "lat": 52.49, "buffer_m": 500},
                                         {"bbox": [12.55, 52.47, 12.57, 52.48]}, {"h3": "881f1c6481fffff"}],
        "temporal": {"year": 2017}, "output": {"mode": "pooled", "pooling": "mean"}}]})

    model: str
    spatials: list[dict[str, Any]] = Field(min_length=1, description=(
        "ROIs: {lon, lat, buffer_m} | {bbox: [minlon, minlat, maxlon, maxlat]} | {h3: cell} | {kind, ...}"))
    temporal: dict[str, Any] | None = Field(None, description=(
        '{"year": 2022}, {"start": "2022-06-01", "end": "2022-09-01"} or {"mode", "year", "start", "end"}; '
        "omitted: the model's default window"))
    output: str | dict[str, Any] = Field("pooled", description='"pooled", "grid" or {mode, pooling, grid_orientation}')
    sensor: dict[str, Any] | None = Field(None, description="Full SensorSpec (not with fetch).")
    fetch: dict[str, Any] | None = Field(None, description="FetchSpec overrides: scale_m, cloudy_pct, fill_value, composite.")
    modality: str | None = None
    input_prep: str | dict[str, Any] | None = Field(None, description=(
        '"resize", "tile", "auto" or {mode, tile_size, max_tiles, pad_edges}; omitted: tile (resize when the ROI '
        "fits one tile)"))
    config: dict[str, Any] | None = Field(None, alias="model_config", description="Model configuration.")
    compute: Compute = Field("auto", description="auto: compute misses; never: 404 for misses.")


def _nan_to_none(values: np.ndarray) -> list[Any]:
    out = values.astype(object)
    out[np.isnan(values)] = None
    return out.tolist()


def embedding_json(embedding: Embedding) -> dict[str, Any]:
    """An embedding as JSON: ``vector`` (D) or ``grid`` (D, H, W, georeferenced), plus meta."""
    meta = dict(embedding.meta)
    out: dict[str, Any] = {"key": meta.pop("key"), "from_store": meta.pop("from_store"),
                           "shape": list(embedding.shape)}
    data = embedding.data
    if isinstance(data, xr.DataArray):
        out["grid"] = {"values": _nan_to_none(np.asarray(data.values)), "dims": list(data.dims),
                       "crs": data.attrs.get("crs"), "transform": list(data.attrs.get("transform", ())),
                       "x": data["x"].values.tolist(), "y": data["y"].values.tolist()}
    else:
        out["vector"] = _nan_to_none(np.asarray(data, dtype=np.float32))
    out["meta"] = json_value(meta)
    return out


@dataclass
class _Query:
    """A parsed embeddings request."""

    model: str
    config: dict[str, Any]
    spatials: list[SpatialSpec]
    temporal: TemporalSpec | None
    output: OutputSpec
    sensor: SensorSpec | None
    fetch: FetchSpec | None
    input_prep: InputPrepSpec | None
    modality: str | None
    compute: str
    prefixes: list[str]  # the field of each ROI in the request ("" for query parameters)
    scale_field: str = "scale_m"


def _answer(ctx: ServiceContext, who: Principal, q: _Query) -> dict[str, Any]:
    producer = ctx.producer(q.model, q.config).for_request(q.modality, q.sensor)
    requests = [_roi_under(prefix, partial(producer.request, s, q.temporal, q.output, q.sensor, q.fetch,
                                           q.input_prep, q.modality))
                for s, prefix in zip(q.spatials, q.prefixes)]
    check_roi_sizes(producer, requests, ctx.settings.max_roi_pixels, q.prefixes, q.scale_field)
    try:
        embeddings = read_through(producer, requests, ctx.store, compute=q.compute == "auto" and who.can_write)
    except TileFailure as exc:
        field = "spatial" if len(requests) == 1 else next(
            (f"spatials[{i}]" for i, r in enumerate(requests) if r.key == exc.key), "spatials")
        raise ApiError(422, field, f"cannot compute this embedding: {exc}") from None
    except MissingEmbeddings as exc:
        if q.compute == "auto":
            raise ApiError(403, KEY_HEADER, f"{len(exc.keys)} embedding(s) not stored; computing them "
                                            "needs a key with write scope (or pass compute=never)",
                           keys=exc.keys) from None
        raise
    return {"model": producer.model, "table": producer.table_name,
            "items": [embedding_json(e) for e in embeddings]}


def _roi_under(prefix: str, build: Callable[[], EmbeddingRequest]) -> EmbeddingRequest:
    """``build()``, with an error about the ROI itself (too wide to sample) named under ``prefix``."""
    try:
        return build()
    except SpecError as exc:
        if not prefix or exc.field not in ROI_FIELDS:
            raise
        raise SpecError(f"{prefix}.{exc.field}", exc.message, exc.allowed) from None


@router.post("/embeddings", summary="Embeddings for several ROIs (read-through, compute on miss)",
             responses=errors(401, 403, 404, 409, 413, 422, 503, 507))
def post_embeddings(body: EmbeddingsBody, ctx: Context, who: Reader) -> dict[str, Any]:
    if len(body.spatials) > ctx.settings.max_batch:
        raise ApiError(413, "spatials", f"{len(body.spatials)} ROIs, more than the limit of "
                                        f"{ctx.settings.max_batch} per request")
    return _answer(ctx, who, _Query(
        body.model, params.model_config(body.config),
        [params.spatial(s, f"spatials[{i}]") for i, s in enumerate(body.spatials)],
        params.temporal(body.temporal), params.output(body.output), params.sensor(body.sensor),
        params.fetch(body.fetch), params.input_prep(body.input_prep), body.modality, body.compute,
        [f"spatials[{i}]" for i in range(len(body.spatials))], "sensor.scale_m" if body.sensor else "fetch.scale_m"))


def _json_object(field: str, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(field, f"must be a JSON object: {exc.msg}") from None
    if not isinstance(value, dict):
        raise SpecError(field, "must be a JSON object")
    return value


@router.get("/embeddings", summary="One embedding (read-through, compute on miss)",
            responses=errors(401, 403, 404, 409, 422, 503, 507))
def get_embedding(
    ctx: Context, who: Reader,
    model: str,
    lon: float | None = None, lat: float | None = None,
    buffer_m: Annotated[float | None, Query(description="Half the side of the square ROI (m).")] = None,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    h3: Annotated[str | None, Query(description="An H3 cell id.")] = None,
    year: int | None = None, start: str | None = None, end: str | None = None,
    output: Literal["pooled", "grid"] = "pooled", pooling: str = "mean",
    grid_orientation: str = "north_up", input_prep: str | None = None, modality: str | None = None,
    scale_m: float | None = None, cloudy_pct: float | None = None, fill_value: float | None = None,
    composite: str | None = None,
    sensor: Annotated[str | None, Query(description="SensorSpec as a JSON object.")] = None,
    model_config: Annotated[str | None, Query(description="Model configuration as a JSON object.")] = None,
    compute: Compute = "auto",
) -> dict[str, Any]:
    forms = [lon is not None or lat is not None, bbox is not None, h3 is not None]
    if sum(forms) != 1:
        raise SpecError("spatial", "give exactly one of lon/lat/buffer_m, bbox or h3")
    if forms[0]:
        spatial: dict[str, Any] = {"lon": lon, "lat": lat, **({"buffer_m": buffer_m} if buffer_m is not None else {})}
    elif bbox is not None:
        spatial = {"bbox": _bbox(bbox)}
    else:
        spatial = {"h3": h3}
    window: dict[str, Any] = {"year": year} if year is not None else {}
    window.update({k: v for k, v in (("start", start), ("end", end)) if v is not None})
    overrides = {k: v for k, v in (("scale_m", scale_m), ("cloudy_pct", cloudy_pct),
                                   ("fill_value", fill_value), ("composite", composite)) if v is not None}
    # Errors name the query parameters ("" prefix): lon, year, pooling, scale_m...
    answer = _answer(ctx, who, _Query(
        model, params.model_config(_json_object("model_config", model_config)), [params.spatial(spatial, "")],
        params.temporal(window, ""),
        params.output({"mode": output, "pooling": pooling, "grid_orientation": grid_orientation}, ""),
        params.sensor(_json_object("sensor", sensor)), params.fetch(overrides or None, ""),
        params.input_prep(input_prep, "input_prep"), modality, compute, [""]))
    return {"model": answer["model"], "table": answer["table"], **answer["items"][0]}


def _bbox(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise SpecError("bbox", f"expected minlon,minlat,maxlon,maxlat, got {text!r}")
    return values
