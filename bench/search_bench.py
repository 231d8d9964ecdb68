"""Search benchmark: latency and recall@10 of ``rsembed_db.query.search`` at several filter
selectivities (latitude bands, time windows, H3 parent) on a generated table, against
numpy exact search and LanceDB's default query path in the same run; get-by-key; QPS at
1, 2 and 8 threads (ours and LanceDB's); the HTTP service against the in-process call and
against a no-op service's round trip (the floor, ``bench/http_floor.py``).
Writes its section of bench/RESULTS.md.

    .venv/bin/python bench/search_bench.py                  # 1M x 128, a few minutes on 2 cores
    .venv/bin/python bench/search_bench.py --rows 200000    # quicker
    # before/after: the same bench against another checkout's code, same table, same machine state
    PYTHONPATH=/path/to/old/checkout .venv/bin/python bench/search_bench.py --db D --no-write --json before.json
    .venv/bin/python bench/search_bench.py --db D --before before.json

Data: ``rsembed_db.store.synthetic`` (H3 res-9 cells x years, one-day windows at random
days, vectors of intrinsic dimension 16 mapped to ``--dim``). Queries are stored vectors
of random rows; the truth is numpy's exact cosine top-10 over the rows passing the same
filter. The bench uses only the public search API, so it runs against older code too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
HEADING = "## Search (bench/search_bench.py)"
PARENT = h3.latlng_to_cell(52.5, 12.8, 3)  # 117 649 res-9 cells
TABLE = "bench"
K = 10
WINDOW_DAYS = 1
HOT = importlib.util.find_spec("rsembed_db.query.hot") is not None  # absent in code before it (--before runs)


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
        gen_s, vectors = timed(lambda: write_synthetic(store, TABLE, PARENT, 9, years, dim, seed=1,
                                                       window_days=WINDOW_DAYS))
    index_s, _ = timed(lambda: ensure_indexes(store.table(TABLE), policy))
    if vector_index_info(store.table(TABLE)).index_type != policy.index_type:  # reused db, other type
        index_s, _ = timed(lambda: build_vector_index(store.table(TABLE), policy))
    data = store.table(TABLE).to_lance().to_table(columns=["key", "lat", "year", "h3", "t_start", "t_end"])
    meta = {name: data[name].to_numpy(zero_copy_only=False) for name in ("key", "lat", "year", "h3")}
    meta.update({name: data[name].to_numpy().astype("datetime64[D]") for name in ("t_start", "t_end")})
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


def time_window(meta: dict, start: dt.date, days: int) -> tuple[SearchFilters, str, np.ndarray]:
    """Rows whose window overlaps ``[start, start + days)``; the SQL a LanceDB user writes."""
    end = start + dt.timedelta(days=days)
    mask = (meta["t_end"] > np.datetime64(start)) & (meta["t_start"] < np.datetime64(end))
    return (SearchFilters(start=start, end=end), f"t_end > date '{start}' AND t_start < date '{end}'", mask)


def mid_year(meta: dict) -> int:
    """A year in the middle of the table (2021 on the 1M table)."""
    years = np.unique(meta["year"])
    return int(years[len(years) // 2])


def scenarios(meta: dict) -> list[tuple[str, SearchFilters, str | None, np.ndarray, tuple[str, ...], bool]]:
    """(name, our filters, the same filter as SQL for the baselines, mask, result columns,
    query by key)."""
    everything = np.ones(len(meta["key"]), bool)
    out = [("unfiltered", SearchFilters(), None, everything, RESULT_COLUMNS, False),
           ("unfiltered, lon/lat columns only", SearchFilters(), None, everything, ("lon", "lat"), False),
           ("unfiltered, query by key", SearchFilters(), None, everything, RESULT_COLUMNS, True)]
    for fraction in (1e-4, 1e-3, 1e-2, 0.1):
        sql, mask = lat_band(meta, fraction, mid_year(meta))
        out.append((f"lat band, {fraction:.2%}", SearchFilters(where=sql), sql, mask, RESULT_COLUMNS, False))
    for days in (1, 3, 33):
        filters, sql, mask = time_window(meta, dt.date(mid_year(meta), 6, 1), days)
        out.append((f"time window, {days} d", filters, sql, mask, RESULT_COLUMNS, False))
    parent = h3.cell_to_parent(h3.int_to_str(int(meta["h3"][len(meta["h3"]) // 2])), 5)
    filters = SearchFilters(year=mid_year(meta), h3_parent=parent)
    children = {h3.str_to_int(c) for c in h3.cell_to_children(parent, 9)}
    mask = (meta["year"] == mid_year(meta)) & np.isin(meta["h3"], list(children))
    out.append(("H3 parent (res 5) + year", filters, compile_filters(filters).sql, mask, RESULT_COLUMNS, False))
    return out


def passes(fn, queries: np.ndarray) -> tuple[list[float], list]:
    """Run ``fn(vector_index)`` over every query: latencies (after 3 warm-ups) and outputs."""
    outputs = [timed(lambda i=i: fn(i)) for i in queries]
    return [t for t, _ in outputs[3:]], [out for _, out in outputs[3:]]


def interleaved(fns, queries: np.ndarray) -> list[tuple[list[float], list]]:
    """``passes`` of several methods, taking turns on each query: the load of other jobs
    on the shared machine changes within seconds, so methods measured in separate passes
    see different machines (seconds apart, the same query path measured 8 and 21 ms)."""
    runs = [[timed(lambda i=i, fn=fn: fn(i)) for fn in fns] for i in queries]
    return [([run[j][0] for run in runs[3:]], [run[j][1] for run in runs[3:]]) for j in range(len(fns))]


def p50(xs: list[float]) -> float:
    return float(np.median(xs) * 1000)


def measure(store, vectors, meta, queries: np.ndarray) -> list[dict]:
    table = store.table(TABLE)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for name, filters, sql, mask, columns, by_key in scenarios(meta):
        def numpy_exact(i: int) -> set:  # the filter given as a boolean mask in RAM
            sub = np.nonzero(mask)[0] if sql else slice(None)
            scores = np.einsum("ij,j->i", unit[sub], unit[i])  # BLAS gemv's threads spin under load
            if by_key:  # the query row is excluded
                scores[i] = -np.inf
            top = np.argpartition(-scores, K)[:K] if len(scores) > K else np.arange(len(scores))
            return set(meta["key"][sub][top])

        def ours(i: int):
            query = {"key": str(meta["key"][i])} if by_key else {"vector": vectors[i]}
            return search(store, TABLE, SearchRequest(**query, k=K, filters=filters, columns=columns))

        def default(i: int) -> list:
            query = table.search(vectors[i]).metric("cosine").limit(K + by_key).select(fetch_columns(columns, None))
            keys = (query.where(sql) if sql else query).to_arrow()["key"].to_pylist()
            return [k for k in keys if k != meta["key"][i]][:K] if by_key else keys

        t_exact, truths = passes(numpy_exact, queries)
        (t_ours, results), (t_default, defaults) = interleaved([ours, default], queries)
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


def qps(fn, queries: np.ndarray, threads: int, total: int) -> float:
    """Queries per second of ``fn(i)`` over ``total`` queries spread over ``threads``."""
    picks = [int(queries[j % len(queries)]) for j in range(total)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, picks[:threads]))  # warm every thread
        started = time.perf_counter()
        list(pool.map(fn, picks))
    return total / (time.perf_counter() - started)


def concurrency(store, vectors, meta, queries: np.ndarray, total: int) -> list[dict]:
    """QPS at 1, 2 and 8 threads: unfiltered and a 0.1 % latitude band, ours and LanceDB's."""
    table = store.table(TABLE)
    sql, _ = lat_band(meta, 1e-3, mid_year(meta))
    out = []
    for name, where in (("unfiltered", None), ("lat band, 0.10%", sql)):
        filters = SearchFilters(where=where)

        def ours(i: int, filters=filters):
            return search(store, TABLE, SearchRequest(vector=vectors[i], k=K, filters=filters))

        def default(i: int, where=where):
            query = table.search(vectors[i]).metric("cosine").limit(K).select(fetch_columns(RESULT_COLUMNS, None))
            return (query.where(where) if where else query).to_arrow()

        row = {"scenario": name}
        for threads in (1, 2, 8):
            for label, fn in (("ours", ours), ("default", default)):  # in turns, as ``interleaved``
                row[f"{label}_{threads}"] = qps(fn, queries, threads, total)
        out.append(row)
        print(row, flush=True)
    return out


