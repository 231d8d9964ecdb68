"""Copernicus-Embed (Copernicus-FM, 2021): one global GeoTIFF of 768-d embeddings.

Published on the Hugging Face hub as ``datasets/torchgeo/copernicus_embed``, file
``embed_map_310k.tif``: 721 x 1440 pixels of 0.25 degree in EPSG:4326 (pixel centres on
whole quarter degrees), 768 float32 bands, open ocean filled with 0.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from rsembed_db.errors import SpecError
from rsembed_db.sources.download import DownloadError, OfflineError, download

HF_REPO = "torchgeo/copernicus_embed"
HF_FILENAME = "embed_map_310k.tif"
HF_REVISION = "435b4a7bdce6f6fdbf4272f9d6e54f2604f35fdb"
SHA256 = "38f6fd15b20153f7b3ba2d7b38fb9ef56b751dfcb42e17cc1b02aad1580a59ad"
HUB = "https://huggingface.co"
DIM = 768


def hub_url(endpoint: str = HUB) -> str:
    return f"{endpoint.rstrip('/')}/datasets/{HF_REPO}/resolve/{HF_REVISION}/{HF_FILENAME}"


@dataclass(frozen=True)
class RasterInfo:
    crs: str
    transform: Affine
    shape: tuple[int, int]


class CopernicusEmbedFile:
    """The GeoTIFF at ``path`` (a file, or a directory holding ``embed_map_310k.tif``),
    downloaded from the hub (``endpoint``; None: offline) when missing."""

    def __init__(self, path: Path, endpoint: str | None, sha256: str = SHA256) -> None:
        path = Path(path).expanduser()
        self.path = path / HF_FILENAME if path.is_dir() or not path.suffix else path
        self.endpoint, self.sha256 = endpoint, sha256
        self._lock = threading.Lock()
        self._info: RasterInfo | None = None

    def info(self) -> RasterInfo:
        """CRS, transform and size (downloading the file first when needed)."""
        with self._lock:
            if self._info is None:
                self._ensure()
                with rasterio.open(self.path) as src:
                    if src.count != DIM or src.crs is None:
                        raise SpecError("copernicus.path", f"{self.path}: expected {DIM} bands with a "
                                        f"CRS, got {src.count} bands, CRS {src.crs}")
                    self._info = RasterInfo(src.crs.to_string(), src.transform, (src.height, src.width))
            return self._info

    def read(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """(768, h, w) float32 of a pixel window."""
        with rasterio.open(self.path) as src:
            window = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
            return src.read(window=window, out_dtype=np.float32)

    def _ensure(self) -> None:
        if self.path.is_file():
            return
        fix = (f"download {hub_url()} (huggingface-cli download --repo-type dataset {HF_REPO} "
               f"{HF_FILENAME}) and set RSEMBED_COPERNICUS_EMBED (or --config path=...) to it; "
               f"expected at {self.path}")
        if self.endpoint is None:
            raise SpecError("copernicus.path", f"Copernicus-Embed GeoTIFF not found and downloads are "
                            f"off: {fix}")
        try:
            download(hub_url(self.endpoint), self.path, sha256=self.sha256)
        except OfflineError as exc:
            raise SpecError("copernicus.path", f"{exc}: {fix}") from None
        except DownloadError as exc:
            raise SpecError("copernicus.path", f"{exc}; {fix}") from None


def default_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "rsembed-db" / "copernicus_embed" / HF_FILENAME
