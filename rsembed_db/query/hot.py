"""Hot vectors: a table's vectors held in memory for the exact route.

An exact search over the rows a filter keeps reads each kept row's vector from Lance, a
random access per row: ~40 ms for 10 000 rows scattered over a 1M-row table (a one-month
time window), where a numpy product over the same rows held in memory takes ~1 ms. So a
process may keep tables' vectors in memory, within a budget (``configure(megabytes)``;
``$RSEMBED_SEARCH_CACHE_MB``; 0, the library's and the CLI's default, keeps none; the
service keeps up to ``ServiceSettings.search_cache_mb``).

Lance stays the source of truth and the fallback. A copy is tied to the table's data
files (fragment ids and their metadata, deletions included): a search uses it only when
the table's latest version has exactly those files, else it runs on Lance while the copy
is refreshed in the background, reading only the fragments added since (appends) or the
whole table (after a compaction, delete or update). Filters are still answered by Lance's
scalar indexes (row addresses), except the time window and a polygon's test on the row
centres: the copy holds ``t_start`` / ``t_end`` because on Lance the overlap test reads
each candidate's ``t_end``, and ``lon`` / ``lat`` because the polygon test reads every
centre in the polygon's bbox (211,725 rows of a 1M-row table: 27 ms from Lance, 4-6 ms in
memory, the raster built). Tables of at least ``hot_ann.ANN_MIN_ROWS`` rows also get an
HNSW graph for unfiltered searches (``hot_ann``), built or read after the copy is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from rsembed_db.errors import SpecError
from rsembed_db.query import hot_ann
from rsembed_db.query.distances import distances, smallest

if TYPE_CHECKING:
    from rsembed_db.query.filters import PolygonTest

ENV_BUDGET = "RSEMBED_SEARCH_CACHE_MB"

Fingerprint = tuple[tuple[int, str], ...]


def fingerprint(dataset) -> Fingerprint:
    """The table's data files: each fragment's id and metadata (data files, deletions)."""
    return tuple((f.fragment_id, json.dumps(f.metadata.to_json(), sort_keys=True, default=str))
                 for f in dataset.get_fragments())


EPOCH = dt.date(1970, 1, 1)
BYTES_PER_ROW = 8 + 4 + 4 + 4 + 8 + 8  # address, norm, t_start, t_end, lon, lat (+ 4 per dimension)


@dataclass(frozen=True)
class HotVectors:
    """Every live row's vector, ordered by row address, with its norm, its window
    (``t_start`` / ``t_end`` as days since 1970) and its centre (``lon`` / ``lat``,
    degrees), NaN when null: comparisons with a null are false, as in SQL."""

    fragments: Fingerprint
    addresses: np.ndarray  # uint64, ascending
    vectors: np.ndarray  # (N, D) float32
    norms: np.ndarray  # (N,) float32
    t_start: np.ndarray  # (N,) float32 days
    t_end: np.ndarray  # (N,) float32 days
    lon: np.ndarray  # (N,) float64 degrees
    lat: np.ndarray  # (N,) float64 degrees
    ann: Any = None  # an HNSW graph over the vectors (``hot_ann``), once built

    @property
    def nbytes(self) -> int:
        arrays = sum(a.nbytes for a in (self.addresses, self.vectors, self.norms, self.t_start, self.t_end,
                                        self.lon, self.lat))
        return arrays + (hot_ann.graph_bytes(*self.vectors.shape) if self.ann is not None else 0)

    def ann_nearest(self, query: np.ndarray, metric: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        """As ``nearest`` over all rows, the candidates proposed by the HNSW graph (cosine)
        and re-ranked exactly."""
        return self.nearest(query, np.sort(hot_ann.candidates(self.ann, query, count)), metric, count)

    def in_window(self, positions: np.ndarray | None, start: dt.date | None, end: dt.date | None) -> np.ndarray:
        """The ``positions`` (None: all rows) whose window overlaps ``[start, end)``:
        ``t_end > start AND t_start < end``, either bound open."""
        t_start = self.t_start if positions is None else self.t_start[positions]
        t_end = self.t_end if positions is None else self.t_end[positions]
        keep = np.ones(len(t_start), bool)
        if start is not None:
            keep &= t_end > (start - EPOCH).days
        if end is not None:
            keep &= t_start < (end - EPOCH).days
        return np.flatnonzero(keep) if positions is None else positions[keep]

    def in_polygon(self, positions: np.ndarray | None, test: PolygonTest) -> np.ndarray:
        """The ``positions`` (None: all rows) whose centre ``test`` (a ``centre`` polygon)
        keeps: the polygon's bbox first, then the exact test on the rows inside it."""
        lon = self.lon if positions is None else self.lon[positions]
        lat = self.lat if positions is None else self.lat[positions]
        minlon, minlat, maxlon, maxlat = test.polygon.bounds
        candidates = np.flatnonzero((lon >= minlon) & (lon <= maxlon) & (lat >= minlat) & (lat <= maxlat))
        kept = candidates[test.contains(lon[candidates], lat[candidates])]
        return kept if positions is None else positions[kept]

    def positions(self, addresses: np.ndarray) -> np.ndarray | None:
        """Positions of ``addresses`` in the copy, or None if one is not in it."""
        found = np.searchsorted(self.addresses, addresses)
        if found.size and (found.max() >= len(self.addresses) or (self.addresses[found] != addresses).any()):
            return None
        return found

    def nearest(self, query: np.ndarray, positions: np.ndarray | None, metric: str,
                count: int) -> tuple[np.ndarray, np.ndarray]:
        """Row addresses and distances (LanceDB's: cosine ``1 - cos``, l2 squared, dot
        ``1 - a.b``) of the ``count`` rows nearest to ``query``, nearest first, among
        ``positions`` (None: all rows)."""
        vectors = self.vectors if positions is None else self.vectors[positions]
        norms = self.norms if positions is None else self.norms[positions]
        dist = distances(vectors, norms, query, metric)
        top = smallest(dist, count)
        chosen = top if positions is None else positions[top]
        return self.addresses[chosen], dist[top]


