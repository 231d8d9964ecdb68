"""Benchmark: Tessera from NPY tiles vs the per-UTM-zone Zarr store, on the same generated area.

    .venv/bin/python -m bench.tessera_layouts      # from the repository root; rewrites its section of bench/RESULTS.md

The same generated tiles (10 m pixels, the published density; 0.2 x 0.2 degree from 11.9 E,
52.0 N, across the UTM 32/33 boundary) are written as a geotessera download directory (NPY)
and as a Zarr store built the way geotessera builds them (4096-pixel shards of 32-pixel
inner chunks, Blosc zstd 3). Two workloads, each run end to end through ``run_ingest``
into a fresh LanceDB: the whole area at H3 res 9 (every tile read), and a small region (a
res-6 cell's worth of res-9 cells in one corner) where the Zarr path reads only the windows
it needs. Reported: bytes read from the source (NPY: the tile files; Zarr: bytes returned by
the store, index included), requests, wall time and cells/s. The load average is printed
before and after; the NPY path is the in-run baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import shapely

from bench.tessera_ingest import write_section
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.catalog import make_producer
from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.synthetic import synthetic_tile, write_registries, write_tile
from rsembed_db.sources.tessera.synthetic_zarr import write_zarr_store
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region

YEAR = 2024
WEST, SOUTH = 11.9, 52.0
SECTION = "## Tessera NPY tiles vs Zarr store (bench/tessera_layouts.py)"


def generate(root: Path, degrees: float, cname: str) -> tuple[Path, Path, int]:
    """The area as a geotessera download dir and as a Zarr store; (npy dir, store, tile count)."""
    n = round(degrees * 10)
    tiles = [TileId(round(WEST * 10) + i, round(SOUTH * 10) + j) for j in range(n) for i in range(n)]
    npy, store = root / "npy", root / "store"
    if not (store / "zarr.json").is_file():
        data = [synthetic_tile(t, YEAR) for t in tiles]
        for tile in data:
            write_tile(npy, tile)
        write_registries(npy, [(t, YEAR) for t in tiles])  # neighbouring tiles are unpublished, as in the store
        write_zarr_store(store, data, cname=cname)
    return npy, store, len(tiles)


def run(config: dict, region, res: int, db: Path) -> dict:
    spatials = tile_region(region, f"h3:{res}", max_tiles=10_000_000)
    producer = make_producer("tessera", model_config={**config, "url": config.get("url", "none")})
    requests = producer.requests(spatials, TemporalSpec.year(YEAR))
    start = time.perf_counter()
    summary = run_ingest(EmbeddingStore(db), producer, requests, IngestOptions(workers=2))
    seconds = time.perf_counter() - start
    assert summary.failed == 0 and summary.computed == len(spatials), summary
    tiles = producer.tiles
    requests_made = getattr(getattr(tiles, "files", None), "requests", tiles.reads * 3)
    return {"cells": len(spatials), "s": seconds, "bytes": tiles.bytes_read, "requests": requests_made,
            "reads": tiles.reads}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrees", type=float, default=0.2)
    parser.add_argument("--cname", default="zstd", help="Blosc compressor of the generated store")
    parser.add_argument("--data", type=Path, help="directory to keep the generated data in (reused)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tessera-layouts-") as tmp:
        data = args.data or Path(tmp)
        t0 = time.perf_counter()
        npy, store, ntiles = generate(data, args.degrees, args.cname)
        print(f"{ntiles} tiles as NPY and Zarr in {time.perf_counter() - t0:.0f}s under {data}", file=sys.stderr)
        from tests.helpers.http_server import serve  # the loopback server with range support

        area = shapely.box(WEST, SOUTH, WEST + args.degrees, SOUTH + args.degrees)
        corner = shapely.box(WEST + 0.005, SOUTH + 0.005, WEST + 0.035, SOUTH + 0.025)
        with serve(store) as server:
            setups = [("NPY tiles, local (baseline)", {"dir": str(npy)}),
                      ("Zarr store, local", {"dir": str(store)}),
                      ("Zarr store, HTTP (loopback, range requests)", {"dir": str(Path(tmp) / "none"), "url": server.url})]
            for workload, region in (("whole area", area), ("small corner", corner)):
                for name, config in setups:
                    runs = [run(config, region, 9, Path(tmp) / f"db-{len(rows)}-{k}") for k in range(args.repeats)]
                    best = min(runs, key=lambda r: r["s"])
                    rows.append({"workload": workload, "setup": name, **best})
                    print(rows[-1], file=sys.stderr)
    load_after = os.getloadavg()[0]
    text = report(rows, args, ntiles, load_before, load_after)
    print(text)
    if not args.no_write:
        write_section(text, SECTION)


def report(rows: list[dict], args, ntiles: int, load_before: float, load_after: float) -> str:
    lines = [SECTION, "",
             f"Command: `.venv/bin/python -m bench.tessera_layouts`. {ntiles} generated tiles of 10 m pixels "
             f"({args.degrees:g} x {args.degrees:g} degree from {WEST} E, {SOUTH} N, across UTM 32/33), year {YEAR}, "
             f"as a geotessera download directory and as a Zarr store (4096-px shards, 32-px inner chunks, Blosc "
             f"{args.cname}); H3 res 9, 2 tile threads, best of {args.repeats}; {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}; 1-minute load average {load_before:.1f} before, {load_after:.1f} after.",
             "", "| workload | source | cells | tiles read | MB read | requests | s | cells/s | bytes vs NPY | speed vs NPY |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == workload]
        base = group[0]
        for r in group:
            lines.append(f"| {workload} | {r['setup']} | {r['cells']:,} | {r['reads']} | {r['bytes'] / 1e6:,.1f} "
                         f"| {r['requests']:,} | {r['s']:.2f} | {r['cells'] / r['s']:,.0f} "
                         f"| {r['bytes'] / base['bytes']:.2f}x | {base['s'] / r['s']:.2f}x |")
    lines += ["", "MB read: NPY, the `.npy` pair and landmask of every tile read; Zarr, every byte the store "
              "returned (shard indexes included). Requests: NPY, three files per tile; Zarr, reads of the store "
              "(nearby inner chunks merged into one range request). The generated values are random, so Blosc "
              "cannot compress them: real stores hold fewer bytes per pixel than here."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
