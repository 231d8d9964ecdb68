"""Index management: scalar indexes for the filters, a vector index once a table is large
enough, folding new rows into existing indexes, and ``optimize`` (compaction + cleanup).

Rows written after an index was built are searched anyway: LanceDB answers a vector
query from the index plus a flat scan of unindexed rows (unless ``fast_search``, which
we never set), and scalar filters scan unindexed fragments. Folding only restores speed.

Every build, fold and compaction retries on a commit conflict (``store.commit``), after
re-reading the table: an index another writer built meanwhile is not built again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lancedb.index import Bitmap, BTree, IvfHnswSq, IvfPq, IvfRq

from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice
from rsembed_db.store.commit import retry_on_conflict
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.schema import has_geoarrow_footprint, vector_dim
from rsembed_db.store.storage import index_dirs_on_disk, referenced_index_dirs

BTREE_COLUMNS = ("key", "h3", "t_start", "t_end", "lon", "lat", "minlon", "minlat", "maxlon", "maxlat")
BITMAP_COLUMNS = ("model", "model_config", "spatial_kind", "year", "h3_res")  # few distinct values
VECTOR_INDEX_TYPES = {"IVF_PQ": IvfPq, "IVF_RQ": IvfRq, "IVF_HNSW_SQ": IvfHnswSq}
INDEX_METRICS = ("cosine", "l2", "dot")
PQ_MIN_ROWS = 256  # PQ trains 256 centroids per sub-vector
RQ_BITS = 4  # bits per dimension of IVF_RQ codes: 1 bit lost recall on 32-d vectors (docs/query.md)
DEFAULT_VECTOR_MIN_ROWS = 20_000
# Reading the result columns of k hits is a random access per hit per fragment touched:
# 1.0 / 2.3 / 3.0 ms for k=10 at 1 / 9 / 26 fragments of a 1M-row table. An ingest commits
# a fragment every few hundred rows, so ``ensure_indexes`` merges them past this many.
COMPACT_ABOVE_FRAGMENTS = 16
ENV_MIN_ROWS = "RSEMBED_VECTOR_INDEX_MIN_ROWS"
ENV_INDEX_TYPE = "RSEMBED_VECTOR_INDEX_TYPE"


@dataclass(frozen=True)
class IndexPolicy:
    """When and how to build the vector index.

    ``vector_min_rows``: build it once the table holds this many rows (never below 256:
    PQ training needs them; below the default 20 000 a flat scan is already fast).
    ``index_type``: IVF_RQ (default: best recall per probe, see docs/query.md), IVF_PQ
    (half the build time, a tenth of the size, needs more re-ranking) or IVF_HNSW_SQ.
    ``metric``: the index's distance; searches with another metric are exact (flat).
    """

    vector_min_rows: int = DEFAULT_VECTOR_MIN_ROWS
    index_type: str = "IVF_RQ"
    metric: str = "cosine"

    def __post_init__(self) -> None:
        if isinstance(self.vector_min_rows, bool) or not isinstance(self.vector_min_rows, int) \
                or self.vector_min_rows < PQ_MIN_ROWS:
            raise SpecError("vector_min_rows", f"must be an integer >= {PQ_MIN_ROWS}, got {self.vector_min_rows!r}")
        require_choice("index_type", self.index_type, tuple(VECTOR_INDEX_TYPES))
        require_choice("metric", self.metric, INDEX_METRICS)

    @classmethod
    def from_env(cls) -> "IndexPolicy":
        """Defaults, overridden by ``$RSEMBED_VECTOR_INDEX_MIN_ROWS`` / ``$RSEMBED_VECTOR_INDEX_TYPE``."""
        raw = os.environ.get(ENV_MIN_ROWS)
        try:
            min_rows = int(raw) if raw else DEFAULT_VECTOR_MIN_ROWS
        except ValueError as exc:
            raise SpecError(ENV_MIN_ROWS, f"must be an integer, got {raw!r}") from exc
        return cls(min_rows, os.environ.get(ENV_INDEX_TYPE, cls.index_type))


@dataclass(frozen=True)
class VectorIndexInfo:
    """The vector index of a table as LanceDB reports it."""

    name: str
    index_type: str
    metric: str
    indexed_rows: int
    unindexed_rows: int
    num_partitions: int


@dataclass
class IndexReport:
    """What ``ensure_indexes`` / ``optimize_table`` did."""

    created: list[str] = field(default_factory=list)
    folded_rows: int = 0
    fragments_before: int = 0
    fragments_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    versions_before: int = 0
    versions_after: int = 0
    superseded_indexes: int = 0  # index directories only older, retained versions still use


def _indexed_columns(table) -> set[str]:
    """Single-column indexes, read through Lance: LanceDB's own list leaves out index types
    its bundled Lance does not know (the R-tree)."""
    return {idx["fields"][0] for idx in table.to_lance().list_indices() if len(idx["fields"]) == 1}


def vector_index_info(table) -> VectorIndexInfo | None:
    """The table's vector index, or None."""
    for idx in table.list_indices():
        if idx.columns == ["vector"]:
            stats = table.index_stats(idx.name)
            os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # else a warning per call
            detail = table.to_lance().stats.index_stats(idx.name)["indices"][0]
            return VectorIndexInfo(idx.name, stats.index_type, stats.distance_type, stats.num_indexed_rows,
                                   stats.num_unindexed_rows, int(detail.get("num_partitions") or 1))
    return None


def unindexed_rows(table) -> int:
    """The most rows any index of ``table`` does not cover yet."""
    return max((table.index_stats(idx.name).num_unindexed_rows for idx in table.list_indices()), default=0)


