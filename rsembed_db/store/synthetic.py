"""Synthetic embedding tables for tests and benchmarks, written as Arrow in a few commits.

Rows are every H3 cell of resolution ``res`` under ``parent`` times every year in
``years``: annual windows, or with ``window_days`` one window of that many days per row
at a pseudo-random day of its year (acquisition-like windows, for time filters).
Vectors have low intrinsic dimension, like real EO embeddings: a per-region "land
cover" class mean in a ``latent``-d space, a per-year drift and per-row noise, mapped
to ``dim`` dimensions by a fixed random matrix, plus a little isotropic noise.
Neighbours are therefore spread over the whole area, so a spatial filter can exclude
most of a query's true neighbours: the hard case for ANN with a prefilter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import h3
import numpy as np
import pyarrow as pa
import shapely

from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.schema import embedding_schema

MODEL = "synthetic"


def synthetic_cells(parent: str, res: int) -> list[str]:
    """All cells of resolution ``res`` under ``parent``, in integer order."""
    return sorted(h3.cell_to_children(parent, res), key=h3.str_to_int)


def synthetic_vectors(cells: list[str], years: list[int], dim: int, seed: int = 0,
                      latent: int = 16, classes: int = 48) -> np.ndarray:
    """(len(years) * len(cells), dim) float32, year-major like ``synthetic_table``."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    class_means = rng.normal(scale=1.0, size=(classes, latent)).astype(np.float32)
    region = np.array([h3.str_to_int(h3.cell_to_parent(c, max(h3.get_resolution(c) - 3, 0))) for c in cells])
    _, region_idx = np.unique(region, return_inverse=True)
    region_class = rng.integers(0, classes, size=region_idx.max() + 1)[region_idx]
    cell_offset = rng.normal(scale=0.35, size=(len(cells), latent)).astype(np.float32)
    out = np.empty((len(years) * len(cells), dim), np.float32)
    for i, _ in enumerate(years):
        drift = rng.normal(scale=0.1, size=latent).astype(np.float32)
        noise = rng.normal(scale=0.1, size=(len(cells), latent)).astype(np.float32)
        z = class_means[region_class] + cell_offset + drift + noise
        block = z @ mixing + rng.normal(scale=0.03, size=(len(cells), dim)).astype(np.float32)
        out[i * len(cells):(i + 1) * len(cells)] = block
    return out


def _spatial_block(cells: list[str]) -> dict[str, pa.Array]:
    """Spatial columns of one year's rows (shared by every year)."""
    rings = np.array([[(lon, lat) for lat, lon in h3.cell_to_boundary(c)] for c in cells])
    polygons = shapely.polygons(rings)
    bounds = shapely.bounds(polygons)
    centres = np.array([h3.cell_to_latlng(c) for c in cells])
    return {
        "spatial_kind": pa.array(["h3"] * len(cells)),
        "spatial": pa.array([json.dumps({"cell": c, "kind": "h3"}, separators=(",", ":")) for c in cells]),
        "tile_id": pa.array(cells),
        "h3": pa.array([h3.str_to_int(c) for c in cells], pa.uint64()),
        "h3_res": pa.array([h3.get_resolution(c) for c in cells], pa.int8()),
        "minlon": pa.array(bounds[:, 0]), "minlat": pa.array(bounds[:, 1]),
        "maxlon": pa.array(bounds[:, 2]), "maxlat": pa.array(bounds[:, 3]),
        "lon": pa.array(centres[:, 1]), "lat": pa.array(centres[:, 0]),
        "geometry": pa.array(shapely.to_wkb(polygons), pa.binary()),
    }


def _windows(n: int, year: int, window_days: int | None) -> tuple[pa.Array, pa.Array]:
    """``t_start`` / ``t_end`` of one year's rows: the whole year, or ``window_days``-day
    windows starting on pseudo-random days that keep the window inside the year."""
    start, end = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    if window_days is None:
        return pa.array([start] * n, pa.date32()), pa.array([end] * n, pa.date32())
    if not 1 <= window_days <= 180:
        raise ValueError(f"window_days must be in 1..180, got {window_days}")
    first = (start - dt.date(1970, 1, 1)).days
    offsets = np.random.default_rng(year).integers(0, 365 - window_days, size=n)
    return (pa.array((first + offsets).astype(np.int32), pa.date32()),
            pa.array((first + offsets + window_days).astype(np.int32), pa.date32()))


def synthetic_table(cells: list[str], year: int, vectors: np.ndarray,
                    spatial: dict[str, pa.Array] | None = None, window_days: int | None = None) -> pa.Table:
    """One year's rows in ``embedding_schema(dim)``."""
    n, dim = vectors.shape
    spatial = spatial or _spatial_block(cells)
    t_start, t_end = _windows(n, year, window_days)
    keys = [hashlib.sha256(f"{MODEL}/{c}/{year}".encode()).hexdigest() for c in cells]
    columns = {
        "key": pa.array(keys), "model": pa.array([MODEL] * n), "model_config": pa.array(["{}"] * n),
        **spatial,
        "t_start": t_start, "t_end": t_end,
        "year": pa.array([year] * n, pa.int16()), "pooling": pa.array(["mean"] * n),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim),
        "grid": pa.nulls(n, pa.list_(pa.float32())),
        "grid_shape": pa.nulls(n, pa.list_(pa.int32(), 3)),
        "grid_crs": pa.nulls(n, pa.string()),
        "grid_transform": pa.nulls(n, pa.list_(pa.float64(), 6)),
        "meta": pa.array(["{}"] * n),
        "created_at": pa.array([dt.datetime.now(dt.timezone.utc)] * n, pa.timestamp("us", tz="UTC")),
    }
    schema = embedding_schema(dim)
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def write_synthetic(store: EmbeddingStore, table_name: str, parent: str, res: int, years: list[int],
                    dim: int, seed: int = 0, window_days: int | None = None) -> np.ndarray:
    """Create ``table_name`` with one commit per year; returns the vectors in row order."""
    cells = synthetic_cells(parent, res)
    vectors = synthetic_vectors(cells, years, dim, seed)
    spatial = _spatial_block(cells)
    table = store.ensure_table(table_name, dim)
    for i, year in enumerate(years):
        table.add(synthetic_table(cells, year, vectors[i * len(cells):(i + 1) * len(cells)], spatial, window_days))
    return vectors
