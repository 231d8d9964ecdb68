"""Per-table facts the router needs, cached per table version: row count, vector width,
the vector index, and a uniform sample of the scalar columns for estimating how many
rows a filter keeps (DuckDB runs the filter's SQL over the sample, ~1 ms).

Counting with LanceDB itself is exact but costs as much as the filtered scan (40 ms for
an 80 000-row match on 1M rows), so it is only the fallback when DuckDB cannot run the
SQL. The sample is refreshed when the row count moves by more than 10 %; a stale or
unlucky estimate can only send a query down the slower route, never a wrong one: the
ANN route falls back to exact search whenever it cannot fill k (see router.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsembed_db.query.filters import PolygonTest, tiling_of
from rsembed_db.query.hot import Fingerprint, fingerprint
from rsembed_db.query.where import scalar_columns
from rsembed_db.store.indexes import VectorIndexInfo, vector_index_info
from rsembed_db.store.lance_store import EmbeddingStore, sql_quote
from rsembed_db.store.schema import vector_dim

SAMPLE_ROWS = 8192
RESAMPLE_DRIFT = 0.10


@dataclass
class TableProfile:
    """Facts about one version of a table, and a LanceDB dataset handle at that version."""

    dataset: Any
    version: int
    rows: int
    dim: int
    index: VectorIndexInfo | None
    model: str | None = None  # the model of every row, when there is one
    spatial_index: bool = False  # an R-tree on a geoarrow.wkb ``geometry`` (filters.compile_filters)
    sample: pa.Table | None = None
    sampled_rows: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _duckdb: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)
    _extent: tuple[float, float] | None = field(default=None, repr=False)
    _window: tuple[int | None] | None = field(default=None, repr=False)
    _tilings: frozenset[str] | None = field(default=None, repr=False)
    _matches_all: dict[str, bool] = field(default_factory=dict, repr=False)
    _fragments: Fingerprint | None = field(default=None, repr=False)

    def footprint_extent(self) -> tuple[float, float]:
        """The widest and the tallest footprint bbox, in degrees (read on first use): a
        footprint covering a point has its centre within that distance of the point, so
        a point lookup is two narrow ranges on the indexed ``lon``/``lat`` columns."""
        with self._lock:
            if self._extent is None:
                boxes = self.dataset.to_table(columns=["minlon", "minlat", "maxlon", "maxlat"])
                width = pc.max(pc.subtract(boxes["maxlon"], boxes["minlon"])).as_py()
                height = pc.max(pc.subtract(boxes["maxlat"], boxes["minlat"])).as_py()
                self._extent = (width or 0.0, height or 0.0)
            return self._extent

    def tilings(self) -> frozenset[str]:
        """The tiling labels (``h3:9``, ``bbox``, ...) of the table's rows (read on first use)."""
        with self._lock:
            if self._tilings is None:
                kinds = self.dataset.to_table(columns=["spatial_kind", "h3_res"])
                pairs = kinds.group_by(["spatial_kind", "h3_res"]).aggregate([]).to_pylist()
                self._tilings = frozenset(tiling_of(p["spatial_kind"], p["h3_res"]) for p in pairs)
            return self._tilings

    def fragments(self) -> Fingerprint:
        """The version's data files (``hot.fingerprint``), read on first use."""
        if self._fragments is None:
            self._fragments = fingerprint(self.dataset)
        return self._fragments

    def matches_all(self, sql: str) -> bool:
        """Whether every row passes ``sql`` (counted exactly once per version: an indexed
        equality costs well under a millisecond)."""
        with self._lock:
            known = self._matches_all.get(sql)
        if known is None:
            known = self.dataset.count_rows(filter=sql) == self.rows
            with self._lock:
                self._matches_all[sql] = known
        return known

    def max_window_days(self) -> int | None:
        """The longest ``t_end - t_start`` of any row, in days (read on first use), or None
        when some row has an end but no start (then no lower bound on ``t_start`` follows
        from ``t_end > start``). See ``filters.compile_filters``."""
        with self._lock:
            if self._window is None:
                windows = self.dataset.to_table(columns=["t_start", "t_end"], filter="t_end IS NOT NULL")
                if windows["t_start"].null_count:
                    self._window = (None,)
                else:
                    starts = windows["t_start"].cast(pa.int32()).to_numpy()
                    ends = windows["t_end"].cast(pa.int32()).to_numpy()
                    self._window = (int((ends - starts).max(initial=0)),)
            return self._window[0]

    def estimate(self, sql: str | None, polygon: PolygonTest | None = None) -> int:
        """Rows of the table matching ``sql`` (None: all), estimated from the sample
        (taken on first use); with ``polygon``, the sample rows it may keep
        (``PolygonTest.bounds_mask``)."""
        dataset = self.dataset
        if sql is None:
            return self.rows
        with self._lock:  # only the first call per profile loads; queries then run side by side
            if self.sample is None:
                self.sample, self.sampled_rows = _sample(dataset, self.rows), self.rows
            if self._duckdb is None:
                self._duckdb = duckdb.connect(config={"threads": 1})  # ~1 ms queries: no parallelism
                self._duckdb.register("sample_arrow", self.sample)  # a table, not a view: cursors see it
                self._duckdb.execute("CREATE TABLE sample AS SELECT * FROM sample_arrow")
                self._duckdb.unregister("sample_arrow")
            connection = self._duckdb
        try:
            with connection.cursor() as cursor:  # one cursor per call: threads do not serialise
                if polygon is None:
                    row = cursor.execute(f"SELECT count(*) FROM sample WHERE {sql}").fetchone()
                    hits = row[0] if row is not None else None
                else:
                    kept = cursor.sql(f"SELECT {', '.join(polygon.bounds_columns)} FROM sample WHERE {sql}")
                    hits = int(polygon.bounds_mask(kept.to_arrow_table()).sum())
        except duckdb.Error:
            hits = None
        if hits is None:  # SQL DuckDB does not take: count exactly with LanceDB
            return dataset.count_rows(filter=sql)
        if self.sample.num_rows >= self.rows:
            return int(hits)
        return int(round(hits * self.rows / self.sample.num_rows))


