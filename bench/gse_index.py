"""Benchmark: locating GSE (AlphaEarth) COGs through the published index vs reading file headers.

    .venv/bin/python -m bench.gse_index       # from the repository root; rewrites its section of bench/RESULTS.md

The index is generated at the published size (9 years x 33,600 rows = 302,400 files, all
120 UTM zone-hemispheres, the published columns) and written as ``aef_index.parquet`` and
``aef_index.csv`` (with its WKT column). Timed: loading each (the columns a lookup needs)
and finding the files of a year that meet a 1 x 1 degree region. The baseline is what
locating files costs without an index: opening every file's header (``GseCogSource.files``),
measured on generated 64-band int8 COGs (tiled, overviews, as published but 512 px) from
disk and over a loopback HTTP server with range requests, then scaled to one year's files.
The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine

from bench.tessera_ingest import write_section
from rsembed_db.sources.gse_cog import BANDS, NODATA, GseCogSource
from rsembed_db.sources.gse_index import GseIndex
from rsembed_db.sources.gse_synthetic import global_index_rows, write_index

SECTION = "## GSE COG lookup: published index vs header scan (bench/gse_index.py)"
YEARS = list(range(2017, 2026))
PER_YEAR = 33_600
REGION = (12.0, 52.0, 13.0, 53.0)  # lon/lat box


def write_cogs(root: Path, count: int, size: int = 512) -> None:
    rng = np.random.default_rng(0)
    for k in range(count):
        path = root / "2024" / "33N" / f"file{k:04d}.tiff"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.tif")
        left, top = 300_000.0 + 5120.0 * k, 5_800_000.0
        with rasterio.open(tmp, "w", driver="GTiff", height=size, width=size, count=len(BANDS), dtype="int8",
                           crs="EPSG:32633", transform=Affine(10, 0, left, 0, 10, top - 10 * size),
                           nodata=NODATA, tiled=True, blockxsize=256, blockysize=256, interleave="band") as dst:
            dst.write(rng.integers(-127, 128, size=(len(BANDS), size, size), dtype=np.int8))
        rasterio.shutil.copy(tmp, path, driver="COG", BIGTIFF="YES")
        tmp.unlink()


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cogs", type=int, default=48, help="generated COGs for the header scan")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from tests.helpers.http_server import serve

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gse-index-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        rows = global_index_rows(YEARS, PER_YEAR, covered=REGION)
        parquet, csv = write_index(root / "aef_index.parquet", rows), write_index(root / "aef_index.csv", rows)
        print(f"index of {len(rows['path']):,} rows in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        results = {}
        for name, path in (("parquet", parquet), ("csv", csv)):
            load_s, index = timed(lambda p=path: GseIndex.load(str(p)), repeats=2)
            lookup_s, hits = timed(lambda i=index: i.lookup(2024, *REGION), repeats=20)
            results[name] = (path.stat().st_size, load_s, lookup_s, len(hits))
        write_cogs(root / "cogs", args.cogs)
        disk_s, files = timed(lambda: GseCogSource(str(root / "cogs"), find_index_file=False).files(), repeats=2)
        urls = ",".join(f"/2024/33N/file{k:04d}.tiff" for k in range(args.cogs))
        with serve(root / "cogs") as server:
            full = ",".join(server.url + u for u in urls.split(","))
            http_s, _ = timed(lambda: GseCogSource(full, find_index_file=False).files(), repeats=2)
            requests = len(server.log) // 2
        assert len(files) == args.cogs
    load_after = os.getloadavg()[0]
    per_disk, per_http = disk_s / args.cogs, http_s / args.cogs
    lines = [SECTION, "",
             f"Command: `.venv/bin/python -m bench.gse_index`. Generated index of {len(YEARS) * PER_YEAR:,} rows "
             f"({len(YEARS)} years x {PER_YEAR:,}, the published size), region {REGION} (lon/lat), year 2024; "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}; 1-minute load average {load_before:.1f} "
             f"before, {load_after:.1f} after.", "",
             "| method | file size MB | load s (once per run) | lookup ms (per region) | files found |",
             "|---|---|---|---|---|"]
    for name, (size, load_s, lookup_s, hits) in results.items():
        lines.append(f"| index, `aef_index.{name}` | {size / 1e6:,.1f} | {load_s:.2f} | {lookup_s * 1e3:.3f} | {hits} |")
    lines += ["", "| header scan (no index) | s per file | requests per file | s for one year's "
              f"{PER_YEAR:,} files (scaled) |", "|---|---|---|---|",
              f"| local disk ({args.cogs} COGs) | {per_disk * 1e3:.1f} ms | - | {per_disk * PER_YEAR:,.0f} |",
              f"| HTTP loopback, range requests ({args.cogs} COGs) | {per_http * 1e3:.1f} ms | {requests / args.cogs:.1f} "
              f"| {per_http * PER_YEAR:,.0f} |", "",
              f"Ratio: one lookup in the Parquet index, load included, is "
              f"{per_http * PER_YEAR / (results['parquet'][1] + results['parquet'][2]):,.0f}x faster than scanning "
              "one year's headers over loopback HTTP; over the internet each header costs at least one round trip "
              "(tens of ms), and a published 8192 px, 64-band file has a larger header than these 512 px ones."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, SECTION)


if __name__ == "__main__":
    main()
