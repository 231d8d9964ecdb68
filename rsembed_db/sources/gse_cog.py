"""Google Satellite Embedding (AlphaEarth Foundations) from the published COGs.

Published layout: ``<year>/<zone><N|S>/<name>.tiff``; each file 8192 x 8192 pixels at
10 m in its UTM zone, 64 int8 bands (A00..A63), NoData -128, often stored bottom-up
(positive y resolution). Values dequantise as ``(v / 127.5) ** 2 * sign(v)``. Files are
read from a local path or over HTTP(S) with range requests (GDAL ``/vsicurl/``), warped
(nearest neighbour, so an aligned grid is copied exactly and a bottom-up file comes out
north-up) onto the request's chip grid; overlapping files are mosaicked, first wins.

File names carry no location: the published index (``aef_index.parquet`` / ``.csv``, see
``gse_index``) says which files cover a place. It is used when configured (``index``) or
found at the top of a configured directory; otherwise every file's header is read once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.sources.gse_index import CogFile, GseIndex, find_index
from rsembed_db.specs.spatial import WGS84
from rsembed_db.tiling.chip_grid import ChipGrid

BANDS = tuple(f"A{i:02d}" for i in range(64))
NODATA = -128
_YEAR_DIR = re.compile(r"(?:^|/)((?:19|20)\d\d)/")
_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3",
             "GDAL_HTTP_RETRY_DELAY": "1"}


def dequantise(raw: np.ndarray) -> np.ndarray:
    """int8 -> float32 in [-1, 1]: ``(v / 127.5) ** 2 * sign(v)``; NoData (-128) -> NaN."""
    values = raw.astype(np.float32) / np.float32(127.5)
    out = np.square(values) * np.sign(values)
    out[raw == NODATA] = np.nan
    return out


class GseCogSource:
    """COGs named by local paths/directories or URLs (comma-separated or a sequence), found
    through the published ``index`` (a path or URL; None: one at the top of a configured
    directory, unless ``find_index_file`` is False; else every file's header)."""

    name = "gse-cog"

    def __init__(self, locations: str | Sequence[str], index: str | None = None, find_index_file: bool = True) -> None:
        if isinstance(locations, str):
            locations = [p.strip() for p in locations.split(",") if p.strip()]
        self.locations = list(locations)
        self.index_location = index or (find_index(self.locations) if find_index_file else None)
        self._files: list[CogFile] | None = None
        self._index: GseIndex | None = None
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Load the index, or read every file's header (once; configuration errors surface here)."""
        if self.index_location:
            self.index()
        else:
            self.files()

    def index(self) -> GseIndex:
        with self._lock:
            if self._index is None:
                root = self.locations[0] if len(self.locations) == 1 else None
                if root is not None and not (re.match(r"^(https?|s3|gs)://", root) or Path(root).expanduser().is_dir()):
                    root = None
                self._index = GseIndex.load(str(self.index_location), root)
            return self._index

    def files(self) -> list[CogFile]:
        """Every COG with its year and footprint (headers read once)."""
        with self._lock:
            if self._files is None:
                self._files = [self._describe(loc) for loc in self._expand()]
            return self._files

    def candidates(self, grid: ChipGrid, year: int) -> list[CogFile]:
        """Files of ``year`` that may cover ``grid``: from the index, else from the headers."""
        if self.index_location:
            west, south, east, north = transform_bounds(grid.crs, WGS84, *grid.bounds, densify_pts=21)
            return self.index().lookup(year, west, south, east, north)
        return [f for f in self.files() if f.year == year]

    def read(self, grid: ChipGrid, year: int) -> tuple[np.ndarray, list[str]]:
        """(64, H, W) float32 on ``grid`` (NaN where no file has data), files used."""
        raw = np.full((len(BANDS), grid.height, grid.width), NODATA, dtype=np.int8)
        used = []
        left, bottom, right, top = grid.bounds
        for cog in self.candidates(grid, year):
            xmin, ymin, xmax, ymax = transform_bounds(cog.crs, grid.crs, *cog.bounds, densify_pts=21)
            if xmin >= right or xmax <= left or ymin >= top or ymax <= bottom:
                continue
            with rasterio.Env(**_GDAL_ENV), rasterio.open(cog.location) as src, \
                    WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                              height=grid.height, resampling=Resampling.nearest,
                              src_nodata=NODATA, nodata=NODATA) as vrt:
                piece = vrt.read()
            empty = raw == NODATA
            raw[empty] = piece[empty]
            used.append(cog.location)
        if not used:
            known = f"{self.index().rows} file(s) in the index" if self.index_location else \
                f"{len(self.files())} file(s) configured"
            raise TileFailure(f"no Satellite Embedding COG for {year} covers the ROI ({known})")
        return dequantise(raw), used

    def _expand(self) -> list[str]:
        out: list[str] = []
        for location in self.locations:
            if re.match(r"^(https?|s3|gs)://", location) or location.startswith("/vsi"):
                out.append(location)
                continue
            path = Path(location).expanduser()
            if path.is_dir():
                out += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
            elif path.is_file():
                out.append(str(path))
            else:
                raise SpecError("gse.cogs", f"{location} does not exist; expected COG files, a "
                                "directory of them (<year>/<zone>/<name>.tiff) or URLs")
        if not out:
            raise SpecError("gse.cogs", f"no .tif/.tiff files under {', '.join(self.locations)}")
        return out

    @staticmethod
    def _describe(location: str) -> CogFile:
        match = _YEAR_DIR.findall(location.replace("\\", "/"))
        if not match:
            raise SpecError("gse.cogs", f"cannot tell the year of {location}: keep the published "
                            "layout <year>/<zone>/<name>.tiff")
        try:
            with rasterio.Env(**_GDAL_ENV), rasterio.open(location) as src:
                if src.count != len(BANDS) or src.crs is None:
                    raise SpecError("gse.cogs", f"{location}: expected {len(BANDS)} bands with a "
                                    f"CRS, got {src.count} bands, CRS {src.crs}")
                t, h, w = src.transform, src.height, src.width
                xs, ys = (t.c, t.c + t.a * w), (t.f, t.f + t.e * h)
                return CogFile(location, int(match[-1]), src.crs.to_string(),
                               (min(xs), min(ys), max(xs), max(ys)))
        except rasterio.errors.RasterioIOError as exc:
            raise SpecError("gse.cogs", f"cannot open {location}: {exc}") from None