def build_vector_index(table, policy: IndexPolicy) -> None:
    """(Re)build the vector index with ``policy``'s type (IVF_PQ for IVF_RQ when the width
    is not a multiple of 8) and metric."""
    rows = table.count_rows()
    if rows < PQ_MIN_ROWS:
        raise SpecError("table", f"a vector index needs >= {PQ_MIN_ROWS} rows, the table has {rows}")
    index_type = policy.index_type
    if index_type == "IVF_RQ" and vector_dim(table.schema) % 8:
        index_type = "IVF_PQ"  # RaBitQ needs a width divisible by 8
    options = {"num_bits": RQ_BITS} if index_type == "IVF_RQ" else {}
    config = VECTOR_INDEX_TYPES[index_type](distance_type=policy.metric, **options)

    def build() -> None:
        table.checkout_latest()
        table.create_index("vector", config=config, replace=True)
    retry_on_conflict(build, f"building the vector index of {table.name!r}")


def _build_rtree(table) -> None:
    table.to_lance().create_scalar_index("geometry", "RTREE")  # LanceDB's create_index has no RTREE
    table.checkout_latest()


def _build_missing(table, column: str, build) -> bool:
    """Run ``build()`` unless ``column`` is indexed (re-read on each attempt); whether it ran."""
    def attempt() -> bool:
        table.checkout_latest()
        if column in _indexed_columns(table):
            return False
        build()
        return True
    return retry_on_conflict(attempt, f"building the {column} index of {table.name!r}")


def fold_new_rows(table) -> int:
    """Fold rows written since the indexes were built into them; the rows folded."""
    def attempt() -> int:
        table.checkout_latest()
        rows = unindexed_rows(table)
        if rows:
            table.to_lance().optimize.optimize_indices()
        return rows
    folded = retry_on_conflict(attempt, f"folding new rows into the indexes of {table.name!r}")
    table.checkout_latest()
    return folded


def ensure_indexes(table, policy: IndexPolicy | None = None) -> IndexReport:
    """Merge small fragments past ``COMPACT_ABOVE_FRAGMENTS``, create missing scalar
    indexes, the vector index once the table is large enough, and fold unindexed rows
    into existing indexes. Cheap when nothing is missing."""
    policy = policy or IndexPolicy.from_env()
    report = IndexReport(rows_before=table.count_rows())
    report.fragments_before = report.fragments_after = len(table.to_lance().get_fragments())
    if report.fragments_before > COMPACT_ABOVE_FRAGMENTS:
        report.fragments_after = _compact(table)
    have = _indexed_columns(table)
    for column in BTREE_COLUMNS + BITMAP_COLUMNS:
        config = BTree() if column in BTREE_COLUMNS else Bitmap()
        if column not in have and _build_missing(
                table, column, lambda c=column, k=config: table.create_index(c, config=k, replace=True)):
            report.created.append(column)
    if "geometry" not in have and has_geoarrow_footprint(table.schema) \
            and _build_missing(table, "geometry", lambda: _build_rtree(table)):
        report.created.append("geometry")
    if "vector" not in have and report.rows_before >= policy.vector_min_rows \
            and _build_missing(table, "vector", lambda: build_vector_index(table, policy)):
        report.created.append("vector")
    if have:
        report.folded_rows = fold_new_rows(table)
    report.rows_after = table.count_rows()
    return report


def _compact(table) -> int:
    """Merge small fragments (indexes are remapped, rows unchanged); the fragment count
    after. A commit conflict with another process's write leaves the table as it was:
    compaction only restores speed, the next ``ensure_indexes`` tries again."""
    try:
        table.to_lance().optimize.compact_files()
    except OSError:
        pass
    table.checkout_latest()
    return len(table.to_lance().get_fragments())


def index_table(store: EmbeddingStore, name: str, policy: IndexPolicy | None = None) -> IndexReport:
    """``ensure_indexes`` on a store's table, serialised with the store's other commits
    (concurrent index creation on one table is a commit conflict Lance does not retry)."""
    with store._write_lock:  # noqa: SLF001 - the store package's own commit lock
        return ensure_indexes(store.table(name), policy)


def optimize_table(table, retention: dt.timedelta = dt.timedelta(days=7),
                   storage_options: Mapping[str, str] | None = None) -> IndexReport:
    """Compact files, fold new rows into every index, and remove versions older than
    ``retention`` (the latest version is always kept).

    Lance removes an index's files with the last version that uses it: an index that
    folding or compaction superseded stays on disk while a retained older version still
    refers to it (``superseded_indexes``; ``retention`` 0 removes them all).
    """
    if retention < dt.timedelta(0):
        raise SpecError("retention_days", f"must be >= 0, got {retention}")
    report = IndexReport(rows_before=table.count_rows(), versions_before=len(table.list_versions()))
    report.folded_rows = unindexed_rows(table)

    def attempt() -> None:
        # Compaction and folding through Lance itself: LanceDB's bundled Lance skips compacting
        # a table with an index type it does not know (the R-tree on ``geometry``).
        table.checkout_latest()
        table.to_lance().optimize.compact_files()
        table.checkout_latest()
        table.to_lance().optimize.optimize_indices()
        table.checkout_latest()
        table.optimize(cleanup_older_than=retention)  # removes old versions (and what only they used)
    retry_on_conflict(attempt, f"optimizing {table.name!r}")
    table.checkout_latest()
    report.rows_after = table.count_rows()
    report.versions_after = len(table.list_versions())
    dataset = table.to_lance()
    report.superseded_indexes = len(index_dirs_on_disk(dataset, storage_options) - referenced_index_dirs(dataset))
    return report
