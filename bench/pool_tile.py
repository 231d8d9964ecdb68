"""Benchmark: Tessera hexagon pooling of one whole 10 m tile, against memory speed.

    .venv/bin/python -m bench.pool_tile            # appends to bench/RESULTS.md

One generated tile in the published layout (0.1 degree at 52 N: about 1137 x 725 pixels x
128-d int8, with no-data and an ownership boundary) is pooled into every H3 cell covering
it (``zonal.pool_grid``: one rasterisation of all cells, one mask gather, the weighted
segment sums), on one thread, in alternation with the per-pixel path it replaced
(``zonal.FACTORISED = False``) and a numpy copy of the tile's int8 pixels (the memory
yardstick: GB/s read + written). Figures are the best of ``--repeats``. Tile GB/s: the
tile's int8 pixels (all of them are read once) over the pooling time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np
import shapely

import rsembed_db
from bench.results import commit, finish
from rsembed_db.producers.products import zonal
from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.synthetic import synthetic_tile
from rsembed_db.sources.tessera.tile import TesseraTile
from rsembed_db.specs.spatial import WGS84, lonlat_geometries, reproject_geometry
from rsembed_db.tiling.plan import tile_region

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Tessera pooling of one 10 m tile (bench/pool_tile.py)"
TILE = TileId(115, 520)  # 11.5-11.6 E, 52.0-52.1 N


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[9])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args()
    if Path(rsembed_db.__file__).resolve().parent != ROOT / "rsembed_db":
        raise SystemExit("run from the repository root as `python -m bench.pool_tile`")
    load_start = os.getloadavg()
    print(f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    data = synthetic_tile(TILE, 2024, pixel_m=10.0)
    tile = TesseraTile(TILE, data.quantised, data.scales, data.land, data.crs, data.transform)
    height, width = tile.shape
    cols = np.arange(width)[None, :]
    owned = np.broadcast_to(cols >= width // 10, tile.shape)  # a tile boundary: the west tenth is another tile's
    valid, flagged = tile.valid_and_flagged()
    grid = zonal.PixelGrid(tile.crs, tile.transform, tile.shape, 128, valid & owned, owned, tile.values,
                           flagged & owned, tile.factors())
    pixels = tile.quantised.reshape(-1)
    copy = np.empty_like(pixels)
    rows = []
    for res in args.res:
        cells = tile_region(shapely.box(*TILE.bounds), f"h3:{res}", max_tiles=10**7)
        geoms = reproject_geometry(np.array(lonlat_geometries(cells)), WGS84, tile.crs)
        centroids = shapely.get_coordinates(shapely.centroid(geoms))
        seconds: dict[str, list[float]] = {"weighted": [], "per pixel": [], "copy": []}
        for _ in range(args.repeats):  # alternate, so that load affects each alike
            for factorised, name in ((True, "weighted"), (False, "per pixel")):
                zonal.FACTORISED = factorised
                seconds[name].append(best(lambda: zonal.pool_grid(grid, geoms, centroids, "mean"), 1))
            seconds["copy"].append(best(lambda: np.copyto(copy, pixels), 1))
        zonal.FACTORISED = True
        fast, slow, mem = (min(seconds[k]) for k in ("weighted", "per pixel", "copy"))
        copy_gbs, tile_gbs = 2 * pixels.nbytes / mem / 1e9, pixels.nbytes / fast / 1e9
        rows.append(f"| {res} | {len(cells):,} | {height} x {width} | {slow:.3f} | {fast:.3f} | "
                    f"{len(cells) / fast:,.0f} | {slow / fast:.2f} | {tile_gbs:.2f} | {copy_gbs:.1f} | "
                    f"{tile_gbs / copy_gbs:.1%} |")
        print(rows[-1], flush=True)
    lines = [f"### {dt.date.today().isoformat()}, commit {commit()}", "",
             f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, one thread, "
             f"best of {args.repeats}.", "",
             "| H3 res | cells | tile px | per pixel s | weighted s | cells/s | speed-up | tile GB/s | copy GB/s "
             "| of copy |", "|---|---|---|---|---|---|---|---|---|---|", *rows]
    finish(HEADING, __doc__, lines, load_start, write=not args.no_write)


if __name__ == "__main__":
    main()