def http_overhead(db: Path, vectors, meta, queries: np.ndarray, cache_mb: float) -> dict:
    """p50 of ``POST /v1/search`` (JSON, keep-alive client, uvicorn in a subprocess on
    loopback) against the in-process ``search`` + ``to_dicts`` of the same requests, and of
    the same request to a no-op service answering a stored answer (``bench/http_floor.py``):
    the round trip's floor."""
    import httpx

    port = 18000 + os.getpid() % 1000
    server = _uvicorn("rsembed_db.service.app:create_app", port,
                      RSEMBED_DB=str(db), RSEMBED_SEARCH_CACHE_MB=str(cache_mb))
    floor = None
    store = EmbeddingStore(db)
    sql, _ = lat_band(meta, 1e-3, mid_year(meta))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client, \
                httpx.Client(base_url=f"http://127.0.0.1:{port + 1}", timeout=60) as floor_client:
            _wait_ready(client)
            if HOT and cache_mb > 0:  # the server loads the copy (and its graph) in the background on first use
                from rsembed_db.query import hot_ann
                for where, note in ((sql, "in-memory"), (None, "HNSW" if hot_ann.available() else "")):
                    for _ in range(2400):
                        answer = client.post("/v1/search", json={
                            "table": TABLE, "vector": vectors[queries[0]].tolist(),
                            "filters": {"where": where} if where else {}}).json()
                        if note in answer["notes"][-1]:
                            break
                        time.sleep(0.25)
            out = {}
            for name, where in (("unfiltered", None), ("lat band, 0.10%", sql)):
                body = lambda i, where=where: {"table": TABLE, "vector": vectors[i].tolist(), "k": K,  # noqa: E731
                                               "filters": {"where": where} if where else {}}
                if floor is not None:
                    floor.terminate()
                    floor.wait(timeout=30)
                answer_file = db.parent / "http_floor_answer.json"
                answer_file.write_text(client.post("/v1/search", json=body(queries[0])).text)
                floor = _uvicorn("bench.http_floor:create_app", port + 1, RSEMBED_BENCH_ANSWER=str(answer_file))
                _wait_ready(floor_client, "/docs")

                def over_http(i: int, body=body):
                    response = client.post("/v1/search", json=body(i))
                    response.raise_for_status()
                    return response.json()

                def in_process(i: int, body=body):
                    request = body(i)
                    request.pop("table")
                    return search(store, TABLE, SearchRequest.from_dict(request)).to_dicts()

                def no_op(i: int, body=body):
                    response = floor_client.post("/v1/search", json=body(i))
                    response.raise_for_status()
                    return response.json()

                (t_http, _), (t_local, _), (t_floor, _) = interleaved([over_http, in_process, no_op], queries)
                out[name] = {"http_p50": p50(t_http), "local_p50": p50(t_local), "floor_p50": p50(t_floor)}
                print(name, out[name], flush=True)
            return out
    finally:
        for process in (server, floor):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def _uvicorn(factory: str, port: int, **env: str) -> subprocess.Popen:
    """``factory``'s app served by uvicorn on 127.0.0.1:``port`` in a subprocess."""
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], env={**os.environ, **env},
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _wait_ready(client, path: str = "/healthz") -> None:
    import httpx

    for _ in range(600):
        try:
            client.get(path)
            return
        except httpx.TransportError:
            time.sleep(0.1)


