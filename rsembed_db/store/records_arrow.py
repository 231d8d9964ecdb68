"""Records -> Arrow rows of the store's schemas (the write path).

Apart from ``schema.py`` so that reading a store (``rsembed-db tables``, ``sql``, search)
does not import what building rows needs: the producers' record types, xarray, h3 and
pyproj (~0.15 s of imports; the service imports them anyway for its ingest jobs).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.spatial import H3Cell, lonlat_geometries
from rsembed_db.store.schema import FAILURE_SCHEMA, FLOAT16_MAX, embedding_schema

_META_JSON = json.JSONEncoder(default=str, sort_keys=True).encode  # as json.dumps(..., default=str, sort_keys=True)


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


def _each_once(objects: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """``[fn(o) for o in objects]``, calling ``fn`` once per distinct object (by identity):
    the requests of one run share their window and configuration objects."""
    done: dict[int, Any] = {}
    return [done[key] if (key := id(o)) in done else done.setdefault(key, fn(o)) for o in objects]


def records_to_arrow(records: list[EmbeddingRecord], dim: int, vector_dtype: str = "float32") -> pa.Table:
    """Arrow table in ``embedding_schema(dim, vector_dtype)``; raises ValueError on a wrong
    width, or a finite value beyond float16's range (65504) for a float16 table.

    Built column by column, geometries in single vectorised calls, so that commits of
    thousands of rows cost microseconds per row.
    """
    schema = embedding_schema(dim, vector_dtype)
    now = dt.datetime.now(dt.timezone.utc)
    vectors = np.empty((len(records), dim), dtype=np.float32)
    for i, record in enumerate(records):
        vector = np.asarray(record.vector, dtype=np.float32)
        if vector.shape != (dim,):
            raise ValueError(f"vector of {record.tile_id} has shape {vector.shape}, table expects ({dim},)")
        vectors[i] = vector
    with np.errstate(over="ignore"):  # checked below
        stored = vectors.astype(np.float16) if vector_dtype == "float16" else vectors
    if stored is not vectors:
        overflow = np.isfinite(vectors) & (np.abs(vectors) > FLOAT16_MAX)
        if overflow.any():
            row = int(np.nonzero(overflow.any(axis=1))[0][0])
            raise ValueError(f"vector of {records[row].tile_id} has values beyond float16's range "
                             f"(|x| > {FLOAT16_MAX:g}); store this model in a float32 table")
    requests = [record.request for record in records]
    spatials = [request.spatial for request in requests]
    specs = [spatial.to_dict() for spatial in spatials]
    geoms = lonlat_geometries(spatials)
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    centres = shapely.get_coordinates(shapely.centroid(geoms)).reshape(-1, 2)
    windows = _each_once([r.temporal for r in requests],
                         lambda t: (t.start_date, t.end_date, t.midpoint.year))
    grids = [_grid_columns(record) for record in records]
    columns: dict[str, Any] = {
        "key": [r.key for r in requests],
        "model": [r.model for r in requests],
        "model_config": _each_once([r.model_config for r in requests], canonical_json),
        "tile_id": [record.tile_id for record in records],
        "spatial_kind": [spec["kind"] for spec in specs],
        "spatial": [canonical_json(spec) for spec in specs],
        "h3": [s.int_id if isinstance(s, H3Cell) else None for s in spatials],
        "h3_res": [s.res if isinstance(s, H3Cell) else None for s in spatials],
        "minlon": bounds[:, 0], "minlat": bounds[:, 1], "maxlon": bounds[:, 2], "maxlat": bounds[:, 3],
        "lon": centres[:, 0], "lat": centres[:, 1],
        "geometry": list(shapely.to_wkb(geoms)),
        "t_start": [w[0] for w in windows],
        "t_end": [w[1] for w in windows],
        "year": [w[2] for w in windows],
        "pooling": [r.output.pooling for r in requests],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(stored.ravel()), dim),
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
