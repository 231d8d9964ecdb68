"""Deterministic stand-in Tessera tiles, written the way geotessera publishes them (tests, benchmarks).

Each tile is a north-up raster in the UTM zone of its centre (or a given CRS), covering
the projected 0.1-degree box snapped outward to whole pixels, as published tiles do:
neighbouring tiles overlap slightly and ownership decides which one counts a pixel.
Values depend only on the ground pixel (zone, pixel column and row on the zone's
canonical northern grid, year), so overlapping tiles agree, as a per-zone Zarr store
needs; int8 values with power-of-two scales keep dequantised sums exact in float32.

Writers, one per published layout (``synthetic_zarr`` writes the third, the Zarr store):

- ``write_tile`` + ``write_registries``: the geotessera 0.7 tree
  (``global_0.1_degree_representation/``, ``global_0.1_degree_tiff_all/``, SHA-256
  ``registry.parquet`` / ``landmasks.parquet``), which is also the local directory
  geotessera's ``download`` writes (``datasets.write_sidecar`` adds its ``tessera_metadata.json``);
- ``write_mirror_tile`` + ``write_manifest``: today's mirror tree (``npy/<dataset>/``,
  ``landmasks/<version>/``, ``manifest.parquet`` with sizes and no hashes).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from affine import Affine

from rsembed_db.sources.download import sha256_file
from rsembed_db.sources.tessera import layout
from rsembed_db.sources.tessera.datasets import Dataset
from rsembed_db.sources.tessera.layout import DIM, LANDMASKS_REGISTRY_FILE, REGISTRY_FILE, TileId
from rsembed_db.specs.spatial import WGS84, reproject_geometry, transformer, utm_crs_for

_TABLE_ROWS = 1 << 16
SOUTH_OFFSET_M = 10_000_000.0  # EPSG:327NN northing - EPSG:326NN northing


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


def canonical(crs: str, transform: Affine) -> tuple[str, Affine]:
    """The grid on the zone's northern CRS (EPSG:327NN -> 326NN, northings minus 1e7), as
    geotessera's Zarr stores hold southern tiles."""
    code = int(crs.split(":")[1]) if crs.upper().startswith("EPSG:") else 0
    if 32701 <= code <= 32760:
        return f"EPSG:{code - 100}", Affine.translation(0, -SOUTH_OFFSET_M) @ transform
    return crs, transform


@lru_cache(maxsize=1)
def _table() -> np.ndarray:
    return np.random.default_rng(20250101).integers(-127, 128, size=(_TABLE_ROWS, DIM), dtype=np.int8)


def _pixel_keys(crs: str, transform: Affine, shape: tuple[int, int], year: int, seed: int) -> np.ndarray:
    """(H, W) uint64 hash of each ground pixel (zone grid column and row, year, seed)."""
    zone_crs, grid = canonical(crs, transform)
    code = int(zone_crs.split(":")[1]) if zone_crs.upper().startswith("EPSG:") else 0
    col0 = round(grid.c / grid.a)
    row0 = round(grid.f / grid.e)
    cols = np.arange(shape[1], dtype=np.uint64) + np.uint64(col0 + (1 << 32))
    rows = np.arange(shape[0], dtype=np.uint64) + np.uint64(row0 + (1 << 32))
    base = np.uint64((code * 1_000_003 + year * 7919 + seed * 104_729) & ((1 << 63) - 1))
    with np.errstate(over="ignore"):
        key = rows[:, None] * np.uint64(0x9E3779B97F4A7C15) ^ cols[None, :] * np.uint64(0xC2B2AE3D27D4EB4F) ^ base
        key ^= key >> np.uint64(31)
        key *= np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(29)
    return key


