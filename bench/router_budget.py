"""Router settings against recall and latency on spatially clustered filters: for bbox and
polygon filters keeping a given share of a synthetic table's rows, recall@10 (against
numpy exact on the float32 vectors) and p50 of ``query.search`` under the current router,
under other candidate budgets / exact limits, and forced exact, taking turns per query.

    .venv/bin/python -m bench.router_budget --rows 1000000 --shares 0.03,0.05,0.08,0.1
    .venv/bin/python -m bench.router_budget --rows 10000000 --shares 0.01,0.1 --db /data/scale10m

The table (``bench.scale_10m``'s: H3 res-9 cells x years, float16, IVF_RQ) is built under
``--db`` unless one is there already. Filters are centred on the table's median cell, so
their rows are one landscape, while queries are random stored rows: the case where a
prefiltered IVF search finds few of the filter's rows in the partitions nearest the query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import shapely

from bench.results import commit, finish
from bench.scale_10m import BUILD_CHILD, PARENT, TABLE, _scaled
from bench.search_bench import interleaved, p50
from rsembed_db.query import router
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.search import search
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.synthetic import synthetic_cells, synthetic_vectors

K = 10
SETTINGS = {"current": {}, "budget 2 000 (exact <= 4 000)": {"ANN_MIN_CANDIDATES": 2_000},
            "exact": {"exact": True}}


def table(db: Path, rows: int) -> tuple[EmbeddingStore, np.ndarray]:
    """The table at ``db`` (built when missing) and its float32 vectors in row order."""
    cells = synthetic_cells(PARENT, 9)
    years = list(range(2000, 2000 + math.ceil(rows / len(cells))))
    if not (db / f"{TABLE}.lance").exists():
        spec = {"db": str(db), "table": TABLE, "parent": PARENT, "years": years, "dim": 128, "dtype": "float16"}
        subprocess.run([sys.executable, "-c", BUILD_CHILD, json.dumps(spec)], check=True,
                       cwd=Path(__file__).resolve().parents[1])
    return EmbeddingStore(db), synthetic_vectors(cells, years, 128, seed=1)


def centred_shapes(store: EmbeddingStore) -> tuple[np.ndarray, np.ndarray, np.ndarray, shapely.Point, dict]:
    """The table's keys and centres (degrees), its median centre, and about that centre a
    2 x 1.2 degree ``bbox`` and the diamond inscribed in it (``polygon``: half its area),
    which ``scale_10m._scaled`` scales to a share of the rows."""
    data = store.dataset(TABLE).to_table(columns=["key", "lon", "lat"])
    lon, lat = data["lon"].to_numpy(), data["lat"].to_numpy()
    centre = shapely.Point(float(np.median(lon)), float(np.median(lat)))
    shapes = {"bbox": shapely.box(centre.x - 1, centre.y - 0.6, centre.x + 1, centre.y + 0.6),
              "polygon": shapely.Polygon([(centre.x - 1, centre.y), (centre.x, centre.y - 0.6),
                                          (centre.x + 1, centre.y), (centre.x, centre.y + 0.6)])}
    return data["key"].to_numpy(zero_copy_only=False), lon, lat, centre, shapes


def run_setting(store: EmbeddingStore, filters: SearchFilters, setting: dict, vector: np.ndarray) -> list[str]:
    patches = [mock.patch.object(router, name, value) for name, value in setting.items() if name != "exact"]
    for patch in patches:
        patch.start()
    try:
        request = SearchRequest(vector=vector, k=K, filters=filters, columns=("lon", "lat"),
                                exact=setting.get("exact", False))
        return search(store, TABLE, request).keys
    finally:
        for patch in patches:
            patch.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shares", default="0.03,0.05,0.08,0.1")
    parser.add_argument("--queries", type=int, default=23)
    parser.add_argument("--db", type=Path, help="database directory (default /tmp/rsembed_router_budget_<rows>)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    store, vectors = table(args.db or Path(f"/tmp/rsembed_router_budget_{args.rows}"), args.rows)
    keys, lon, lat, centre, shapes = centred_shapes(store)
    norms = np.linalg.norm(vectors, axis=1)
    queries = np.random.default_rng(2).choice(len(keys), args.queries, replace=False)
    lines = [f"### {dt.date.today()}, commit {commit()}", "",
             f"{len(keys):,} rows x 128 float16, {args.queries} queries (p50 over the last {args.queries - 3}), "
             f"command: `python -m bench.router_budget --rows {args.rows} --shares {args.shares}`.", "",
             "| filter | " + " | ".join(f"{name} p50 ms (recall@10)" for name in SETTINGS) + " |",
             "|---|" + "---|" * len(SETTINGS)]
    for share in (float(s) for s in args.shares.split(",")):
        for kind, shape in shapes.items():
            geom, mask = _scaled(shape, centre, int(share * len(keys)), lon, lat)
            filters = SearchFilters(bbox=geom.bounds) if kind == "bbox" else SearchFilters(polygon=geom)
            where = np.flatnonzero(mask)
            inside, lengths = vectors[where], norms[where]  # copied once per filter, not per query
            truths = [set(keys[where[np.argsort(-(inside @ vectors[i]) / lengths)[:K]]]) for i in queries]
            runs = interleaved([lambda i, s=s: run_setting(store, filters, s, vectors[i]) for s in SETTINGS.values()],
                               queries)
            cells = []
            for times, results in runs:
                recall = np.mean([len(t & set(r)) / K for t, r in zip(truths[3:], results)])
                cells.append(f"{p50(times):.1f} ({recall:.3f})")
            lines.append(f"| {kind} {mask.mean():.2%} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    finish("## Router: candidate budget and exact limit on clustered filters (bench/router_budget.py)",
           __doc__, lines, load, not args.no_write)


if __name__ == "__main__":
    main()
