"""Scale benchmark: one large table per vector dtype (float16, float32), built, stored,
searched with and without spatial / time / H3 filters, against LanceDB's default query
path and numpy exact search in the same run. Appends its section to bench/RESULTS.md.

    .venv/bin/python -m bench.scale_10m                      # 10M x 128 (hours on 2 cores)
    .venv/bin/python -m bench.scale_10m --rows 1000000       # what a shared 2-core box manages
    .venv/bin/python -m bench.scale_10m --rows 1000000 --dtypes float16 --s3 --cache-mb 1024   # + local S3

Data: ``rsembed_db.store.synthetic`` (H3 res-9 cells of a res-3 parent x years, one-day
windows at random days; vectors of intrinsic dimension 16 mapped to 128), written
through the store, indexed by ``ensure_indexes`` (scalar indexes, the R-tree on the
footprint, IVF_RQ) and ``optimize`` (retention 0). Per table: build seconds, bytes on
disk per row split as ``tables --verbose`` shows them (and against the raw float32
vector bytes), peak RSS of a fresh process running the searches below through
``query.search`` without an in-memory copy (the streaming path), and for each filter at
about 0.01 %, 0.1 %, 1 % and 10 % of the rows: p50 / p95 of ``query.search`` and
LanceDB's default path (``table.search().where(prefilter)``; polygons have no
equivalent there, its query builder rejects ``st_intersects``), numpy exact over the
mask in RAM, recall@10 of each against numpy's exact top-10 of the rows passing the
filter. Queries are stored vectors of random rows; k = 10, cosine. The truth uses the
float32 vectors; a float16 table's recall therefore includes the rounding.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import h3
import numpy as np
import shapely

from bench.search_bench import interleaved, p50, passes
from rsembed_db.query import hot
from rsembed_db.query.filters import compile_filters
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.search import search
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.storage import storage_report
from rsembed_db.store.synthetic import synthetic_cells, synthetic_vectors

RESULTS = Path(__file__).with_name("RESULTS.md")
PARENT = h3.latlng_to_cell(52.5, 12.8, 3)  # 117 649 res-9 cells
TABLE = "scale"
K = 10
SHARES = (1e-4, 1e-3, 1e-2, 0.1)
H3_PARENT_RES = {1e-4: 7, 1e-3: 6, 1e-2: 5, 0.1: 4}  # 1/7^k of the cells: 0.04, 0.29, 2.0, 14.3 %


BUILD_CHILD = """
import datetime as dt, json, sys, time
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.indexes import IndexPolicy, ensure_indexes, optimize_table
from rsembed_db.store.synthetic import write_synthetic
spec = json.loads(sys.argv[1])
store = EmbeddingStore(spec["db"])
seconds = {}
for step, run in (("write_s", lambda: write_synthetic(store, spec["table"], spec["parent"], 9, spec["years"], spec["dim"],
                                                      seed=1, window_days=1, vector_dtype=spec["dtype"])),
                  ("index_s", lambda: ensure_indexes(store.table(spec["table"]), IndexPolicy(vector_min_rows=256))),
                  ("optimize_s", lambda: optimize_table(store.table(spec["table"]), dt.timedelta(0)))):
    started = time.perf_counter()
    run()
    seconds[step] = time.perf_counter() - started
