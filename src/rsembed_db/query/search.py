"""Exact similarity search over a model table (numpy over the stored vectors)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import shapely

from rsembed_db.specs.errors import SpecError, require_choice
from rsembed_db.store.lance_store import EmbeddingStore, sql_quote

METRICS = ("cosine", "l2", "dot")


def distances(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Distance of every row to ``query``: cosine = 1 - cos, l2 = squared euclidean, dot = -dot."""
    require_choice("metric", metric, METRICS)
    matrix = matrix.astype(np.float64, copy=False)
    query = np.asarray(query, dtype=np.float64)
    if metric == "l2":
        diff = matrix - query
        return np.einsum("ij,ij->i", diff, diff)
    dots = matrix @ query
    if metric == "dot":
        return -dots
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    return 1.0 - np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


@dataclass
class SearchHit:
    key: str
    tile_id: str
    lon: float
    lat: float
    h3: int | None
    distance: float


def exact_search(store: EmbeddingStore, table: str, query: np.ndarray, k: int = 10,
                 metric: str = "cosine", where: str | None = None) -> list[SearchHit]:
    """The k nearest stored rows to ``query`` (ties broken by key), nearest first."""
    if k < 1:
        raise SpecError("k", f"must be >= 1, got {k}")
    meta, matrix = store.vectors(table, where)
    if len(meta) == 0:
        return []
    dist = distances(matrix, query, metric)
    keys = np.asarray(meta["key"].to_pylist())
    order = np.lexsort((keys, dist))[:k]
    rows = meta.take(pa.array(order)).to_pylist()
    return [SearchHit(r["key"], r["tile_id"], r["lon"], r["lat"], r["h3"], float(dist[i]))
            for r, i in zip(rows, order)]


def row_at(store: EmbeddingStore, table: str, lon: float, lat: float) -> dict:
    """The stored row whose footprint contains (lon, lat); the nearest centre if none does."""
    point = shapely.Point(lon, lat)
    data = store.table(table).to_lance().to_table(
        columns=["key", "tile_id", "geometry", "vector", "lon", "lat"],
        filter=f"minlon <= {lon} AND maxlon >= {lon} AND minlat <= {lat} AND maxlat >= {lat}")
    for row in data.to_pylist():
        if shapely.from_wkb(row["geometry"]).covers(point):
            return row
    meta, matrix = store.vectors(table, columns=("key", "tile_id", "lon", "lat"))
    if len(meta) == 0:
        raise SpecError("table", f"table {table!r} is empty")
    lons, lats = meta["lon"].to_numpy(), meta["lat"].to_numpy()
    i = int(np.argmin((lons - lon) ** 2 + ((lats - lat) ** 2)))
    return {**meta.slice(i, 1).to_pylist()[0], "vector": matrix[i]}


def search_near(store: EmbeddingStore, table: str, lon: float, lat: float, k: int = 10,
                metric: str = "cosine") -> tuple[dict, list[SearchHit]]:
    """Rows most similar to the stored embedding at (lon, lat), excluding that row itself."""
    anchor = row_at(store, table, lon, lat)
    hits = exact_search(store, table, np.asarray(anchor["vector"]), k, metric,
                        where=f"key != {sql_quote([anchor['key']])}")
    return anchor, hits
