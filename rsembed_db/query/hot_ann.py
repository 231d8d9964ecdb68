"""An in-memory HNSW graph over a hot copy's vectors (``query.hot``), for unfiltered
cosine searches: faiss (optional: the ``fast`` extra), persisted beside the table.

The graph (faiss ``IndexHNSWSQ``: 8-bit codes of the unit vectors, M=16) proposes
``CANDIDATES`` x k rows; they are re-ranked exactly on the copy's full vectors, so
distances are exact and recall is the graph's recall at that depth (1M x 128-d on
2 cores: 0.1 ms a query where LanceDB's IVF takes 4-10 ms). Building costs minutes per
million rows on 2 cores, so the graph is written to ``<db>/_rsembed_hot/<table>/`` and
read back by the next process; after an append it is copied and extended with the new
rows, after any other change rebuilt. It belongs to the copy's data files like the copy
itself: a stale graph is never used (the search runs on LanceDB's index meanwhile).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

ANN_MIN_ROWS = 25_000  # smaller tables are searched exactly anyway (router.EXACT_MAX_ROWS)
HNSW_M = 16
EF_CONSTRUCTION = 40
EF_SEARCH = 64
CANDIDATES = 4  # graph candidates per wanted row, re-ranked exactly on the full vectors
TRAIN_ROWS = 65_536  # rows that set the 8-bit code ranges
DIRECTORY = "_rsembed_hot"


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def available() -> bool:
    """Whether faiss is installed (``pip install rsembed-db[fast]``)."""
    return _faiss() is not None


def graph_bytes(rows: int, dim: int) -> int:
    """Memory of a graph over ``rows`` vectors of width ``dim``: codes + level-0 links."""
    return rows * (dim + 2 * HNSW_M * 4)


def _unit(vectors: np.ndarray, norms: np.ndarray) -> np.ndarray:
    return vectors / np.where(norms > 0, norms, 1)[:, None]


def path_for(uri: str, table: str, files: tuple) -> Path | None:
    """Where the graph of ``table`` at data files ``files`` is kept (None: not a local store)."""
    if "://" in uri:
        return None
    digest = hashlib.sha256(repr(files).encode()).hexdigest()[:20]
    return Path(uri) / DIRECTORY / table / f"{digest}.hnsw"


def build(vectors: np.ndarray, norms: np.ndarray, previous: Any = None) -> Any:
    """The graph over ``vectors`` (their positions are its ids); from ``previous`` (a graph
    over the first rows) plus the rest when given."""
    faiss = _faiss()
    unit = _unit(vectors, norms)
    if previous is not None:
        graph = faiss.clone_index(previous)  # searches may still run on ``previous``
        graph.add(unit[graph.ntotal:])
        return graph
    graph = faiss.IndexHNSWSQ(unit.shape[1], faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    picks = np.random.default_rng(0).choice(len(unit), min(TRAIN_ROWS, len(unit)), replace=False)
    graph.train(unit[np.sort(picks)])
    graph.add(unit)
    return graph


def load_or_build(path: Path | None, vectors: np.ndarray, norms: np.ndarray, previous: Any = None) -> Any:
    """The graph kept at ``path`` when it covers exactly these rows, else ``build``
    (written to ``path``, replacing the table's older graphs)."""
    faiss = _faiss()
    if path is not None and path.exists():
        graph = faiss.read_index(str(path))
        if graph.ntotal == len(vectors):
            return graph
    usable = previous is not None and previous.ntotal <= len(vectors)
    graph = build(vectors, norms, previous if usable else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        faiss.write_index(graph, str(partial))
        partial.replace(path)
        for old in path.parent.glob("*.hnsw"):
            if old != path:
                old.unlink(missing_ok=True)
    return graph


def candidates(graph: Any, query: np.ndarray, count: int) -> np.ndarray:
    """Positions of about ``CANDIDATES * count`` rows nearest to ``query`` by cosine."""
    faiss = _faiss()
    faiss.omp_set_num_threads(1)  # this thread's searches: one query needs no team of OpenMP
    #                               threads, whose spinning after each call slows whatever runs next
    wanted = max(CANDIDATES * count, 40)
    params = faiss.SearchParametersHNSW()
    params.efSearch = max(EF_SEARCH, wanted)
    norm = np.linalg.norm(query)
    unit = (query / norm if norm > 0 else query).astype(np.float32)[None]
    _, ids = graph.search(unit, wanted, params=params)
    return ids[0][ids[0] >= 0]
