"""Arrow schemas of the embedding and failure tables, and record -> Arrow conversion.

Embedding row (DESIGN.md section 3): ``key`` (sha256 of the canonical request),
``model`` + ``model_config``, spatial columns (``spatial_kind``, ``spatial`` JSON,
``tile_id``, ``h3`` uint64 + ``h3_res``, bbox, centre, WKB ``geometry``), temporal
columns (``t_start``/``t_end`` of the half-open window, ``year`` of its midpoint),
``pooling``, ``vector`` fixed_size_list<float32>[D], an optional grid (flattened
float32 values + ``grid_shape`` (D, H, W), ``grid_crs``, ``grid_transform``), ``meta``
JSON and ``created_at``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.spatial import H3Cell, lonlat_geometries
from rsembed_db.store.commit import with_primary_key

FAILURES_TABLE = "_failures"
LABELS_TABLE = "_labels"
INTERNAL_TABLES = (FAILURES_TABLE, LABELS_TABLE)  # not model tables: hidden from table_names()
_META_JSON = json.JSONEncoder(default=str, sort_keys=True).encode  # as json.dumps(..., default=str, sort_keys=True)


def embedding_schema(dim: int) -> pa.Schema:
    """The row schema of a model table of ``dim``-wide vectors; ``key`` is its primary key."""
    return with_primary_key(pa.schema([
        pa.field("key", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("model_config", pa.string()),
        pa.field("tile_id", pa.string()),
        pa.field("spatial_kind", pa.string()),
        pa.field("spatial", pa.string()),
        pa.field("h3", pa.uint64()),
        pa.field("h3_res", pa.int8()),
        pa.field("minlon", pa.float64()),
        pa.field("minlat", pa.float64()),
        pa.field("maxlon", pa.float64()),
        pa.field("maxlat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("lat", pa.float64()),
        pa.field("geometry", pa.binary()),
        pa.field("t_start", pa.date32()),
        pa.field("t_end", pa.date32()),
        pa.field("year", pa.int16()),
        pa.field("pooling", pa.string()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("grid", pa.list_(pa.float32())),
        pa.field("grid_shape", pa.list_(pa.int32(), 3)),
        pa.field("grid_crs", pa.string()),
        pa.field("grid_transform", pa.list_(pa.float64(), 6)),
        pa.field("meta", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]), ["key"])


FAILURE_SCHEMA = with_primary_key(pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("table_name", pa.string()),
    pa.field("model", pa.string()),
    pa.field("tile_id", pa.string()),
    pa.field("request", pa.string()),
    pa.field("error", pa.string()),
    pa.field("updated_at", pa.timestamp("us", tz="UTC")),
]), ["key"])


# A label set: named positive / negative marks on stored rows of one table (the explorer's
# examples). One row per (set_name, key); ``who`` and ``at`` record the last change.
LABEL_SCHEMA = with_primary_key(pa.schema([
    pa.field("set_name", pa.string(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
    pa.field("table_name", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("who", pa.string()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
]), ["set_name", "key"])


def vector_dim(schema: pa.Schema) -> int:
    return schema.field("vector").type.list_size


def _grid_columns(record: EmbeddingRecord) -> dict[str, Any]:
    if record.grid is None:
        return {"grid": None, "grid_shape": None, "grid_crs": None, "grid_transform": None}
    values = np.asarray(record.grid.values, dtype=np.float32)
    return {
        "grid": values.ravel(),
        "grid_shape": list(values.shape),
        "grid_crs": record.grid.attrs.get("crs"),
        "grid_transform": list(record.grid.attrs["transform"]),
    }


def h3_hex(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """H3 cell ids (uint64, nulls allowed) as their hex strings (``881f1c6481fffff``): the
    spelling h3 and GIS tools use, and one that survives readers that turn nullable
    uint64 into float64 (pandas, geopandas)."""
    ids = values.to_pylist()
    return pa.array([None if v is None else format(v, "x") for v in ids], pa.string())


def records_to_arrow(records: list[EmbeddingRecord], dim: int) -> pa.Table:
    """Arrow table in ``embedding_schema(dim)``; raises ValueError on a wrong width.

    Built column by column, geometries in single vectorised calls, so that commits of
    thousands of rows cost microseconds per row.
    """
    schema = embedding_schema(dim)
    now = dt.datetime.now(dt.timezone.utc)
    vectors = np.empty((len(records), dim), dtype=np.float32)
    for i, record in enumerate(records):
        vector = np.asarray(record.vector, dtype=np.float32)
        if vector.shape != (dim,):
            raise ValueError(f"vector of {record.tile_id} has shape {vector.shape}, table expects ({dim},)")
        vectors[i] = vector
    requests = [record.request for record in records]
    spatials = [request.spatial for request in requests]
    specs = [spatial.to_dict() for spatial in spatials]
    geoms = lonlat_geometries(spatials)
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    centres = shapely.get_coordinates(shapely.centroid(geoms)).reshape(-1, 2)
    configs: dict[int, str] = {}  # requests of one run share their config dict
    grids = [_grid_columns(record) for record in records]
    columns: dict[str, Any] = {
        "key": [r.key for r in requests],
        "model": [r.model for r in requests],
        "model_config": [configs.setdefault(id(r.model_config), canonical_json(r.model_config))
                         for r in requests],
        "tile_id": [record.tile_id for record in records],
        "spatial_kind": [spec["kind"] for spec in specs],
        "spatial": [canonical_json(spec) for spec in specs],
        "h3": [s.int_id if isinstance(s, H3Cell) else None for s in spatials],
        "h3_res": [s.res if isinstance(s, H3Cell) else None for s in spatials],
        "minlon": bounds[:, 0], "minlat": bounds[:, 1], "maxlon": bounds[:, 2], "maxlat": bounds[:, 3],
        "lon": centres[:, 0], "lat": centres[:, 1],
        "geometry": list(shapely.to_wkb(geoms)),
        "t_start": [r.temporal.start_date for r in requests],
        "t_end": [r.temporal.end_date for r in requests],
        "year": [r.temporal.midpoint.year for r in requests],
        "pooling": [r.output.pooling for r in requests],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        **{name: [g[name] for g in grids] for name in ("grid", "grid_shape", "grid_crs", "grid_transform")},
        "meta": [_META_JSON(record.meta) for record in records],
        "created_at": [now] * len(records),
    }
    return pa.Table.from_arrays(
        [columns[f.name] if isinstance(columns[f.name], pa.Array) else pa.array(columns[f.name], type=f.type)
         for f in schema], schema=schema)


def failures_to_arrow(failures: list[FailureRecord], table_name: str) -> pa.Table:
    return pa.Table.from_pylist([
        {"key": f.request.key, "table_name": table_name, "model": f.request.model,
         "tile_id": f.tile_id, "request": f.request.canonical_json(), "error": f.error,
         "updated_at": f.at}
        for f in failures
    ], schema=FAILURE_SCHEMA)