def synthetic_tile(tile: TileId, year: int, pixel_m: float = 10.0, crs: str | None = None,
                   seed: int = 0, land: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                   ) -> SyntheticTile:
    """int8 values and scales 2**-6..2**-8 per ground pixel; ``land(lon, lat) -> bool`` mask."""
    crs, transform, shape = tile_grid(tile, pixel_m, crs)
    key = _pixel_keys(crs, transform, shape, year, seed)
    quantised = _table()[(key & np.uint64(_TABLE_ROWS - 1)).astype(np.intp)]
    scales = np.exp2(-(6.0 + ((key >> np.uint64(40)) % np.uint64(3)).astype(np.float32))).astype(np.float32)
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


def _write_arrays(root: Path, data: SyntheticTile, npy: str, scales: str, landmask: str) -> list[str]:
    for relative in (npy, scales, landmask):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
    np.save(root / npy, data.quantised)
    np.save(root / scales, data.scales)
    h, w = data.land.shape
    with rasterio.open(root / landmask, "w", driver="GTiff", height=h, width=w, count=1,
                       dtype="uint8", crs=data.crs, transform=data.transform,
                       compress="deflate") as dst:
        dst.write(data.land.astype(np.uint8), 1)
    return [npy, scales, landmask]


def write_tile(root: str | Path, data: SyntheticTile) -> list[str]:
    """The ``.npy`` pair and the landmask in the 0.7 / local layout; returns their relative paths."""
    tile, year = data.tile, data.year
    return _write_arrays(Path(root), data, tile.embedding_path(year), tile.scales_path(year),
                         tile.landmask_path())


def write_mirror_tile(root: str | Path, data: SyntheticTile, dataset: Dataset) -> list[str]:
    """The same files in today's mirror layout (``npy/<dataset>/...``, ``landmasks/<version>/...``)."""
    tile, year = data.tile, data.year
    return _write_arrays(Path(root), data, layout.mirror_embedding_path(dataset, tile, year),
                         layout.mirror_scales_path(dataset, tile, year),
                         layout.mirror_landmask_path(dataset, tile))


def write_registries(root: str | Path, tiles: Iterable[tuple[TileId, int]],
                     wrong_hash: Iterable[TileId] = ()) -> None:
    """``registry.parquet`` and ``landmasks.parquet`` (GeoParquet columns of geotessera 0.7)
    for tiles written under ``root``; tiles in ``wrong_hash`` get a hash that does not match."""
    root = Path(root)
    wrong = set(wrong_hash)
    rows: dict[str, list] = {k: [] for k in ("lat", "lon", "year", "hash", "scales_hash", "mtime",
                                             "file_size", "scales_size", "lon_i", "lat_i", "geometry")}
    masks: dict[TileId, Path] = {}
    for tile, year in tiles:
        npy, scales = root / tile.embedding_path(year), root / tile.scales_path(year)
        rows["lat"].append(tile.lat)
        rows["lon"].append(tile.lon)
        rows["year"].append(year)
        rows["hash"].append(("0" * 64) if tile in wrong else sha256_file(npy))
        rows["scales_hash"].append(sha256_file(scales))
        rows["mtime"].append(dt.datetime.fromtimestamp(npy.stat().st_mtime, dt.timezone.utc))
        rows["file_size"].append(npy.stat().st_size)
        rows["scales_size"].append(scales.stat().st_size)
        rows["lon_i"].append(tile.registry_key[0])
        rows["lat_i"].append(tile.registry_key[1])
        rows["geometry"].append(shapely.to_wkb(shapely.Point(tile.lon, tile.lat)))
        masks[tile] = root / tile.landmask_path()
    _write_geoparquet(pa.table(rows).cast(_schema(rows)), root / REGISTRY_FILE)
    mask_rows = {"lat": [t.lat for t in masks], "lon": [t.lon for t in masks],
                 "hash": [sha256_file(p) for p in masks.values()],
                 "file_size": [p.stat().st_size for p in masks.values()],
                 "lon_i": [t.registry_key[0] for t in masks], "lat_i": [t.registry_key[1] for t in masks],
                 "geometry": [shapely.to_wkb(shapely.Point(t.lon, t.lat)) for t in masks]}
    _write_geoparquet(pa.table(mask_rows).cast(_schema(mask_rows)), root / LANDMASKS_REGISTRY_FILE)


