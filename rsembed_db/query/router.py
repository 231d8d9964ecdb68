"""Exact or ANN: choose the route of a search from the estimated number of matching rows.

LanceDB's ANN with a prefilter only ranks the matching rows that lie in the probed IVF
partitions. When a filter keeps few rows, the probed partitions hold few or none of
the true neighbours, so it returns fewer than k rows or the wrong ones (measured on
1M rows, IVF_PQ, nprobes 20: recall@10 0.85 at 0.01 % selectivity; IVF_RQ: 0.54 and
only 62 % of k filled). The matching rows of a spatial filter are also clustered in
vector space (one landscape), often far from the query: then the partitions nearest the
query hold almost none of them (10M rows, 2 424 partitions, a 1 % polygon: recall@10
0.87, some queries 0.0, with ~2 000 candidates). An exact (flat) scan of the filtered
subset costs time in proportion to the rows it keeps and is always right (1M x 128-d,
2 cores: 2 ms at 1 000 rows, 13 ms at 32 000; 10M rows: 19 ms at 29 000, 141 ms at
100 000, 495 ms at 1 000 000). So:

- exact when the table has no vector index, the index was built for another metric,
  the caller forces it, the table has at most ``EXACT_MAX_ROWS`` rows, or a filter
  keeps at most ``exact_max_rows(rows)`` rows: 80 000, or 3 % of a table of more than
  2.7M rows (10M rows: 300 000). At 1M rows a 3 % / 5 % bbox took 25 / 34 ms exactly
  and 52 / 38 ms by ANN with the budget below;
- otherwise ANN with the prefilter, probing enough partitions that about
  ``ANN_MIN_CANDIDATES`` matching rows would be examined if they were spread evenly
  (never fewer than ``ANN_BASE_NPROBES``; an unfiltered search probes the base number),
  re-ranked on the full vectors (``refine_factor``). 40 000 candidates gave recall@10
  1.0 / 0.99 / 1.0 on the 10M table's 1 % polygon, 10 % bbox and 10 % polygon filters,
  where 2 000 gave 0.87 / 0.97 / 0.975; at 1M rows 1.0 at 3-10 % bboxes, where 2 000
  gave 0.92-0.985 (some queries 0.1; docs/query.md).
  If it still returns fewer rows than asked, search.py reruns it exactly.
  A prefilter keeping more than ``SCAN_FILTER_SHARE`` of the rows is evaluated by
  scanning its columns, not from the scalar indexes: the index answers in proportion to
  the rows it keeps, the scan in proportion to the table, and they cross at ~4-5 % (10M
  rows: a bbox keeping 20 % listed in 129 against 264 ms, the ANN search under it 144
  against 248 ms; keeping 1.6 %: 105 against 72 ms; 1M rows: 6.6 %, 11 against 15 ms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rsembed_db.query.profile import TableProfile

EXACT_MAX_ROWS = 25_000  # tables up to this size are searched exactly
EXACT_MAX_SHARE = 0.03  # filtered searches: exact up to this share of a large table's rows
ANN_BASE_NPROBES = 20
ANN_MIN_CANDIDATES = 40_000
SCAN_FILTER_SHARE = 0.05  # ANN prefilters keeping more of the rows: evaluated by a scan
REFINE_FACTOR = {"IVF_PQ": 10, "IVF_RQ": 2, "IVF_HNSW_SQ": 2}  # at 128-d; see refine_factor()
MAX_REFINE_FACTOR = 40


def refine_factor(index_type: str, dim: int) -> int:
    """Candidates re-ranked on full vectors, per result. A code of fewer dimensions carries
    fewer bits, so its distances are noisier: narrower vectors re-rank proportionally
    more (1-bit IVF_RQ on 100k x 32-d rows: recall@10 0.83 at factor 4, 0.99 at 16).
    4-bit IVF_RQ on 1M x 128-d rows, nprobes 20: recall@10 0.973 without re-ranking,
    1.000 at factor 2 and 4 (factor 4 costs ~0.4 ms more per query)."""
    base = REFINE_FACTOR.get(index_type, 10)
    return min(MAX_REFINE_FACTOR, base * max(1, math.ceil(128 / dim)))


def exact_max_rows(rows: int) -> int:
    """The most matching rows a filtered search over a table of ``rows`` rows runs exactly:
    3 % of the rows, and never fewer than twice the ANN candidate budget (with fewer
    matching rows that budget would probe at least half the partitions)."""
    return max(2 * ANN_MIN_CANDIDATES, int(EXACT_MAX_SHARE * rows))


@dataclass(frozen=True)
class Route:
    """How to run one search: ``kind`` exact / ann, ANN parameters, and why."""

    kind: str
    reason: str
    matched: int | None = None
    nprobes: int | None = None
    refine_factor: int | None = None
    scan_filter: bool = False  # evaluate the prefilter by scanning its columns (no scalar index)


def choose_route(profile: TableProfile, metric: str, count: Callable[[], int], force_exact: bool = False) -> Route:
    """The route for a search; ``count()`` estimates the matching rows (called only when
    the choice depends on it)."""
    index = profile.index
    if force_exact:
        return Route("exact", "exact search requested")
    if index is None:
        return Route("exact", "no vector index")
    if index.metric != metric:
        return Route("exact", f"the vector index is for {index.metric}, not {metric}")
    if profile.rows <= EXACT_MAX_ROWS:
        return Route("exact", f"the table has {profile.rows} rows (<= {EXACT_MAX_ROWS})")
    matched = count()
    limit = exact_max_rows(profile.rows)
    if matched < profile.rows and matched <= limit:
        return Route("exact", f"about {matched} rows match (<= {limit})", matched)
    selectivity = matched / max(profile.rows, 1)
    per_partition = max(index.indexed_rows / index.num_partitions, 1.0) * selectivity
    nprobes = ANN_BASE_NPROBES if selectivity >= 1 else \
        max(ANN_BASE_NPROBES, math.ceil(ANN_MIN_CANDIDATES / max(per_partition, 1e-9)))
    return Route("ann", f"about {matched} rows match", matched, min(nprobes, index.num_partitions),
                 refine_factor(index.index_type, profile.dim), SCAN_FILTER_SHARE < selectivity < 1)