def _read(dataset, fragments) -> dict[str, np.ndarray]:
    """Row addresses, vectors, windows and centres of ``fragments`` (None: all)."""
    parts: dict[str, list[np.ndarray]] = {"addresses": [], "vectors": [], "t_start": [], "t_end": [], "lon": [],
                                          "lat": []}
    dim = dataset.schema.field("vector").type.list_size
    scanner = dataset.scanner(columns=["vector", "t_start", "t_end", "lon", "lat"], with_row_address=True,
                              fragments=fragments)
    for batch in scanner.to_batches():
        parts["addresses"].append(batch.column("_rowaddr").to_numpy())
        values = batch.column("vector").flatten().to_numpy(zero_copy_only=False)  # respects slicing
        parts["vectors"].append(values.reshape(-1, dim).astype(np.float32, copy=False))
        for name in ("t_start", "t_end"):
            days = batch.column(name).cast(pa.int32()).to_numpy(zero_copy_only=False)  # float NaN when null
            parts[name].append(days.astype(np.float32))
        for name in ("lon", "lat"):
            parts[name].append(batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64))  # NaN when null
    if not parts["addresses"]:
        return {"addresses": np.zeros(0, np.uint64), "vectors": np.zeros((0, dim), np.float32),
                "t_start": np.zeros(0, np.float32), "t_end": np.zeros(0, np.float32),
                "lon": np.zeros(0, np.float64), "lat": np.zeros(0, np.float64)}
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def load(dataset, previous: HotVectors | None = None) -> HotVectors:
    """The copy of ``dataset``'s rows; from ``previous`` plus the fragments added since,
    when its fragments are unchanged (an append), else read whole."""
    files = fingerprint(dataset)
    if previous is not None and files[:len(previous.fragments)] == previous.fragments:
        added = _read(dataset, [dataset.get_fragment(fid) for fid, _ in files[len(previous.fragments):]])
        added["norms"] = np.linalg.norm(added["vectors"], axis=1).astype(np.float32)
        columns = {name: np.concatenate([getattr(previous, name), values]) for name, values in added.items()}
    else:
        columns = _read(dataset, None)
        columns["norms"] = np.linalg.norm(columns["vectors"], axis=1).astype(np.float32)
    addresses = columns["addresses"]
    if addresses.size > 1 and not (np.diff(addresses.astype(np.int64)) > 0).all():
        order = np.argsort(addresses, kind="stable")
        columns = {name: values[order] for name, values in columns.items()}
    return HotVectors(files, **columns)


