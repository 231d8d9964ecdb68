"""The published Tessera layouts (geotessera 0.7 and 0.8+) and the 0.1-degree tile grid.

Tiles are 0.1 x 0.1 degree, named by their centre with two decimals
(``grid_0.15_52.05`` spans 0.1..0.2 E, 52.0..52.1 N). The ``.npy`` holds int8
(H, W, 128); ``_scales.npy`` float32 (H, W) (or (H, W, 128)); the landmask GeoTIFF
gives the tile's UTM CRS and transform and marks land pixels (0 = water).

The geotessera 0.7 tree, which is also the local directory every geotessera version
downloads into (``embeddings_dir``, with a ``tessera_metadata.json`` since 0.8)::

    <root>/registry.parquet                     lat, lon, year, hash, scales_hash, file_size, ...
    <root>/landmasks.parquet                    lat, lon, hash, file_size, ...
    <root>/global_0.1_degree_representation/<year>/grid_<lon>_<lat>/grid_<lon>_<lat>.npy
    <root>/global_0.1_degree_representation/<year>/grid_<lon>_<lat>/grid_<lon>_<lat>_scales.npy
    <root>/global_0.1_degree_tiff_all/grid_<lon>_<lat>.tiff

Today's mirror (geotessera 0.8+; ``<dataset>`` and ``<version>`` in ``datasets``)::

    <root>/npy/<dataset>/manifest.parquet       version, variant, year, lon, lat, grid_size, scales_size, ...
    <root>/npy/<dataset>/<year>/grid_<lon>_<lat>/grid_<lon>_<lat>{,_scales}.npy
    <root>/landmasks/<version>/landmasks.parquet   lon, lat, file_size, ...
    <root>/landmasks/<version>/grid_<lon>_<lat>.tiff
    <root>/zarr/<store>/                        per-UTM-zone Zarr v3 stores (``zarr_tiles``)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rsembed_db.sources.tessera.datasets import Dataset

EMBEDDINGS_DIR = "global_0.1_degree_representation"
LANDMASKS_DIR = "global_0.1_degree_tiff_all"
REGISTRY_FILE = "registry.parquet"
LANDMASKS_REGISTRY_FILE = "landmasks.parquet"
MANIFEST_FILE = "manifest.parquet"
MIRROR = "https://data.source.coop/tessera/tessera"  # geotessera 0.8+ (Source Cooperative)
# geotessera reads the Zarr stores from the bucket's S3 endpoint rather than the gateway.
ZARR_MIRROR = "https://s3.us-west-2.amazonaws.com/us-west-2.opendata.source.coop/tessera/tessera/zarr"
LEGACY_SERVER = "https://dl2.geotessera.org"  # geotessera 0.7: <server>/<version>/ is the 0.7 tree
TILES_PER_DEGREE = 10
DIM = 128
YEARS = tuple(range(2017, 2026))
_EPS = 1e-9


@dataclass(frozen=True, order=True)
class TileId:
    """A 0.1-degree tile; its west/south edges are ``ix / 10`` and ``iy / 10`` degrees."""

    ix: int
    iy: int

    @property
    def lon(self) -> float:
        """Centre longitude (the name's first number)."""
        return round(self.ix / TILES_PER_DEGREE + 0.05, 2)

    @property
    def lat(self) -> float:
        return round(self.iy / TILES_PER_DEGREE + 0.05, 2)

    @property
    def name(self) -> str:
        return f"grid_{self.lon:.2f}_{self.lat:.2f}"

    @property
    def zone(self) -> int:
        """UTM zone of the centre (no Norway / Svalbard exceptions), as geotessera assigns it."""
        return min(max(int((self.lon + 180.0) // 6.0) + 1, 1), 60)

    @property
    def registry_key(self) -> tuple[int, int]:
        """Centre in hundredths of a degree: how registry rows are matched."""
        return round(self.lon * 100), round(self.lat * 100)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        return (self.ix / TILES_PER_DEGREE, self.iy / TILES_PER_DEGREE,
                (self.ix + 1) / TILES_PER_DEGREE, (self.iy + 1) / TILES_PER_DEGREE)

    def embedding_path(self, year: int, subdir: str = EMBEDDINGS_DIR) -> str:
        return f"{subdir}/{year}/{self.name}/{self.name}.npy"

    def scales_path(self, year: int, subdir: str = EMBEDDINGS_DIR) -> str:
        return f"{subdir}/{year}/{self.name}/{self.name}_scales.npy"

    def landmask_path(self) -> str:
        return f"{LANDMASKS_DIR}/{self.name}.tiff"


def mirror_embedding_path(dataset: Dataset, tile: TileId, year: int) -> str:
    return tile.embedding_path(year, f"npy/{dataset.npy_dir}")


def mirror_scales_path(dataset: Dataset, tile: TileId, year: int) -> str:
    return tile.scales_path(year, f"npy/{dataset.npy_dir}")


def mirror_landmask_path(dataset: Dataset, tile: TileId) -> str:
    return f"landmasks/{dataset.landmask_dir}/{tile.name}.tiff"


def mirror_manifest_path(dataset: Dataset) -> str:
    return f"npy/{dataset.npy_dir}/{MANIFEST_FILE}"


def mirror_landmasks_registry_path(dataset: Dataset) -> str:
    return f"landmasks/{dataset.landmask_dir}/{LANDMASKS_REGISTRY_FILE}"


def tile_ranges(bounds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Inclusive tile index ranges (ix0, ix1, iy0, iy1) of (N, 4) lon/lat bounds.

    A box that only touches a tile edge does not reach into the next tile.
    """
    b = np.asarray(bounds, dtype=np.float64) * TILES_PER_DEGREE
    ix0 = np.floor(b[:, 0] + _EPS).astype(np.int64)
    iy0 = np.floor(b[:, 1] + _EPS).astype(np.int64)
    ix1 = np.maximum(np.ceil(b[:, 2] - _EPS).astype(np.int64) - 1, ix0)
    iy1 = np.maximum(np.ceil(b[:, 3] - _EPS).astype(np.int64) - 1, iy0)
    return ix0, ix1, iy0, iy1