def render(rows: list[dict], threads: list[dict], http: dict, before: dict | None, meta: dict, args, info) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    lines = [f"### {dt.date.today()}, commit {commit}" + (" (before / after)" if before else ""), "",
             f"Command: `.venv/bin/python bench/search_bench.py --rows {args.rows} "
             f"--dim {args.dim} --index-type {args.index_type}`. {len(meta['key']):,} rows x {args.dim}-d float32, "
             f"one-day windows at random days of 9 years, {args.queries} queries per scenario (p50 over the last "
             f"{args.queries - 3}), k={K}, cosine. Machine: this project's 2-core CPU box; load average "
             f"{args.load_before:.1f} before, {args.load_after:.1f} after (other jobs share it: read the ratios). "
             f"Generation {meta['generate_s']:.0f} s; all indexes {meta['index_s']:.0f} s ({info.index_type}, "
             f"{info.num_partitions} partitions). Exact searches over in-memory vectors (`query.hot`, "
             f"`--search-cache-mb {args.search_cache_mb:g}`, as the service's default): the table's copy loaded in "
             f"{getattr(args, 'warm_s', float('nan')):.1f} s.", ""]
    head = "| scenario | matching rows | ours p50 / p95 ms | ours recall@10 | ours fill | route " \
           "| LanceDB default p50 ms | default recall@10 | default fill | numpy exact p50 ms | ours vs default "
    lines += [head + ("| before p50 ms | before vs default |" if before else "|"),
              "|---" * (13 if before else 11) + "|"]
    for r in rows:
        if r["scenario"] == "get by key":
            lines.append(f"| get by key (`EmbeddingStore.get`) | 1 | {r['ours_p50']:.2f} |" + " |" * (10 if before else 8))
            continue
        line = (f"| {r['scenario']} | {r['rows']:,} ({r['share']:.3%}) | {r['ours_p50']:.1f} / {r['ours_p95']:.1f} "
                f"| {r['recall']:.3f} | {r['fill']:.2f} | {r['route']} | {r['default_p50']:.1f} "
                f"| {r['default_recall']:.3f} | {r['default_fill']:.2f} | {r['numpy_p50']:.1f} "
                f"| {r['ours_p50'] / r['default_p50']:.2f}x |")
        old = (before or {}).get("rows", {}).get(r["scenario"])
        if before:
            line += f" {old['ours_p50']:.1f} | {old['ours_p50'] / old['default_p50']:.2f}x |" if old else " | |"
        lines.append(line)
    lines += ["", "Ratios are latency ratios (below 1: ours is faster). numpy holds the whole matrix and the "
              "filter's boolean mask in RAM (nonzero + einsum + argpartition); the LanceDB default is "
              "`table.search(v).metric('cosine').where(f).limit(10)` (prefilter, default nprobes, no refine) "
              "selecting the columns our results read, with the filter as a user writes it (time windows: "
              "`t_end > start AND t_start < end`)."
              + " Ours and the default take turns on each query (so both see the same load); numpy runs "
              "its own pass."
              + (" before: the same bench against the code before this change (`--before`), run just before "
                 "on the same table; compare its ratio to the default, measured in its own run." if before else ""),
              "",
              "QPS (queries per second, all threads together; LanceDB default = the same query path as above):", "",
              "| scenario | ours 1 / 2 / 8 threads | LanceDB default 1 / 2 / 8 threads |"
              + (" before 1 / 2 / 8 threads |" if before else ""), "|---|---|---|" + ("---|" if before else "")]
    for r in threads:
        line = (f"| {r['scenario']} | {r['ours_1']:.0f} / {r['ours_2']:.0f} / {r['ours_8']:.0f} "
                f"| {r['default_1']:.0f} / {r['default_2']:.0f} / {r['default_8']:.0f} |")
        old = (before or {}).get("threads", {}).get(r["scenario"])
        if before:
            line += f" {old['ours_1']:.0f} / {old['ours_2']:.0f} / {old['ours_8']:.0f} |" if old else " |"
        lines.append(line)
    lines += ["", "HTTP (`POST /v1/search`, JSON, uvicorn on loopback, one keep-alive httpx client) against the "
              "in-process `search(...).to_dicts()` of the same request, and the same request to a no-op "
              "FastAPI service answering a stored answer of the same size (`bench/http_floor.py`): its round "
              "trip is the floor under any service's overhead here; (in-process + no-op) / in-process is the "
              "ratio a service adding nothing to it would reach:", "",
              "| scenario | HTTP p50 ms | in-process p50 ms | HTTP / in-process | no-op round trip p50 ms "
              "| (in-process + no-op) / in-process |"
              + (" before HTTP / in-process |" if before else ""), "|---|---|---|---|---|---|" + ("---|" if before else "")]
    for name, r in http.items():
        floor = r.get("floor_p50", float("nan"))
        line = (f"| {name} | {r['http_p50']:.1f} | {r['local_p50']:.1f} | {r['http_p50'] / r['local_p50']:.2f}x "
                f"| {floor:.2f} | {(r['local_p50'] + floor) / r['local_p50']:.2f}x |")
        old = (before or {}).get("http", {}).get(name)
        if before:
            line += f" {old['http_p50'] / old['local_p50']:.2f}x |" if old else " |"
        lines.append(line)
    return "\n".join(lines)


