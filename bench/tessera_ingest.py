"""Benchmark: Tessera H3 ingest over a generated 1 x 1 degree area (100 tiles) into LanceDB.

    .venv/bin/python -m bench.tessera_ingest     # both setups; rewrites its section of bench/RESULTS.md

Two setups, tiles generated in the published layout (deterministic values) from 11.5 E,
52.0 N, so the areas straddle the UTM 32/33 boundary at 12 E: the 1 x 1 degree target
area (100 tiles) with 40 m pixels (1/16 of the real pixel count, which keeps the data at
600 MB and the run short), and 0.2 x 0.2 degree (4 tiles) with the real 10 m pixels. For
each H3 resolution the ingest runs end to end (tiling, keys, skip-stored check, tile
reads, pooling, LanceDB commits, index build) into a fresh database; tile reads,
pooling and writes are timed by wrapping those calls.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import shapely

from rsembed_db.ingest import engine
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.products import tiled, zonal
from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.synthetic import synthetic_tile, tile_grid, write_registries, write_tile
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region

YEAR = 2024
WEST, SOUTH = 11.5, 52.0
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Tessera H3 ingest (bench/tessera_ingest.py)"


def generate(root: Path, degrees: float, pixel_m: float) -> tuple[list[TileId], int]:
    """Tiles of the area (written unless ``root`` has them) and their total pixel count."""
    n = round(degrees * 10)
    ix0, iy0 = round(WEST * 10), round(SOUTH * 10)
    tiles = [TileId(ix0 + i, iy0 + j) for j in range(n) for i in range(n)]
    if not (root / "registry.parquet").is_file():
        for tile in tiles:
            write_tile(root, synthetic_tile(tile, YEAR, pixel_m=pixel_m))
        write_registries(root, [(t, YEAR) for t in tiles])
    pixels = sum(math.prod(tile_grid(t, pixel_m)[2]) for t in tiles)
    return tiles, pixels


class Timers:
    """Cumulative seconds of wrapped calls (summed over threads)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
        return timed


def run(data: Path, db: Path, res: int, degrees: float, workers: int, factorised: bool = True) -> dict:
    """One ingest; ``factorised``: pool means as weighted sums (False: the per-pixel path it replaced)."""
    zonal.FACTORISED = factorised
    region = shapely.box(WEST, SOUTH, WEST + degrees, SOUTH + degrees)
    timers = Timers()
    started = time.perf_counter()
    spatials = tile_region(region, f"h3:{res}", max_tiles=10_000_000)
    producer = make_producer("tessera", model_config={"dir": str(data), "url": "none"})
    requests = producer.requests(spatials, TemporalSpec.year(YEAR))
    planned = time.perf_counter()
    store = EmbeddingStore(db)
    producer.tiles.read = timers.wrap("read", producer.tiles.read)
    store.write = timers.wrap("write", store.write)
    patched = {(tiled, "pool_grid"): timers.wrap("pool", tiled.pool_grid),
               (engine, "index_table"): timers.wrap("index", engine.index_table)}
    originals = {target: getattr(*target) for target in patched}
    for (module, name), fn in patched.items():
        setattr(module, name, fn)
    try:
        summary = run_ingest(store, producer, requests, IngestOptions(workers=workers))
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    done = time.perf_counter()
    assert summary.failed == 0 and summary.computed == len(spatials), summary
    assert store.table("tessera").count_rows() == len(spatials)
    zonal.FACTORISED = True
    return {"res": res, "cells": len(spatials), "plan_s": planned - started, "factorised": factorised,
            "ingest_s": summary.seconds, "total_s": done - started, "reads": producer.tiles.reads,
            "bytes": producer.tiles.bytes_read,
            **{k: timers.seconds[k] for k in ("read", "pool", "write", "index")}}


