"""The query vector of a SearchRequest: given, or read from stored rows.

Positive / negative examples (Earth Index style refinement): every example is
normalised to unit length for ``cosine`` (so each counts by direction, not by norm),
then ``query = 2 * mean(positives) - mean(negatives)``; without negatives the query is
``mean(positives)``. For ``l2`` and ``dot`` the raw vectors are used. With cosine the
overall scale of the query does not matter, so no further normalisation is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import h3
import numpy as np
import pyarrow.compute as pc
import shapely

from rsembed_db.errors import SpecError
from rsembed_db.query.filters import compile_filters
from rsembed_db.query.profile import TableProfile
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.store.lance_store import sql_quote


@dataclass(frozen=True)
class ResolvedQuery:
    """The query vector and the stored rows it came from (excluded from results by default)."""

    vector: np.ndarray
    keys: tuple[str, ...] = ()


def _vectors(dataset, where: str, dim: int) -> tuple[list[str], np.ndarray]:
    rows = dataset.to_table(columns=["key", "vector"], filter=where)
    flat = pc.list_flatten(rows["vector"]).to_numpy(zero_copy_only=False)
    return rows["key"].to_pylist(), flat.astype(np.float32, copy=False).reshape(len(rows), dim)


def vectors_by_key(dataset, keys: list[str], dim: int, field: str) -> np.ndarray:
    """The stored vectors of ``keys`` in that order; SpecError naming ``field`` if one is missing."""
    found, matrix = _vectors(dataset, f"key IN ({sql_quote(sorted(set(keys)))})", dim)
    index = {key: i for i, key in enumerate(found)}
    missing = [key for key in keys if key not in index]
    if missing:
        raise SpecError(field, f"no stored row with key {missing[0]!r}")
    return matrix[[index[key] for key in keys]]


def _window_filter(filters: SearchFilters) -> str | None:
    """The model and time part of the filters: which row a location refers to."""
    return compile_filters(SearchFilters(model=filters.model, model_config=filters.model_config,
                                         start=filters.start, end=filters.end, year=filters.year,
                                         tiling=filters.tiling)).sql


KIND_PREFERENCE = {"h3": 0, "grid": 1, "bbox": 2, "point_buffer": 3}


def row_covering(profile: TableProfile, lon: float, lat: float, filters: SearchFilters, field: str = "near") -> str:
    """Key of the stored row whose footprint covers (lon, lat) for the filters' model,
    window and tiling. When several do: tiles before point buffers (H3 cells first, the
    finest resolution first), then the most recent window, then the smallest key."""
    width, height = profile.footprint_extent()
    where = (f"lon >= {lon - width!r} AND lon <= {lon + width!r} "  # two narrow index ranges; the
             f"AND lat >= {lat - height!r} AND lat <= {lat + height!r}")  # exact test is shapely's
    window = _window_filter(filters)
    rows = profile.dataset.to_table(columns=["key", "geometry", "t_start", "spatial_kind", "h3_res"],
                                    filter=f"{where} AND ({window})" if window else where)
    point = shapely.Point(lon, lat)
    covering = [r for r in rows.to_pylist() if shapely.from_wkb(r["geometry"]).covers(point)]
    if not covering:
        raise SpecError(field, f"no stored embedding covers ({lon}, {lat})"
                        + (f" with {window}" if window else ""))
    return min(covering, key=lambda r: (KIND_PREFERENCE.get(r["spatial_kind"], 9), -(r["h3_res"] or 0),
                                        -r["t_start"].toordinal(), r["key"]))["key"]


def row_of_cell(profile: TableProfile, cell: int, filters: SearchFilters) -> str:
    """Key of the stored row for H3 ``cell``: that cell, else its nearest stored ancestor,
    else the row covering the cell's centre."""
    hexid = h3.int_to_str(cell)
    res = h3.get_resolution(hexid)
    cells = [h3.str_to_int(h3.cell_to_parent(hexid, r)) for r in range(res, -1, -1)]
    window = _window_filter(filters)
    where = f"h3 IN ({', '.join(map(str, cells))})" + (f" AND ({window})" if window else "")
    rows = profile.dataset.to_table(columns=["key", "h3", "t_start"], filter=where).to_pylist()
    if rows:
        rank = {c: i for i, c in enumerate(cells)}
        return min(rows, key=lambda r: (rank[r["h3"]], -r["t_start"].toordinal(), r["key"]))["key"]
    lat, lon = h3.cell_to_latlng(hexid)
    return row_covering(profile, lon, lat, filters, field="h3")


def _examples(dataset, examples: tuple, dim: int, field: str, metric: str) -> tuple[np.ndarray, list[str]]:
    keys = [e for e in examples if isinstance(e, str)]
    by_key = dict(zip(keys, vectors_by_key(dataset, keys, dim, field))) if keys else {}
    matrix = np.stack([by_key[e] if isinstance(e, str) else _check_dim(e, dim, field) for e in examples])
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if (norms == 0).any():
            raise SpecError(field, "a zero vector has no direction (metric cosine)")
        matrix = matrix / norms
    return matrix, keys


def _check_dim(vector: np.ndarray, dim: int, field: str) -> np.ndarray:
    if vector.shape != (dim,):
        raise SpecError(field, f"the table holds {dim}-d vectors, got {vector.shape[0]}-d")
    return vector


def resolve_query(profile: TableProfile, request: SearchRequest) -> ResolvedQuery:
    """The query vector of ``request`` against the profiled table."""
    dataset, dim, kind = profile.dataset, profile.dim, request.query_kind
    if kind == "vector":
        return ResolvedQuery(_check_dim(request.vector, dim, "vector"))
    if kind == "examples":
        pos, pos_keys = _examples(dataset, request.positives, dim, "positives", request.metric)
        query = pos.mean(axis=0)
        neg_keys: list[str] = []
        if request.negatives:
            neg, neg_keys = _examples(dataset, request.negatives, dim, "negatives", request.metric)
            query = 2 * query - neg.mean(axis=0)
        if request.metric == "cosine" and not np.linalg.norm(query) > 0:
            raise SpecError("negatives", "positives and negatives cancel out: the query is a zero vector")
        return ResolvedQuery(query.astype(np.float32), tuple(dict.fromkeys(pos_keys + neg_keys)))
    if kind == "key":
        key = request.key
    elif kind == "near":
        key = row_covering(profile, *request.near, request.filters)
    else:
        key = row_of_cell(profile, request.h3.int_id, request.filters)
    return ResolvedQuery(vectors_by_key(dataset, [key], dim, kind)[0], (key,))
