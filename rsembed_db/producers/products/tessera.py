"""``tessera``: TESSERA annual embeddings (128-d, 10 m, 0.1-degree tiles in local UTM).

Configuration (``--config key=value`` or the environment variable):

- ``dir`` (``RSEMBED_TESSERA_DIR``): local directory: a geotessera download directory
  (read in place), a copy of a mirror tree, or a Zarr store (default
  ``$XDG_CACHE_HOME/rsembed-db/tessera/<dataset>``);
- ``url`` (``RSEMBED_TESSERA_URL``): mirror to read missing tiles from (default today's
  geotessera mirror; ``none`` to stay offline);
- ``version`` (default ``v1``) and ``variant`` (default: the version's default variant):
  the dataset, part of the storage key when not the default ``v1`` / ``vultr``;
- ``layout`` (default ``auto``): ``legacy`` (0.7 tree), ``npy`` (today's mirror tree) or
  ``zarr`` (per-UTM-zone store), detected when ``auto``;
- ``verify_local`` (default false): check local files against the index (SHA-256 or size).

Pooling counts each ground pixel once: a tile owns the pixels whose centre lies in its
0.1-degree box, whatever its UTM zone; no-data, open-water pixels and pixels whose scale
fails the validity rule (finite, > 0, < 1) are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import shapely

from rsembed_db.models.base import ModelDescription
from rsembed_db.producers.products.mosaic import GridTarget
from rsembed_db.producers.products.tiled import TiledProduct
from rsembed_db.producers.products.zonal import PixelGrid
from rsembed_db.sources.tessera.datasets import DEFAULT, dataset_for
from rsembed_db.sources.tessera.layout import DIM, MIRROR, YEARS, TileId, tile_ranges
from rsembed_db.sources.tessera.open import LAYOUTS, open_tiles
from rsembed_db.sources.tessera.tiles import TesseraTiles
from rsembed_db.sources.tessera.zarr_tiles import ZarrTiles
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.spatial import WGS84, reproject_geometry
from rsembed_db.specs.validate import require_choice
from rsembed_db.tiling.chip_grid import chip_grid_for
from rsembed_db.tiling.scanline import polygon_mask

SCALE_M = 10.0
_BOX_SEGMENT_DEG = 0.001


class TesseraProducer(TiledProduct[TileId]):
    name = "tessera"
    years = YEARS
    default_year = 2021  # the reference client's year for temporal=None
    default_vector_dtype = "float16"  # int8 source values: recall@10 vs float32 in docs/storage.md
    options = {"dir": "RSEMBED_TESSERA_DIR", "url": "RSEMBED_TESSERA_URL", "version": "", "variant": "",
               "layout": "", "verify_local": ""}
    flagged_as = "refused for an invalid scale (not finite, <= 0 or >= 1: a published sentinel)"
    flagged_meta = "pixels_invalid_scale"

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.dataset = dataset_for(str(self.setting("version", DEFAULT.version)), self.setting("variant"))
        self.layout = str(self.setting("layout", "auto")).strip().lower()
        require_choice("tessera.layout", self.layout, LAYOUTS)
        self.description = ModelDescription(
            name=self.name, dim=DIM, kind="precomputed", bands=(), scale_m=SCALE_M,
            licence="CC-BY-4.0", source=f"TESSERA {self.dataset.label} via geotessera's published layouts ({MIRROR})",
            summary="TESSERA: Sentinel-1/2 annual time series -> 128-d per-pixel embedding "
                    "(int8 x float32 scale), 0.1-degree tiles in local UTM",
            modalities=("optical", "sar"), years=YEARS,
            config={"version": self.dataset.version, "variant": self.dataset.variant, "layout": self.layout,
                    "layouts": list(LAYOUTS[1:]), "key": self.key_config, "tile_deg": 0.1,
                    "valid_scale": "finite, > 0 and < 1"})
        self._tiles: TesseraTiles | ZarrTiles | None = None

    @property
    def key_config(self) -> dict[str, str]:
        """The dataset: ``{"version": "v1"}`` for the default v1 / vultr (the key it always had),
        version and variant for any other."""
        if self.dataset == DEFAULT:
            return {"version": DEFAULT.version}
        return {"version": self.dataset.version, "variant": self.dataset.variant}

    @property
    def tiles(self) -> TesseraTiles | ZarrTiles:
        """The tile source (opened on first use, so describing the model needs no data)."""
        if self._tiles is None:
            cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            name = self.dataset.npy_dir or self.dataset.zarr_dir or self.dataset.version
            root = Path(self.setting("dir") or cache / "rsembed-db" / "tessera" / name)
            url = self.setting("url", MIRROR)
            url = None if str(url).strip().lower() in ("", "none", "off") else str(url)
            verify = str(self.setting("verify_local", False)).lower() in ("1", "true", "yes")
            self._tiles = open_tiles(root, url, self.dataset, self.layout, verify)
        return self._tiles

    def tiles_for(self, bounds: np.ndarray, year: int) -> dict[TileId, np.ndarray]:
        ix0, ix1, iy0, iy1 = tile_ranges(bounds)
        nx, ny = ix1 - ix0 + 1, iy1 - iy0 + 1
        roi = np.repeat(np.arange(len(bounds)), nx * ny)
        k = np.arange(len(roi)) - np.repeat(np.cumsum(nx * ny) - nx * ny, nx * ny)
        ix = ix0[roi] + k % nx[roi]
        iy = iy0[roi] + k // nx[roi]
        order = np.lexsort((roi, ix, -iy))  # north to south, west to east
        ix, iy, roi = ix[order], iy[order], roi[order]
        cuts = np.flatnonzero((np.diff(ix) != 0) | (np.diff(iy) != 0)) + 1
        return {TileId(int(ix[a]), int(iy[a])): roi[a:b]
                for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(roi)])}

    def unpublished(self, keys: list[TileId], year: int) -> dict[TileId, str]:
        return self.tiles.unpublished(keys, year)

    def open_tile(self, key: TileId, year: int, bounds: np.ndarray) -> tuple[str, PixelGrid]:
        tile = self.tiles.read(key, year, tuple(bounds.tolist()))
        box = shapely.segmentize(shapely.box(*key.bounds), _BOX_SEGMENT_DEG)
        owned = polygon_mask(np.array([reproject_geometry(box, WGS84, tile.crs)]), tile.transform, tile.shape)
        valid, flagged = tile.valid_and_flagged()
        return key.name, PixelGrid(tile.crs, tile.transform, tile.shape, DIM, valid & owned,
                                   owned, tile.values, flagged & owned, tile.factors())

    def grid_target(self, request: EmbeddingRequest) -> GridTarget:
        chip = chip_grid_for(request.spatial, SCALE_M)
        return GridTarget(chip.crs, chip.transform, (chip.height, chip.width))

    def meta(self, request: EmbeddingRequest, **extra) -> dict:
        return super().meta(request, version=self.dataset.version, variant=self.dataset.variant,
                            layout=self.tiles.layout, **extra)
