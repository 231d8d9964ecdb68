"""Search benchmark: latency and recall@10 of ``rsembed_db.query.search`` at several filter
selectivities on a generated table, against numpy exact search and LanceDB's default
query path, plus get-by-key. Writes its section of bench/RESULTS.md.

    .venv/bin/python bench/search_bench.py                  # 1M x 128, ~1-2 minutes on 2 cores
    .venv/bin/python bench/search_bench.py --rows 200000    # quicker

Data: ``rsembed_db.store.synthetic`` (H3 res-9 cells x years, vectors of intrinsic
dimension 16 mapped to ``--dim``). Queries are stored vectors of random rows; the truth
is numpy's exact cosine top-10 over the rows passing the same filter.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import h3
import numpy as np

from rsembed_db.query.filters import compile_filters
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.result import RESULT_COLUMNS, fetch_columns
from rsembed_db.query.search import search
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.indexes import IndexPolicy, build_vector_index, ensure_indexes, vector_index_info
from rsembed_db.store.synthetic import synthetic_cells, synthetic_vectors, write_synthetic

RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- search-bench:start -->", "<!-- search-bench:end -->"
PARENT = h3.latlng_to_cell(52.5, 12.8, 3)  # 117 649 res-9 cells
TABLE = "bench"
K = 10


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def build(path: Path, rows: int, dim: int, policy: IndexPolicy) -> tuple[EmbeddingStore, np.ndarray, dict]:
    store = EmbeddingStore(path)
    cells = synthetic_cells(PARENT, 9)
    years = list(range(2017, 2017 + math.ceil(rows / len(cells))))
    if store.has_table(TABLE):  # --db of an earlier run: same data, regenerated vectors only
        gen_s, vectors = 0.0, synthetic_vectors(cells, years, dim, seed=1)
    else:
        gen_s, vectors = timed(lambda: write_synthetic(store, TABLE, PARENT, 9, years, dim, seed=1))
    index_s, _ = timed(lambda: ensure_indexes(store.table(TABLE), policy))
    if vector_index_info(store.table(TABLE)).index_type != policy.index_type:  # reused db, other type
        index_s, _ = timed(lambda: build_vector_index(store.table(TABLE), policy))
    data = store.table(TABLE).to_lance().to_table(columns=["key", "lat", "year", "h3"])
    meta = {name: data[name].to_numpy(zero_copy_only=False) for name in ("key", "lat", "year", "h3")}
    meta.update(generate_s=gen_s, index_s=index_s)
    return store, vectors, meta


def lat_band(meta: dict, fraction: float, year: int) -> tuple[str, np.ndarray]:
    """A where-clause keeping ``fraction`` of all rows: a latitude band within one year."""
    lats = np.sort(meta["lat"][meta["year"] == year])
    count = max(int(round(fraction * len(meta["lat"]))), 1)
    first = min(len(lats) // 3, len(lats) - count - 1)
    low, high = float(lats[first]), float(lats[first + count])
    mask = (meta["year"] == year) & (meta["lat"] >= low) & (meta["lat"] < high)
    return f"year = {year} AND lat >= {low!r} AND lat < {high!r}", mask


def scenarios(meta: dict) -> list[tuple[str, SearchFilters, str | None, np.ndarray, tuple[str, ...]]]:
    """(name, our filters, the same filter as SQL for the baselines, mask, result columns)."""
    everything = np.ones(len(meta["key"]), bool)
    out = [("unfiltered", SearchFilters(), None, everything, RESULT_COLUMNS),
           ("unfiltered, lon/lat columns only", SearchFilters(), None, everything, ("lon", "lat"))]
    for fraction in (1e-4, 1e-3, 1e-2, 0.1):
        sql, mask = lat_band(meta, fraction, 2020)
        out.append((f"lat band, {fraction:.2%}", SearchFilters(where=sql), sql, mask, RESULT_COLUMNS))
    parent = h3.cell_to_parent(h3.int_to_str(int(meta["h3"][len(meta["h3"]) // 2])), 5)
    filters = SearchFilters(year=2019, h3_parent=parent)
    children = {h3.str_to_int(c) for c in h3.cell_to_children(parent, 9)}
    mask = (meta["year"] == 2019) & np.isin(meta["h3"], list(children))
    out.append(("H3 parent (res 5) + year", filters, compile_filters(filters).sql, mask, RESULT_COLUMNS))
    return out


def passes(fn, queries: np.ndarray) -> tuple[list[float], list]:
    """Run ``fn(vector_index)`` over every query: latencies (after 3 warm-ups) and outputs.
    One method per pass, so no method runs in the wake of another (OpenBLAS threads spin
    after numpy's matmul and would slow whatever follows)."""
    outputs = [timed(lambda i=i: fn(i)) for i in queries]
    return [t for t, _ in outputs[3:]], [out for _, out in outputs[3:]]


def measure(store, vectors, meta, queries: np.ndarray) -> list[dict]:
    table = store.table(TABLE)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    p50 = lambda xs: float(np.median(xs) * 1000)  # noqa: E731
    rows = []
    for name, filters, sql, mask, columns in scenarios(meta):
        def numpy_exact(i: int) -> set:  # the filter given as a boolean mask in RAM
            sub = np.nonzero(mask)[0] if sql else slice(None)
            scores = unit[sub] @ unit[i]
            top = np.argpartition(-scores, K)[:K] if len(scores) > K else np.arange(len(scores))
            return set(meta["key"][sub][top])

        def ours(i: int):
            return search(store, TABLE, SearchRequest(vector=vectors[i], k=K, filters=filters, columns=columns))

        def default(i: int) -> list:
            query = table.search(vectors[i]).metric("cosine").limit(K).select(fetch_columns(columns, None))
            return (query.where(sql) if sql else query).to_arrow()["key"].to_pylist()

        t_exact, truths = passes(numpy_exact, queries)
        t_ours, results = passes(ours, queries)
        t_default, defaults = passes(default, queries)
        expected = max(min(K, int(mask.sum())), 1)
        recall = lambda got: float(np.mean([len(t & set(g)) / max(len(t), 1) for t, g in zip(truths, got)]))  # noqa: E731
        stats = {"scenario": name, "rows": int(mask.sum()), "share": float(mask.mean()),
                 "ours_p50": p50(t_ours), "ours_p95": float(np.percentile(t_ours, 95) * 1000),
                 "recall": recall([r.keys for r in results]),
                 "fill": float(np.mean([len(r) / expected for r in results])),
                 "route": "/".join(sorted({r.route for r in results})),
                 "default_p50": p50(t_default), "default_recall": recall(defaults),
                 "default_fill": float(np.mean([len(g) / expected for g in defaults])), "numpy_p50": p50(t_exact)}
        rows.append(stats)
        print(stats, flush=True)
    gets, _ = passes(lambda i: store.get(TABLE, meta["key"][i]), queries)
    rows.append({"scenario": "get by key", "ours_p50": p50(gets)})
    return rows


def render(rows: list[dict], meta: dict, args, info) -> str:
    lines = [START, "## Search (bench/search_bench.py)", "",
             f"Command: `.venv/bin/python bench/search_bench.py --rows {args.rows} --dim {args.dim} "
             f"--index-type {args.index_type}`. {len(meta['key']):,} rows x {args.dim}-d float32, "
             f"{args.queries} queries per scenario (p50 over the last {args.queries - 3}), k={K}, cosine. "
             f"Machine: this project's 2-core CPU box, load average {args.load:.1f} (other jobs share it). "
             f"Generation {meta['generate_s']:.0f} s; all indexes "
             f"{meta['index_s']:.0f} s ({info.index_type}, {info.num_partitions} partitions).", "",
             "| scenario | matching rows | ours p50 / p95 ms | ours recall@10 | ours fill | route "
             "| LanceDB default p50 ms | default recall@10 | default fill | numpy exact p50 ms "
             "| ours vs default | ours vs numpy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["scenario"] == "get by key":
            lines.append(f"| get by key (`EmbeddingStore.get`) | 1 | {r['ours_p50']:.2f} | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['scenario']} | {r['rows']:,} ({r['share']:.3%}) | {r['ours_p50']:.1f} / {r['ours_p95']:.1f} "
            f"| {r['recall']:.3f} | {r['fill']:.2f} | {r['route']} | {r['default_p50']:.1f} "
            f"| {r['default_recall']:.3f} | {r['default_fill']:.2f} | {r['numpy_p50']:.1f} "
            f"| {r['ours_p50'] / r['default_p50']:.2f}x | {r['ours_p50'] / r['numpy_p50']:.2f}x |")
    lines += ["", "Ratios are latency ratios (below 1: ours is faster). numpy holds the whole matrix and the "
              "filter's boolean mask in RAM (nonzero + matmul + argpartition); the LanceDB default is "
              "`table.search(v).metric('cosine').where(f).limit(10)` "
              "(prefilter, default nprobes, no refine) selecting the columns our results read.", END]
    return "\n".join(lines)


def write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    RESULTS.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--index-type", default=IndexPolicy.index_type)
    parser.add_argument("--queries", type=int, default=103)
    parser.add_argument("--db", type=Path, help="where to build the table, kept and reused by later runs "
                                                "(default: a temporary directory, removed)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp(prefix="search_bench_"))
    try:
        store, vectors, meta = build(path / "db", args.rows, args.dim,
                                     IndexPolicy(vector_min_rows=256, index_type=args.index_type))
        info = vector_index_info(store.table(TABLE))
        queries = np.random.default_rng(2).choice(len(vectors), args.queries, replace=False)
        rows = measure(store, vectors, meta, queries)
        args.load = os.getloadavg()[1]
        text = render(rows, meta, args, info)
        print(text)
        if not args.no_write:
            write_section(text)
    finally:
        if args.db is None:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