def write_section(run: str) -> None:
    """Add ``run`` to the top of the search section of RESULTS.md; earlier runs stay below
    it (the history)."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(START) + "\n" + re.escape(HEADING) + "\n(.*?)" + re.escape(END), re.S)
    match = pattern.search(old)
    earlier = match.group(1).strip("\n") if match else ""
    section = "\n".join([START, HEADING, "", run, *(["", earlier] if earlier else []), END])
    new = old[:match.start()] + section + old[match.end():] if match else old.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--index-type", default=IndexPolicy.index_type)
    parser.add_argument("--queries", type=int, default=103)
    parser.add_argument("--qps-queries", type=int, default=300, help="queries per thread-count setting")
    parser.add_argument("--db", type=Path, help="where to build the table, kept and reused by later runs "
                                                "(default: a temporary directory, removed)")
    parser.add_argument("--search-cache-mb", type=float, default=1024,
                        help="in-memory vectors for exact searches, as ServiceSettings.search_cache_mb (0: none)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--json", type=Path, help="also write the figures here (for --before)")
    parser.add_argument("--before", type=Path, help="figures of a run against older code (its --json)")
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp(prefix="search_bench_"))
    try:
        store, vectors, meta = build(path / "db", args.rows, args.dim,
                                     IndexPolicy(vector_min_rows=256, index_type=args.index_type))
        info = vector_index_info(store.table(TABLE))
        if HOT:  # as the service runs: the table's vectors in memory for the exact route
            from rsembed_db.query import hot
            hot.configure(args.search_cache_mb)
            args.warm_s, _ = timed(lambda: hot.warm(store, TABLE))
        queries = np.random.default_rng(2).choice(len(vectors), args.queries, replace=False)
        args.load_before = os.getloadavg()[0]
        print(f"load average {args.load_before:.1f}", flush=True)
        rows = measure(store, vectors, meta, queries)
        threads = concurrency(store, vectors, meta, queries, args.qps_queries)
        http = http_overhead(path / "db", vectors, meta, queries, args.search_cache_mb)
        args.load_after = os.getloadavg()[0]
        print(f"load average {args.load_after:.1f}", flush=True)
        figures = {"rows": {r["scenario"]: r for r in rows}, "threads": {r["scenario"]: r for r in threads},
                   "http": http}
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
        before = json.loads(args.before.read_text()) if args.before else None
        text = render(rows, threads, http, before, meta, args, info)
        print(text)
        if not args.no_write:
            write_section(text)
    finally:
        if args.db is None:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
