"""Deterministic stand-in Tessera tiles in the exact published layout (tests, benchmarks).

Each tile is a north-up raster in the UTM zone of its centre (or a given CRS), covering
the projected 0.1-degree box snapped outward to whole pixels, as published tiles do:
neighbouring tiles overlap slightly and ownership decides which one counts a pixel.
Values are int8 with power-of-two scales, so dequantised sums are exact in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from affine import Affine

from rsembed_db.sources.download import sha256_file
from rsembed_db.sources.tessera.layout import (
    DIM,
    LANDMASKS_REGISTRY_FILE,
    REGISTRY_FILE,
    TileId,
)
from rsembed_db.specs.spatial import WGS84, reproject_geometry, transformer, utm_crs_for


@dataclass
class SyntheticTile:
    tile: TileId
    year: int
    quantised: np.ndarray  # (H, W, 128) int8
    scales: np.ndarray  # (H, W) float32
    land: np.ndarray  # (H, W) bool
    crs: str
    transform: Affine


def tile_grid(tile: TileId, pixel_m: float = 10.0, crs: str | None = None
              ) -> tuple[str, Affine, tuple[int, int]]:
    """(CRS, transform, (H, W)) of the pixel grid covering ``tile``'s box."""
    crs = crs or utm_crs_for(tile.lon, tile.lat)
    box = reproject_geometry(shapely.segmentize(shapely.box(*tile.bounds), 0.001), WGS84, crs)
    minx, miny, maxx, maxy = box.bounds
    left, bottom = math.floor(minx / pixel_m) * pixel_m, math.floor(miny / pixel_m) * pixel_m
    right, top = math.ceil(maxx / pixel_m) * pixel_m, math.ceil(maxy / pixel_m) * pixel_m
    shape = (round((top - bottom) / pixel_m), round((right - left) / pixel_m))
    return crs, Affine(pixel_m, 0.0, left, 0.0, -pixel_m, top), shape


def synthetic_tile(tile: TileId, year: int, pixel_m: float = 10.0, crs: str | None = None,
                   seed: int = 0, land: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                   ) -> SyntheticTile:
    """Random int8 values, scales 2**-6..2**-8 per pixel; ``land(lon, lat) -> bool`` mask."""
    crs, transform, shape = tile_grid(tile, pixel_m, crs)
    rng = np.random.default_rng([seed, tile.ix + 18000, tile.iy + 9000, year])
    quantised = rng.integers(-127, 128, size=(*shape, DIM), dtype=np.int8)
    scales = (2.0 ** -rng.integers(6, 9, size=shape)).astype(np.float32)
    mask = np.ones(shape, dtype=bool)
    if land is not None:
        lon, lat = pixel_lonlat(crs, transform, shape)
        mask = np.asarray(land(lon, lat), dtype=bool)
    return SyntheticTile(tile, year, quantised, scales, mask, crs, transform)


def pixel_lonlat(crs: str, transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of every pixel centre, (H, W) each."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    x = transform.c + transform.a * (cols + 0.5)
    y = transform.f + transform.e * (rows + 0.5)
    return transformer(crs, WGS84).transform(x, y)


def write_tile(root: str | Path, data: SyntheticTile) -> list[str]:
    """Write the ``.npy`` pair and the landmask GeoTIFF; returns their relative paths."""
    root = Path(root)
    tile, year = data.tile, data.year
    paths = [tile.embedding_path(year), tile.scales_path(year), tile.landmask_path()]
    for relative in paths:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
    np.save(root / paths[0], data.quantised)
    np.save(root / paths[1], data.scales)
    h, w = data.land.shape
    with rasterio.open(root / paths[2], "w", driver="GTiff", height=h, width=w, count=1,
                       dtype="uint8", crs=data.crs, transform=data.transform,
                       compress="deflate") as dst:
        dst.write(data.land.astype(np.uint8), 1)
    return paths


def write_registries(root: str | Path, tiles: Iterable[tuple[TileId, int]],
                     wrong_hash: Iterable[TileId] = ()) -> None:
    """``registry.parquet`` and ``landmasks.parquet`` for tiles written under ``root``.

    Tiles in ``wrong_hash`` get a registry hash that does not match their ``.npy``.
    """
    root = Path(root)
    wrong = set(wrong_hash)
    rows: dict[str, list] = {k: [] for k in ("lon", "lat", "year", "hash", "scales_hash",
                                             "file_size", "lon_i", "lat_i")}
    masks: dict[tuple[float, float], str] = {}
    for tile, year in tiles:
        npy, scales = root / tile.embedding_path(year), root / tile.scales_path(year)
        digest = sha256_file(npy)
        rows["lon"].append(tile.lon)
        rows["lat"].append(tile.lat)
        rows["year"].append(year)
        rows["hash"].append(("0" * 64) if tile in wrong else digest)
        rows["scales_hash"].append(sha256_file(scales))
        rows["file_size"].append(npy.stat().st_size)
        rows["lon_i"].append(tile.registry_key[0])
        rows["lat_i"].append(tile.registry_key[1])
        masks[(tile.lon, tile.lat)] = sha256_file(root / tile.landmask_path())
    pq.write_table(pa.table(rows), root / REGISTRY_FILE)
    pq.write_table(pa.table({"lon": [k[0] for k in masks], "lat": [k[1] for k in masks],
                             "hash": list(masks.values())}), root / LANDMASKS_REGISTRY_FILE)