print(json.dumps(seconds))
"""


def build(uri: str, rows: int, dim: int, dtype: str) -> tuple[EmbeddingStore, np.ndarray, dict]:
    """Write, index and optimize the table in a child process (the build keeps ~1.2 GB per 1M rows
    until its process ends, measured at 1M: ~11 GB at 10M), then regenerate its vectors here."""
    cells = synthetic_cells(PARENT, 9)
    years = list(range(2000, 2000 + math.ceil(rows / len(cells))))
    spec = {"db": uri, "table": TABLE, "parent": PARENT, "years": years, "dim": dim, "dtype": dtype}
    out = subprocess.run([sys.executable, "-c", BUILD_CHILD, json.dumps(spec)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    if out.returncode:
        raise SystemExit(f"building {uri} failed:\n{out.stderr[-3000:]}")
    seconds = json.loads(out.stdout.strip().splitlines()[-1])
    vectors = synthetic_vectors(cells, years, dim, seed=1)  # what write_synthetic wrote, float32
    store = EmbeddingStore(uri)
    data = store.dataset(TABLE).to_table(columns=["key", "lon", "lat", "h3", "t_start", "t_end"])
    meta = {n: data[n].to_numpy(zero_copy_only=False) for n in ("key", "lon", "lat", "h3")}
    meta.update({n: data[n].to_numpy().astype("datetime64[D]") for n in ("t_start", "t_end")})
    meta.update(seconds, years=years)
    return store, vectors, meta


def _scaled(shape, centre, target: int, lon, lat) -> tuple[shapely.Geometry, np.ndarray]:
    """``shape`` scaled about ``centre`` until about ``target`` centres lie inside."""
    low, high = 1e-4, 4.0
    for _ in range(40):
        mid = (low + high) / 2
        geom = shapely.affinity.scale(shape, mid, mid, origin=centre)
        mask = shapely.intersects_xy(geom, lon, lat)
        low, high = (mid, high) if mask.sum() < target else (low, mid)
    return geom, mask


def scenarios(meta: dict) -> list[tuple[str, SearchFilters, str | None, np.ndarray]]:
    """(name, our filters, the same filter as LanceDB SQL (None: none there), mask)."""
    n = len(meta["key"])
    lon, lat = meta["lon"], meta["lat"]
    centre = shapely.Point(float(np.median(lon)), float(np.median(lat)))
    out = [("unfiltered", SearchFilters(), None, np.ones(n, bool))]
    for share in SHARES:
        square = shapely.box(centre.x - 1, centre.y - 0.6, centre.x + 1, centre.y + 0.6)
        box, mask = _scaled(square, centre, int(share * n), lon, lat)
        filters = SearchFilters(bbox=tuple(box.bounds))
        out.append((f"bbox {mask.mean():.3%}", filters, compile_filters(filters).sql, mask))
        diamond = shapely.Polygon([(centre.x - 1, centre.y), (centre.x, centre.y - 0.6), (centre.x + 1, centre.y),
                                   (centre.x, centre.y + 0.6)])
        polygon, mask = _scaled(diamond, centre, int(share * n), lon, lat)
        out.append((f"polygon {mask.mean():.3%}", SearchFilters(polygon=polygon), None, mask))
        parent = h3.cell_to_parent(h3.int_to_str(int(meta["h3"][n // 2])), H3_PARENT_RES[share])
        filters = SearchFilters(h3_parent=parent)
        children = np.array([h3.str_to_int(c) for c in h3.cell_to_children(parent, 9)], np.uint64)
        mask = np.isin(meta["h3"], children)
        out.append((f"H3 parent res {H3_PARENT_RES[share]} {mask.mean():.3%}", filters,
                    compile_filters(filters).sql, mask))
    mid = meta["years"][len(meta["years"]) // 2]
    for days in (1, 4, 36):  # ~0.03 %, 1 %, 10 % of the rows for 1-day windows over 9 years
        start = dt.date(mid, 3, 1)
        end = start + dt.timedelta(days=days)
        mask = (meta["t_end"] > np.datetime64(start)) & (meta["t_start"] < np.datetime64(end))
        out.append((f"time {days} d {mask.mean():.3%}", SearchFilters(start=start, end=end),
                    f"t_end > date '{start}' AND t_start < date '{end}'", mask))
    return out


SEARCH_CHILD = """
import json, sys
from rsembed_db.query import hot
from rsembed_db.query.request import SearchRequest
from rsembed_db.query.search import search
from rsembed_db.store import EmbeddingStore
hot.configure(0)
spec = json.load(open(sys.argv[1]))
store = EmbeddingStore(spec["db"])
for filters in spec["filters"]:
    for vector in spec["queries"]:
        search(store, spec["table"], SearchRequest.from_dict({"vector": vector, "k": 10, "filters": filters}))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so the child would
