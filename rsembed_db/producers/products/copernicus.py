"""``copernicus``: Copernicus-Embed, 768-d on a global 0.25-degree EPSG:4326 grid (2021).

Configuration: ``path`` (``RSEMBED_COPERNICUS_EMBED``; the GeoTIFF or its directory,
default ``$XDG_CACHE_HOME/rsembed-db/copernicus_embed/``), ``endpoint`` (``HF_ENDPOINT``;
the Hugging Face hub to download from when the file is missing, ``none`` for offline),
``sha256`` (expected hash of the download). The raster is read in 10-degree blocks,
each once per run. An ROI pools the pixels whose centre lies inside it; an ROI smaller
than a pixel takes the pixel holding its centroid (``meta["roi_smaller_than_pixel"]``).
Ocean pixels (all zero) are no-data.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine

from rsembed_db.models.base import ModelDescription
from rsembed_db.producers.products.mosaic import GridTarget
from rsembed_db.producers.products.rois import RoiSet
from rsembed_db.producers.products.tiled import TiledProduct
from rsembed_db.producers.products.zonal import PixelGrid
from rsembed_db.sources.copernicus_embed import (
    DIM,
    HF_FILENAME,
    HF_REPO,
    HUB,
    SHA256,
    CopernicusEmbedFile,
    default_path,
)
from rsembed_db.specs.request import EmbeddingRequest

BLOCK = 40  # pixels per block side: 10 degrees
RESOLUTION_DEG = 0.25


class CopernicusProducer(TiledProduct[tuple[int, int]]):
    name = "copernicus"
    years = (2021,)
    options = {"path": "RSEMBED_COPERNICUS_EMBED", "endpoint": "HF_ENDPOINT", "sha256": ""}

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.description = ModelDescription(
            name=self.name, dim=DIM, kind="precomputed", bands=(),
            scale_m=round(RESOLUTION_DEG * 111_320), licence="CC-BY-4.0",
            source=f"Copernicus-Embed (Copernicus-FM) via the Hugging Face hub: {HF_REPO}/{HF_FILENAME}",
            summary="Copernicus-Embed: one 768-d embedding per 0.25-degree cell, aggregated over "
                    "the Copernicus-Pretrain modalities (Sentinel-1/2/3/5P, DEM)",
            modalities=("optical", "sar", "atmosphere", "elevation"), years=self.years,
            config={"resolution_deg": RESOLUTION_DEG, "crs": "EPSG:4326"})
        self._file: CopernicusEmbedFile | None = None

    @property
    def file(self) -> CopernicusEmbedFile:
        if self._file is None:
            setting = str(self.setting("endpoint", HUB))
            endpoint = None if setting.strip().lower() in ("", "none", "off") else setting
            self._file = CopernicusEmbedFile(self.setting("path") or default_path(), endpoint,
                                             str(self.setting("sha256", SHA256)))
        return self._file

    def tiles_for(self, bounds: np.ndarray, year: int) -> dict[tuple[int, int], np.ndarray]:
        info = self.file.info()
        blocks: dict[tuple[int, int], list[int]] = {}
        for i, (r0, r1, c0, c1) in enumerate(self._pixel_ranges(bounds, info)):
            for bi in range(r0 // BLOCK, (r1 - 1) // BLOCK + 1) if r0 < r1 else ():
                for bj in range(c0 // BLOCK, (c1 - 1) // BLOCK + 1) if c0 < c1 else ():
                    blocks.setdefault((bi, bj), []).append(i)
        return {key: np.array(blocks[key]) for key in sorted(blocks)}

    def open_tile(self, key: tuple[int, int], year: int, bounds: np.ndarray) -> tuple[str, PixelGrid]:
        info = self.file.info()
        bi, bj = key
        rows = (bi * BLOCK, min((bi + 1) * BLOCK, info.shape[0]))
        cols = (bj * BLOCK, min((bj + 1) * BLOCK, info.shape[1]))
        block = self.file.read(rows, cols)
        valid = np.isfinite(block).all(axis=0) & (block != 0).any(axis=0)
        flat_values = block.reshape(DIM, -1).T
        transform = info.transform @ Affine.translation(cols[0], rows[0])
        return (f"block_r{rows[0]}_c{cols[0]}",
                PixelGrid(info.crs, transform, block.shape[1:], DIM, valid, None, lambda f: flat_values[f]))

    def grid_target(self, request: EmbeddingRequest) -> GridTarget:
        info = self.file.info()
        (r0, r1, c0, c1), = self._pixel_ranges(RoiSet.of([request]).lonlat_bounds, info)
        return GridTarget(info.crs, info.transform @ Affine.translation(c0, r0),
                          (max(r1 - r0, 1), max(c1 - c0, 1)))

    @staticmethod
    def _pixel_ranges(bounds: np.ndarray, info) -> list[tuple[int, int, int, int]]:
        """Half-open pixel rows/cols touched by each lon/lat box, clipped to the raster."""
        inv = ~info.transform
        height, width = info.shape
        out = []
        for minlon, minlat, maxlon, maxlat in np.asarray(bounds).tolist():
            u0, v0 = inv @ (minlon, maxlat)
            u1, v1 = inv @ (maxlon, minlat)
            r0, r1 = max(math.floor(min(v0, v1)), 0), min(math.floor(max(v0, v1)) + 1, height)
            c0, c1 = max(math.floor(min(u0, u1)), 0), min(math.floor(max(u0, u1)) + 1, width)
            out.append((r0, r1, c0, c1))
        return out

    def meta(self, request: EmbeddingRequest, **extra) -> dict:
        return super().meta(request, resolution_deg=RESOLUTION_DEG, **extra)