def write_manifest(root: str | Path, dataset: Dataset, tiles: Iterable[tuple[TileId, int]],
                   wrong_size: Iterable[TileId] = ()) -> None:
    """``npy/<dataset>/manifest.parquet`` and ``landmasks/<version>/landmasks.parquet`` as the
    geotessera 0.8+ inventory writes them (sizes, S3 URLs, no hashes) for tiles under ``root``;
    tiles in ``wrong_size`` get a ``grid_size`` one byte off."""
    root = Path(root)
    wrong = set(wrong_size)
    base = "s3://us-west-2.opendata.source.coop/tessera/tessera"
    rows: dict[str, list] = {k: [] for k in ("version", "variant", "year", "lon", "lat", "directory",
                                             "grid_path", "scales_path", "grid_mtime", "scales_mtime",
                                             "grid_size", "scales_size", "lon_i", "lat_i")}
    masks: dict[TileId, Path] = {}
    for tile, year in sorted(tiles, key=lambda ty: (ty[1], ty[0].lon, ty[0].lat)):
        npy = root / layout.mirror_embedding_path(dataset, tile, year)
        scales = root / layout.mirror_scales_path(dataset, tile, year)
        rows["version"].append(dataset.version.removeprefix("v") + (".0" if "." not in dataset.version else ""))
        rows["variant"].append(dataset.variant)
        rows["year"].append(year)
        rows["lon"].append(tile.lon)
        rows["lat"].append(tile.lat)
        rows["directory"].append(f"{base}/{Path(layout.mirror_embedding_path(dataset, tile, year)).parent}")
        rows["grid_path"].append(f"{base}/{layout.mirror_embedding_path(dataset, tile, year)}")
        rows["scales_path"].append(f"{base}/{layout.mirror_scales_path(dataset, tile, year)}")
        for kind, path in (("grid", npy), ("scales", scales)):
            rows[f"{kind}_mtime"].append(dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc))
            rows[f"{kind}_size"].append(path.stat().st_size + (1 if kind == "grid" and tile in wrong else 0))
        rows["lon_i"].append(tile.registry_key[0])
        rows["lat_i"].append(tile.registry_key[1])
        masks[tile] = root / layout.mirror_landmask_path(dataset, tile)
    manifest = root / layout.mirror_manifest_path(dataset)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows).cast(_schema(rows)), manifest)
    mask_rows = {"lon": [t.lon for t in masks], "lat": [t.lat for t in masks],
                 "file_size": [p.stat().st_size for p in masks.values()],
                 "mtime": [dt.datetime.fromtimestamp(p.stat().st_mtime, dt.timezone.utc) for p in masks.values()],
                 "key": [f"{base}/{layout.mirror_landmask_path(dataset, t)}" for t in masks],
                 "lon_i": [t.registry_key[0] for t in masks], "lat_i": [t.registry_key[1] for t in masks]}
    pq.write_table(pa.table(mask_rows).cast(_schema(mask_rows)), root / layout.mirror_landmasks_registry_path(dataset))


_TYPES = {"year": pa.int64(), "lon_i": pa.int32(), "lat_i": pa.int32(), "file_size": pa.int64(),
          "scales_size": pa.int64(), "grid_size": pa.int64(), "mtime": pa.timestamp("us", tz="UTC"),
          "grid_mtime": pa.timestamp("us", tz="UTC"), "scales_mtime": pa.timestamp("us", tz="UTC"),
          "lon": pa.float64(), "lat": pa.float64(), "geometry": pa.binary()}


def _schema(columns: Iterable[str]) -> pa.Schema:
    return pa.schema([(name, _TYPES.get(name, pa.string())) for name in columns])


def _write_geoparquet(table: pa.Table, path: Path) -> None:
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}}}
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), path)