def _sample(dataset, rows: int) -> pa.Table:
    """A uniform sample of the scalar columns (the whole table when small)."""
    columns = [c for c in scalar_columns() if c in dataset.schema.names]
    if rows <= SAMPLE_ROWS:
        return dataset.to_table(columns=columns)
    picks = np.sort(np.random.default_rng(rows).choice(rows, SAMPLE_ROWS, replace=False))
    return dataset.take(picks, columns=columns)


def _has_rtree(dataset) -> bool:
    return any(idx["fields"] == ["geometry"] and idx["type"] == "RTree" for idx in dataset.list_indices())


def _single_model(dataset, rows: int) -> str | None:
    """The ``model`` value shared by every row (tables hold one model variant), else None.
    Results then need not read it: one column fewer per hit (~1.3 ms for k=10)."""
    if rows == 0:
        return None
    model = dataset.take([0], columns=["model"])["model"][0].as_py()
    if model is None or dataset.count_rows(filter=f"model != {sql_quote([model])} OR model IS NULL"):
        return None
    return model


_CACHE: OrderedDict[tuple[str, str], TableProfile] = OrderedDict()  # (store, table), recently used last
_CACHE_LOCK = threading.Lock()
MAX_PROFILES = 64  # tables profiled at once per process (a sample is ~1 MB)


def table_profile(store: EmbeddingStore, name: str) -> TableProfile:
    """The profile of the latest version of table ``name`` (``store.dataset``), computed
    once per version; the sample survives versions while the row count stays close."""
    dataset = store.dataset(name)  # NotFound when absent
    key = (store.uri, name)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
    if cached is not None and cached.version == dataset.version:
        return cached
    rows = dataset.count_rows()
    sample, sampled_rows = None, 0  # reuse the cached sample while the row count drifts little
    if cached is not None and cached.sample is not None \
            and abs(rows - cached.sampled_rows) <= RESAMPLE_DRIFT * max(cached.sampled_rows, 1):
        sample, sampled_rows = cached.sample, cached.sampled_rows
    profile = TableProfile(dataset, dataset.version, rows, vector_dim(dataset.schema),
                           vector_index_info(store.table(name)), _single_model(dataset, rows),
                           _has_rtree(dataset), sample, sampled_rows)
    with _CACHE_LOCK:
        _CACHE[key] = profile
        _CACHE.move_to_end(key)
        while len(_CACHE) > MAX_PROFILES:
            _CACHE.popitem(last=False)
    return profile