def table(rows: list[dict], tiles: int, pixels: int, pixel_m: float, degrees: float) -> list[str]:
    lines = [f"**{degrees:g} x {degrees:g} degree** (11.5-{WEST + degrees:g} E, 52-{SOUTH + degrees:g} N): "
             f"{tiles} tiles of **{pixel_m:g} m** pixels ({pixels / 1e6:.1f} million pixels x 128-d "
             f"int8), year {YEAR}.", "",
             "| H3 res | pooling | cells | plan s | ingest s | index s | end to end s | cells/s ingest "
             "| cells/s end to end | tile GB/s (ingest) | read s | pool s | write s | tile reads |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        how = "weighted sums" if r["factorised"] else "per pixel (before)"
        lines.append(
            f"| {r['res']} | {how} | {r['cells']:,} | {r['plan_s']:.2f} | {r['ingest_s']:.2f} | {r['index']:.2f} "
            f"| {r['total_s']:.2f} | {r['cells'] / r['ingest_s']:,.0f} | {r['cells'] / r['total_s']:,.0f} "
            f"| {r['bytes'] / r['ingest_s'] / 1e9:.2f} | {r['read']:.2f} | {r['pool']:.2f} | {r['write']:.2f} "
            f"| {r['reads']} of {tiles} |")
    return lines + [""]


def memory_bandwidth() -> float:
    """GB/s of a plain copy of 512 MiB (read + write counted), best of 3: the machine's yardstick."""
    src = np.ones(1 << 29, np.uint8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def report(tables: list[list[str]], workers: int, repeats: int, load: float, load_after: float = float("nan"),
           bandwidth: float = float("nan")) -> str:
    lines = [SECTION, "",
             f"Command: `.venv/bin/python -m bench.tessera_ingest` (a few minutes). Tiles in the "
             f"published layout, deterministic values; the area crosses the UTM 32/33 boundary "
             f"at 12 E. {workers} tile threads, best of {repeats} runs per row, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}; 1-minute load average "
             f"{load:.1f} at the start, {load_after:.1f} at the end (other processes share the cores: higher load, "
             f"lower figures). Memory copy on this machine in the same run: {bandwidth:.1f} GB/s.", ""]
    for part in tables:
        lines += part
    lines += ["plan: tiling the region into H3 cells and building the requests (keys); ingest: "
              "`run_ingest` from the skip-stored check to the last commit (pooling on the tile "
              "threads overlaps the commits on the commit thread); index: the post-ingest "
              "`index_table` (scalar + vector index build); end to end: all three. read / "
              "pool / write: seconds inside tile reads, pooling and `store.write`, summed over "
              "the threads that ran them (they overlap, so they can exceed the wall time). "
              "Pooling is bound by pixels (res 8 rows: few cells, every pixel), the rest by cells; "
              "the 40 m tiles keep the target area's per-cell work while holding 1/16 of the real "
              "pixels, and the 10 m rows give the per-pixel rate at the real density. Pooling: `weighted sums` "
              "(each cell's int8 pixels converted once and reduced by one product with their scales) against "
              "`per pixel (before)` (every value dequantised, then segment sums), in the same run. Tile GB/s: "
              "bytes of the tiles' `.npy` pair and landmask read, over the ingest time."]
    return "\n".join(lines) + "\n"


def write_section(text: str, section: str = SECTION) -> None:
    """Replace a benchmark's section of RESULTS.md (other sections are kept)."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if section in old:
        head, rest = old.split(section, 1)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new)


SETUPS = ((40.0, 1.0), (10.0, 0.2))  # (pixel m, side in degrees)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixel-m", type=float, help="generated pixel size (with --degrees: one setup)")
    parser.add_argument("--degrees", type=float, help="side of the area, in 0.1-degree steps")
    parser.add_argument("--res", type=int, nargs="+", default=[8, 9])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, help="directory to keep generated tiles in (reused)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per resolution; the best is kept")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args(argv)
    setups = SETUPS
    if args.pixel_m or args.degrees:
        setups = ((args.pixel_m or SETUPS[0][0], args.degrees or SETUPS[0][1]),)
    tables, load = [], os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        for pixel_m, degrees in setups:
            data = (args.data or Path(tmp)) / f"tiles_{pixel_m:g}m_{degrees:g}deg"
            t0 = time.perf_counter()
            tiles, pixels = generate(data, degrees, pixel_m)
            print(f"{len(tiles)} tiles ready in {time.perf_counter() - t0:.1f}s under {data}", file=sys.stderr)
            rows = []
            for res in args.res:
                for factorised in (False, True):  # the path it replaced is the in-run baseline
                    runs = [run(data, Path(tmp) / f"db_{pixel_m:g}_{res}_{factorised}_{k}", res, degrees,
                                args.workers, factorised) for k in range(args.repeats)]
                    rows.append(min(runs, key=lambda r: r["total_s"]))
            tables.append(table(rows, len(tiles), pixels, pixel_m, degrees))
    text = report(tables, args.workers, args.repeats, load, os.getloadavg()[0], memory_bandwidth())
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
