"""Shared helpers for the Tessera tests: tile trees and brute-force expected values."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.synthetic import (
    SyntheticTile,
    pixel_lonlat,
    synthetic_tile,
    write_registries,
    write_tile,
)

YEAR = 2024
PIXEL_M = 50.0  # coarse pixels keep the fixtures small; the code reads any pixel size


def make_tree(root: Path, tiles: list[TileId], year: int = YEAR, pixel_m: float = PIXEL_M,
              registry: bool = True, wrong_hash: tuple[TileId, ...] = (), **kwargs
              ) -> dict[TileId, SyntheticTile]:
    """Write ``tiles`` (and registries) under ``root``; returns the arrays written."""
    data = {t: synthetic_tile(t, year, pixel_m=pixel_m, **kwargs) for t in tiles}
    for tile in data.values():
        write_tile(root, tile)
    if registry:
        write_registries(root, [(t, year) for t in tiles], wrong_hash=wrong_hash)
    return data


def owned_pixels(tile: SyntheticTile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, owned) of every pixel: owned when its centre is in the tile's box."""
    lon, lat = pixel_lonlat(tile.crs, tile.transform, tile.land.shape)
    west, south, east, north = tile.tile.bounds
    owned = (lon >= west) & (lon < east) & (lat >= south) & (lat < north)
    return lon, lat, owned


def brute_mean(tiles: list[SyntheticTile], inside) -> np.ndarray:
    """Mean of dequantised land pixels whose centre lon/lat satisfies ``inside`` (float64)."""
    total, count = np.zeros(128), 0
    for tile in tiles:
        lon, lat, owned = owned_pixels(tile)
        sel = owned & tile.land & inside(lon, lat)
        values = tile.quantised[sel].astype(np.float64) * tile.scales[sel][:, None]
        total += values.sum(axis=0)
        count += int(sel.sum())
    assert count > 0
    return total / count


def make_layouts(root: Path, tiles: list[TileId], year: int = YEAR, pixel_m: float = PIXEL_M,
                 dataset=None, **kwargs) -> tuple[dict[TileId, SyntheticTile], dict[str, Path]]:
    """The same generated tiles in the three published layouts under ``root``:
    ``legacy`` (0.7 tree + SHA-256 registries), ``mirror`` (today's ``npy/<dataset>`` tree +
    manifest, with ``zarr/<store>`` beside it) and ``zarr`` (that store)."""
    from rsembed_db.sources.tessera.datasets import DEFAULT
    from rsembed_db.sources.tessera.synthetic import write_manifest, write_mirror_tile
    from rsembed_db.sources.tessera.synthetic_zarr import write_zarr_store

    dataset = dataset or DEFAULT
    data = make_tree(root / "legacy", tiles, year=year, pixel_m=pixel_m, **kwargs)
    for tile in data.values():
        write_mirror_tile(root / "mirror", tile, dataset)
    write_manifest(root / "mirror", dataset, [(t, year) for t in tiles])
    store = root / "mirror" / "zarr" / dataset.zarr_dir
    write_zarr_store(store, data.values(), shard=ZARR_SHARD, inner=ZARR_INNER)
    return data, {"legacy": root / "legacy", "mirror": root / "mirror", "zarr": store}


ZARR_SHARD, ZARR_INNER = 256, 32  # small shards keep the test stores small (published: 4096, 32)
