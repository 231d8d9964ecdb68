"""Polygon against bbox filters of the same share, with the previous polygon path as the
in-run baseline: p50 and recall@10 of ``query.search`` for a bbox and a diamond (half of
its bbox) centred on the table's median cell, each run with the current code and with the
code before the raster point test, the scanned wide prefilters, the numpy allow-list and
the test on the in-memory copy's centres.

    .venv/bin/python -m bench.polygon_filters --rows 10000000 --shares 0.0001,0.001,0.01,0.1
    .venv/bin/python -m bench.polygon_filters --rows 1000000 --cache-mb 1024   # the in-memory copy

"Before" is the current code with four knobs turned back, in the same process and turn
by turn with "now": no raster (``filters.MIN_POINTS`` out of reach: shapely alone), every
prefilter from the scalar indexes (``router.SCAN_FILTER_SHARE`` above 1), Lance's
``serialize_row_addrs`` for allow-lists, and a polygon over a table held in memory
(``--cache-mb``) listed from Lance's lon/lat rather than the copy's. The table is
``bench.router_budget``'s (built under ``--db`` when missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

import numpy as np
from lance.dataset import serialize_row_addrs

from bench.results import commit, finish
from bench.router_budget import centred_shapes, table
from bench.scale_10m import TABLE, _scaled
from bench.search_bench import interleaved, p50
from rsembed_db.query import filters, router
from rsembed_db.query import search as search_module
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.search import search

K = 10
NOW = {"MIN_POINTS": filters.MIN_POINTS, "SCAN_FILTER_SHARE": router.SCAN_FILTER_SHARE,
       "allowlist_bytes": search_module.allowlist_bytes, "_polygon_rows_hot": search_module._polygon_rows_hot}
BEFORE = {"MIN_POINTS": 10**15, "SCAN_FILTER_SHARE": 2.0,
          "allowlist_bytes": lambda addresses: serialize_row_addrs(addresses.tolist()),
          "_polygon_rows_hot": lambda hot, dataset, compiled, rest: search_module._polygon_rows(dataset, compiled)}


def run(store, vector: np.ndarray, where: SearchFilters, knobs: dict) -> list[str]:
    """The keys found with ``knobs`` (NOW or BEFORE) set; every run sets all four."""
    filters.MIN_POINTS = knobs["MIN_POINTS"]
    router.SCAN_FILTER_SHARE = knobs["SCAN_FILTER_SHARE"]
    search_module.allowlist_bytes = knobs["allowlist_bytes"]
    search_module._polygon_rows_hot = knobs["_polygon_rows_hot"]  # noqa: SLF001 - the knob under test
    return search(store, TABLE, SearchRequest(vector=vector, k=K, filters=where, columns=("lon", "lat"))).keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shares", default="0.0001,0.001,0.01,0.1")
    parser.add_argument("--queries", type=int, default=23)
    parser.add_argument("--cache-mb", type=float, default=0, help="hold the table in memory (query.hot), 0: none")
    parser.add_argument("--db", type=Path, help="database directory (default /tmp/rsembed_router_budget_<rows>)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    store, vectors = table(args.db or Path(f"/tmp/rsembed_router_budget_{args.rows}"), args.rows)
    if args.cache_mb:
        from rsembed_db.query import hot
        hot.configure(args.cache_mb)
        hot.warm(store, TABLE)
    keys, lon, lat, centre, shapes = centred_shapes(store)
    norms = np.linalg.norm(vectors, axis=1)
    queries = np.random.default_rng(2).choice(len(keys), args.queries, replace=False)
    memory = f", held in memory (`--cache-mb {args.cache_mb:g}`)" if args.cache_mb else ", on Lance"
    lines = [f"### {dt.date.today()}, commit {commit()}", "",
             f"{len(keys):,} rows x 128 float16{memory}, {args.queries} queries (p50 over the last "
             f"{args.queries - 3}), command: `python -m bench.polygon_filters --rows {args.rows} --shares {args.shares}"
             + (f" --cache-mb {args.cache_mb:g}`." if args.cache_mb else "`."), "",
             "| share | bbox before p50 ms (recall@10) | bbox now | polygon before | polygon now "
             "| polygon / bbox before | polygon / bbox now |", "|---|---|---|---|---|---|---|"]
    for share in (float(s) for s in args.shares.split(",")):
        cells, times = [], []
        for kind, shape in shapes.items():
            geom, mask = _scaled(shape, centre, int(share * len(keys)), lon, lat)
            where = SearchFilters(bbox=geom.bounds) if kind == "bbox" else SearchFilters(polygon=geom)
            inside = np.flatnonzero(mask)
            truths = [set(keys[inside[np.argsort(-(vectors[inside] @ vectors[i]) / norms[inside])[:K]]])
                      for i in queries]
            runs = interleaved([lambda i, knobs=knobs: run(store, vectors[i], where, knobs) for knobs in (BEFORE, NOW)],
                               queries)
            for spent, results in runs:
                recall = np.mean([len(t & set(r)) / K for t, r in zip(truths[3:], results)])
                cells.append(f"{p50(spent):.1f} ({recall:.3f})")
                times.append(p50(spent))
        lines.append(f"| {share:.2%} | " + " | ".join(cells)
                     + f" | {times[2] / times[0]:.2f}x | {times[3] / times[1]:.2f}x |")
        print(lines[-1], flush=True)
    finish("## Polygon against bbox filters (bench/polygon_filters.py)", __doc__, lines, load, not args.no_write)


if __name__ == "__main__":
    main()
