"""Benchmark: does storing an int8 product's pooled vectors as float16 change search results?

    .venv/bin/python -m bench.float16_recall      # appends its figures to bench/RESULTS.md

Tessera, end to end: 4 generated tiles in the published layout (0.2 x 0.2 degree from
11.5 E, 52.0 N, 40 m pixels, year 2024) ingested at H3 res 9 twice, with
``--vector-dtype float32`` and ``float16``. For ``QUERIES`` stored rows as queries, the
exact cosine top-10 over the float16 table (as ``rsembed_db.query.search`` computes it,
forced exact) is compared with numpy's exact top-10 over the float32 vectors:
recall@10 = |both| / 10, averaged. The same-run baseline is the float32 table searched
the same way (recall 1.0 unless ties). GSE has no generated COGs here: its vectors are
simulated (64-d unit vectors quantised to int8 per pixel as the published COGs are,
mean-pooled over 100 pixels) and compared in numpy only.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

from bench.tessera_ingest import SOUTH, WEST, YEAR, generate
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.catalog import make_producer
from rsembed_db.query.request import SearchRequest
from rsembed_db.query.search import search
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region

QUERIES = 200
K = 10
RESULTS = Path(__file__).with_name("RESULTS.md")


def _top(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    distance = 1 - matrix @ query / np.where(norms > 0, norms, 1)
    return np.argsort(distance, kind="stable")[:k]


def tessera(work: Path) -> dict[str, float]:
    data = work / "tiles"
    generate(data, 0.2, 40.0)  # tiles from WEST, SOUTH
    producer = make_producer("tessera", model_config={"dir": str(data), "url": "none"})
    region = shapely.box(WEST, SOUTH, WEST + 0.2, SOUTH + 0.2)
    requests = producer.requests(tile_region(region, "h3:9"), TemporalSpec.year(YEAR))
    stores, seconds = {}, {}
    for dtype in ("float32", "float16"):
        stores[dtype] = EmbeddingStore(work / dtype)
        started = time.perf_counter()
        summary = run_ingest(stores[dtype], producer, requests, IngestOptions(workers=2, vector_dtype=dtype))
        print(dtype, summary.computed, "computed", summary.failed, "failed", flush=True)
        seconds[dtype] = time.perf_counter() - started
    keys32, matrix32 = stores["float32"].vectors(producer.table_name, columns=("key",))
    keys = keys32["key"].to_pylist()
    rng = np.random.default_rng(0)
    picks = rng.choice(len(keys), size=min(QUERIES, len(keys)), replace=False)
    recall = {"float32": [], "float16": []}
    for i in picks:
        truth = {keys[j] for j in [j for j in _top(matrix32, matrix32[i], K + 1) if j != i][:K]}
        request = SearchRequest.from_dict({"vector": matrix32[i].tolist(), "k": K + 1, "exact": True,
                                           "tiling": "any"})
        for dtype, store in stores.items():
            found = [k for k in search(store, producer.table_name, request).keys if k != keys[i]][:K]
            recall[dtype].append(len(truth & set(found)) / K)
    return {"rows": len(keys), "recall16": float(np.mean(recall["float16"])),
            "recall32": float(np.mean(recall["float32"])), "ingest32_s": seconds["float32"],
            "ingest16_s": seconds["float16"]}


def gse_simulated(rows: int = 20_000, pixels: int = 100) -> float:
    """recall@10 of float16 vs float32 on simulated GSE cell vectors (numpy only)."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(rows // 50, 64))
    out = np.empty((rows, 64), np.float32)
    for r in range(rows):
        pixel = centres[r % len(centres)] + rng.normal(scale=0.8, size=(pixels, 64))
        pixel /= np.linalg.norm(pixel, axis=1, keepdims=True)
        quantised = np.round(np.sign(pixel) * np.sqrt(np.abs(pixel)) * 127.5).clip(-127, 127)  # GSE's int8 coding
        out[r] = (np.sign(quantised) * (quantised / 127.5) ** 2).mean(axis=0)
    half = out.astype(np.float16).astype(np.float32)
    hits = []
    for i in rng.choice(rows, size=QUERIES, replace=False):
        truth = {j for j in _top(out, out[i], K + 1) if j != i}
        found = {j for j in _top(half, half[i], K + 1) if j != i}
        hits.append(len(truth & found) / K)
    return float(np.mean(hits))


def main() -> None:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        t = tessera(Path(tmp))
    gse = gse_simulated()
    load_after = os.getloadavg()[0]
    text = (f"\n## float16 vs float32 recall on int8 products (bench/float16_recall.py)\n\n"
            f"Command: `.venv/bin/python -m bench.float16_recall`. 2 CPUs shared; 1-minute load average "
            f"{load_before:.1f} before, {load_after:.1f} after.\n\n"
            f"| product | rows | queries | recall@10 float16 | recall@10 float32 (baseline) |\n|---|---|---|---|---|\n"
            f"| tessera (generated tiles, H3 res 9, through ingest + exact search) | {t['rows']} | {QUERIES} | "
            f"{t['recall16']:.4f} | {t['recall32']:.4f} |\n"
            f"| gse (simulated int8 pixels, 100 per cell, numpy) | 20000 | {QUERIES} | {gse:.4f} | 1.0000 |\n\n"
            f"Ingest of the tessera area: {t['ingest32_s']:.1f} s float32, {t['ingest16_s']:.1f} s float16.\n")
    print(text)
    with RESULTS.open("a") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