# report the bench parent's RSS at the fork (GBs of vectors)
print(next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def peak_rss(db: str, scratch: Path, filters: list[dict], queries: list[list[float]]) -> int:
    """Peak RSS (bytes) of a fresh process running the query vectors ``queries`` under each
    of ``filters`` on the database at ``db`` (its VmHWM; the query vectors travel in a spec
    file written under ``scratch``; the child inherits the ``AWS_*`` variables)."""
    spec = scratch / "rss.json"
    spec.write_text(json.dumps({"db": db, "table": TABLE, "filters": filters, "queries": queries}))
    out = subprocess.run([sys.executable, "-c", SEARCH_CHILD, str(spec)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.strip().splitlines()[-1])


def _filters_json(filters: SearchFilters) -> dict:
    out: dict = {}
    if filters.bbox is not None:
        b = filters.bbox
        out["bbox"] = [b.minlon, b.minlat, b.maxlon, b.maxlat]
    if filters.polygon is not None:
        out["polygon"] = shapely.geometry.mapping(filters.polygon)
    return out


def measure(store, vectors, meta, queries) -> list[dict]:
    table = store.table(TABLE)
    norms = np.linalg.norm(vectors, axis=1)  # no normalised copy: at 10M x 128 it would be 5 GB more
    rows = []
    for name, filters, sql, mask in scenarios(meta):
        where = np.nonzero(mask)[0]

        def numpy_exact(i: int) -> set:
            query = vectors[i] / norms[i]
            matrix, lengths = (vectors, norms) if len(where) == len(vectors) else (vectors[where], norms[where])
            scores = matrix @ query / lengths
            top = np.argpartition(-scores, K)[:K] if len(scores) > K else np.arange(len(scores))
            return set(meta["key"][where[top]])

        def ours(i: int) -> list:
            return search(store, TABLE, SearchRequest(vector=vectors[i], k=K, filters=filters, columns=("lon", "lat")))

        def default(i: int) -> list:
            query = table.search(vectors[i]).metric("cosine").limit(K).select(["key"])
            return (query.where(sql, prefilter=True) if sql else query).to_arrow()["key"].to_pylist()

        t_exact, truths = passes(numpy_exact, queries)
        fns = [ours, default] if sql is not None or name == "unfiltered" else [ours]
        runs = interleaved(fns, queries)

        def recall(got):
            return float(np.mean([len(t & set(g)) / max(len(t), 1) for t, g in zip(truths, got)]))

        t_ours, results = runs[0]
        stat = {"scenario": name, "share": float(mask.mean()), "ours_p50": p50(t_ours),
                "ours_p95": float(np.percentile(t_ours, 95) * 1000), "recall": recall([r.keys for r in results]),
                "route": "/".join(sorted({r.route for r in results})), "numpy_p50": p50(t_exact)}
        if len(runs) > 1:
            t_default, defaults = runs[1]
            stat.update(default_p50=p50(t_default), default_p95=float(np.percentile(t_default, 95) * 1000),
                        default_recall=recall(defaults))
        rows.append(stat)
        print(stat, flush=True)
    gets, _ = passes(lambda i: store.get(TABLE, meta["key"][i]), queries)
    rows.append({"scenario": "get by key", "ours_p50": p50(gets)})
    return rows


def run_dtype(uri: str, scratch: Path, rows: int, dim: int, dtype: str, queries_n: int, cache_mb: float = 0) -> dict:
    """Build the table of ``dtype`` at ``uri`` (a directory or ``s3://bucket/path``) and measure it;
    with ``cache_mb``, measure it again with the table's vectors held in memory (``query.hot``,
    the service's configuration)."""
    store, vectors, meta = build(uri, rows, dim, dtype)
    report = storage_report(store.dataset(TABLE))
    queries = np.random.default_rng(2).choice(len(vectors), queries_n, replace=False)
    picked = [s for s in scenarios(meta) if s[0].startswith(("unfiltered", "bbox", "polygon"))]
    rss = peak_rss(uri, scratch, [_filters_json(f) for _, f, _, _ in picked], vectors[queries[:20]].tolist())
    figures = measure(store, vectors, meta, queries)
    hot_figures = None
    if cache_mb:
        hot.configure(cache_mb)
        try:
            if hot.warm(store, TABLE) is not None:
                hot_figures = measure(store, vectors, meta, queries)
        finally:
            hot.configure(0)
            hot.CACHE.clear()
    return {"dtype": dtype, "rows": report.rows, "write_s": meta["write_s"], "index_s": meta["index_s"],
            "optimize_s": meta["optimize_s"], "storage": report, "rss": rss, "figures": figures, "uri": uri,
            "hot_figures": hot_figures}


def run_on_s3(scratch: Path, rows: int, dim: int, dtype: str, queries_n: int, cache_mb: float = 0) -> dict:
    """``run_dtype`` on a local S3 server: moto's ``ThreadedMotoServer`` in ``.venv-s3``
    (started by ``tests/helpers/s3_server.py``, as the object-store tests do)."""
    from tests.helpers import s3_server

    python = s3_server.s3_python()
    if python is None:
        raise SystemExit("--s3 needs moto: run scripts/setup.sh (it creates .venv-s3) or set $RSEMBED_S3_PYTHON")
    server = s3_server.start(python, ["bench"])
    try:
        with mock.patch.dict(os.environ, server.env()):  # LanceDB and the child processes read AWS_*
            return run_dtype(f"s3://bench/scale/{dtype}", scratch, rows, dim, dtype, queries_n, cache_mb)
    finally:
        server.stop()


def _label(run: dict) -> str:
    return f"{run['dtype']} on local S3" if run["uri"].startswith("s3://") else run["dtype"]


def s3_comparison(runs: list[dict]) -> list[str]:
    """Per scenario, p50 on the local S3 server against the same table on local disk."""
    lines: list[str] = []
    for remote, kind in [(r, k) for r in runs if r["uri"].startswith("s3://") for k in ("figures", "hot_figures")]:
        disk = next(r for r in runs if r["dtype"] == remote["dtype"] and not r["uri"].startswith("s3://"))
        if not remote[kind] or not disk[kind]:
            continue
        here = {f["scenario"]: f for f in disk[kind]}
        how = ("streaming from the store (the library's default)" if kind == "figures"
               else "vectors held in memory (`query.hot`, the service's default configuration)")
        lines += ["", f"**{remote['dtype']}: local S3 (moto) against local disk, {how}**, same rows and queries "
                  "(ms; the S3 server is a Python process on the same 2 cores)", "",
                  "| scenario | disk p50 | S3 p50 | S3 / disk | disk recall | S3 recall |", "|---|---|---|---|---|---|"]
        for f in remote[kind]:
            d = here[f["scenario"]]
            recalls = (f"{d['recall']:.3f} | {f['recall']:.3f}" if "recall" in f else " | ")
            lines.append(f"| {f['scenario']} | {d['ours_p50']:.1f} | {f['ours_p50']:.1f} | "
                         f"{f['ours_p50'] / d['ours_p50']:.1f}x | {recalls} |")
    return lines


def render(runs: list[dict], args) -> str:
    command = f"--rows {args.rows}" + (f" --dtypes {args.dtypes}" if args.dtypes != "float16,float32" else "") + \
        (" --s3" if args.s3 else "") + (f" --cache-mb {args.cache_mb:g}" if args.cache_mb else "")
    lines = [f"\n## Scale: {runs[0]['rows']:,} x {args.dim} rows per dtype (bench/scale_10m.py)\n",
             f"Command: `.venv/bin/python -m bench.scale_10m {command}`. "
             f"{'10M rows did not fit this session on 2 shared cores: ' if args.rows < 10_000_000 and not args.s3 else ''}"
             f"{runs[0]['rows']:,} rows (H3 res-9 cells x {math.ceil(args.rows / 117649)} years), "
             f"k=10 cosine, {args.queries} queries per scenario (p50/p95 over the last {args.queries - 3}); "
             f"1-minute load average {args.load_before:.1f} before, {args.load_after:.1f} after "
             "(other jobs share the 2 cores: compare within a run).\n",
             "| dtype | write s | indexes s | optimize s | vectors B/row | scalars B/row | indexes B/row | "
             "total B/row | x raw f32 vectors | key B/row | geometry B/row | peak RSS of a search process |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        r = run["storage"]
        lines.append(f"| {_label(run)} | {run['write_s']:.0f} | {run['index_s']:.0f} | {run['optimize_s']:.0f} | "
                     f"{r.per_row(r.vector_bytes):.1f} | {r.per_row(r.scalar_bytes):.1f} | "
                     f"{r.per_row(r.index_bytes):.1f} | {r.per_row(r.total_bytes):.1f} | {r.ratio_to_raw:.2f} | "
                     f"{r.per_row(r.columns.get('key', 0)):.1f} | {r.per_row(r.columns.get('geometry', 0)):.1f} | "
                     f"{run['rss'] / 2**20:.0f} MiB |")
    for run in runs:
        lines += ["", f"**{_label(run)}** (ms; recall@10 against numpy exact on the float32 vectors)", "",
                  "| filter (share of rows) | ours p50 | ours p95 | recall | route | LanceDB default p50 | p95 | "
                  "recall | numpy exact p50 |", "|---|---|---|---|---|---|---|---|---|"]
        for f in run["figures"]:
            if f["scenario"] == "get by key":
                lines.append(f"| get by key | {f['ours_p50']:.2f} | | | | | | | |")
                continue
            default = (f"{f['default_p50']:.1f} | {f['default_p95']:.1f} | {f['default_recall']:.3f}"
                       if "default_p50" in f else "n/a | | ")
            lines.append(f"| {f['scenario']} | {f['ours_p50']:.1f} | {f['ours_p95']:.1f} | {f['recall']:.3f} | "
                         f"{f['route']} | {default} | {f['numpy_p50']:.1f} |")
    return "\n".join(lines + s3_comparison(runs)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=23)
    parser.add_argument("--dtypes", default="float16,float32")
    parser.add_argument("--s3", action="store_true",
                        help="also build and search the first dtype's table on a local S3 server (moto, .venv-s3)")
    parser.add_argument("--cache-mb", type=float, default=0,
                        help="also measure each table with its vectors in memory, within this budget (MB)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="scale_"))
    try:
        dtypes = args.dtypes.split(",")
        runs = [run_dtype(str(work / dtype), work, args.rows, args.dim, dtype, args.queries, args.cache_mb)
                for dtype in dtypes]
        if args.s3:
            runs.append(run_on_s3(work, args.rows, args.dim, dtypes[0], args.queries, args.cache_mb))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.load_after = os.getloadavg()[0]
    text = render(runs, args)
    print(text)
    print("bench process peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "MiB")
    if not args.no_write:
        with RESULTS.open("a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