class HotCache:
    """The copies this process keeps, least recently used evicted beyond ``budget`` bytes;
    refreshed in one background thread per table."""

    def __init__(self, budget_bytes: int | None) -> None:
        self._budget = budget_bytes  # None: $RSEMBED_SEARCH_CACHE_MB, read on first use
        self._copies: OrderedDict[tuple[str, str], HotVectors] = OrderedDict()
        self._loading: set[tuple[str, str]] = set()
        self.last_error: str | None = None  # of the last failed background refresh
        self._lock = threading.Lock()

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = _budget_from_env()
        return self._budget

    @budget.setter
    def budget(self, value: int) -> None:
        self._budget = value

    def fresh(self, key: tuple[str, str], dataset, files: Fingerprint) -> HotVectors | None:
        """The copy for ``key`` if it holds exactly the rows of ``dataset`` (whose data files
        are ``files``); otherwise None, and a refresh starts in the background (when the
        table can fit the budget)."""
        if self.budget <= 0:
            return None
        with self._lock:
            copy = self._copies.get(key)
            if copy is not None and copy.fragments == files:
                self._copies.move_to_end(key)
                return copy
            start = key not in self._loading and self._fits(dataset)
            if start:
                self._loading.add(key)
        if start:
            threading.Thread(target=self._refresh, args=(key, dataset, copy), daemon=True,
                             name=f"hot-vectors-{key[1]}").start()
        return None

    def warm(self, key: tuple[str, str], dataset, ann: bool = True) -> HotVectors | None:
        """Load (or refresh) the copy for ``key`` now, with its HNSW graph when ``ann`` and
        the table is large enough; None when it does not fit the budget."""
        with self._lock:
            copy = self._copies.get(key)
        files = fingerprint(dataset)
        if copy is not None and copy.fragments == files and (copy.ann is not None or not ann
                                                              or not _wants_ann(copy.vectors.shape[0])):
            return copy
        if self.budget <= 0 or not self._fits(dataset):
            return None
        fresh = copy if copy is not None and copy.fragments == files else load(dataset, copy)
        if ann:
            fresh = self._with_ann(key, fresh, copy)
        return self._store(key, fresh)

    def _fits(self, dataset) -> bool:
        rows, dim = dataset.count_rows(), dataset.schema.field("vector").type.list_size
        graph = hot_ann.graph_bytes(rows, dim) if _wants_ann(rows) else 0
        return rows * (dim * 4 + BYTES_PER_ROW) + graph <= self.budget

    def _with_ann(self, key: tuple[str, str], copy: HotVectors, previous: HotVectors | None) -> HotVectors:
        """``copy`` with its HNSW graph (read from beside the table, extended from
        ``previous``'s after an append, or built), when faiss is there and the table large."""
        if not _wants_ann(len(copy.addresses)):
            return copy
        extend = None  # the previous graph when ``copy`` only appends to its rows
        if previous is not None and copy.fragments[:len(previous.fragments)] == previous.fragments:
            extend = previous.ann
        graph = hot_ann.load_or_build(hot_ann.path_for(key[0], key[1], copy.fragments), copy.vectors, copy.norms,
                                      extend)
        return replace(copy, ann=graph)

    def _refresh(self, key: tuple[str, str], dataset, previous: HotVectors | None) -> None:
        try:
            copy = self._store(key, load(dataset, previous))  # the exact route can use it now
            if copy is not None and _wants_ann(len(copy.addresses)):
                self._store(key, self._with_ann(key, copy, previous))
        except Exception as exc:  # noqa: BLE001 - a cache: searches stay on Lance; the next one retries
            self.last_error = f"{key[1]}: {exc}"
        finally:
            with self._lock:
                self._loading.discard(key)

    def _store(self, key: tuple[str, str], copy: HotVectors) -> HotVectors | None:
        with self._lock:
            self._copies.pop(key, None)
            if copy.nbytes > self.budget:
                return None
            self._copies[key] = copy
            while sum(c.nbytes for c in self._copies.values()) > self.budget:
                self._copies.popitem(last=False)
            return copy

    def clear(self) -> None:
        with self._lock:
            self._copies.clear()


def _wants_ann(rows: int) -> bool:
    return rows >= hot_ann.ANN_MIN_ROWS and hot_ann.available()


def _budget_from_env() -> int:
    raw = os.environ.get(ENV_BUDGET, "0")
    try:
        megabytes = float(raw)
    except ValueError:
        raise SpecError(ENV_BUDGET, f"must be a number of megabytes, got {raw!r}") from None
    return max(int(megabytes * 1024 * 1024), 0)


CACHE = HotCache(None)


def configure(megabytes: float) -> None:
    """Keep up to ``megabytes`` of tables' vectors in memory in this process (0: none)."""
    CACHE.budget = max(int(megabytes * 1024 * 1024), 0)
    if CACHE.budget == 0:
        CACHE.clear()


def warm(store, name: str, ann: bool = True) -> HotVectors | None:
    """Load (or refresh) table ``name``'s copy now, as searches of it would in the
    background (with its HNSW graph when ``ann``); None when the budget is 0 or too small
    for the table."""
    return CACHE.warm((store.uri, name), store.dataset(name), ann)
