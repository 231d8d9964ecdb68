"""Tessera tiles cut from a per-UTM-zone Zarr v3 store (geotessera 0.11 ``zarr/<store>``).

A store (local directory or HTTP URL) has one group ``utm{NN}`` per zone on the zone's
northern CRS (EPSG:326NN; southern northings are negative) with ``embeddings`` int8
(T, 128, H, W), ``scales`` float32 (T, H, W) and ``time`` (years). A scale is NaN on
water (and where geotessera refused the tile's scale), +inf where nothing was written
(no data), finite elsewhere. A 0.1-degree tile is read as the window of its zone's grid
covering the tile's box (one pixel of margin): scales first, then only the embedding
chunks holding a valid pixel, by range requests. Pixels are the same ground pixels as
the NPY tile's, so pooling (tile ownership, validity) is identical on both paths.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import shapely
from affine import Affine

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.sources.download import DownloadError
from rsembed_db.sources.ranged import Files, open_files
from rsembed_db.sources.tessera.layout import DIM, TileId
from rsembed_db.sources.tessera.tile import TesseraTile, valid_scales
from rsembed_db.sources.zarr_v3 import ZarrArray, ZarrFormatError, ZarrGroup
from rsembed_db.specs.spatial import WGS84, reproject_geometry

_BOX_SEGMENT_DEG = 0.001


class _Zone:
    """One ``utmNN`` group: its grid and arrays."""

    def __init__(self, group: ZarrGroup) -> None:
        attrs = group.attrs
        try:
            self.crs = str(attrs["proj:code"])
            a, b, c, d, e, f = (float(v) for v in attrs["spatial:transform"])
        except (KeyError, TypeError, ValueError):
            raise ZarrFormatError(f"{group.path}: no proj:code / spatial:transform attributes") from None
        if b or d or e >= 0:
            raise ZarrFormatError(f"{group.path}: the grid is not north-up")
        self.transform = Affine(a, b, c, d, e, f)
        embeddings, scales, time = (group.array(n) for n in ("embeddings", "scales", "time"))
        if embeddings is None or scales is None or time is None:
            raise ZarrFormatError(f"{group.path}: expected arrays embeddings, scales and time")
        if embeddings.dtype != np.int8 or embeddings.shape[1] != DIM or scales.dtype.kind != "f":
            raise ZarrFormatError(f"{group.path}: expected int8 embeddings (T, {DIM}, H, W) and float scales, got "
                                  f"{embeddings.dtype} {embeddings.shape} and {scales.dtype}")
        self.embeddings: ZarrArray = embeddings
        self.scales: ZarrArray = scales
        self.shape = scales.shape[1:]
        self.years = [_year(v) for v in time.read((slice(None),)).tolist()]

    def window(self, tile: TileId, bounds: tuple[float, float, float, float] | None = None
               ) -> tuple[int, int, int, int] | None:
        """Rows / cols (half-open) covering the tile's box (cut to the lon/lat ``bounds``), one
        pixel of margin, clipped to the grid; None when empty."""
        west, south, east, north = tile.bounds
        if bounds is not None:
            west, south = max(west, bounds[0]), max(south, bounds[1])
            east, north = min(east, bounds[2]), min(north, bounds[3])
            if west > east or south > north:
                return None
        box = shapely.box(west, south, max(east, west + 1e-9), max(north, south + 1e-9))
        box = reproject_geometry(shapely.segmentize(box, _BOX_SEGMENT_DEG), WGS84, self.crs)
        minx, miny, maxx, maxy = box.bounds
        t = self.transform
        c0, c1 = math.floor((minx - t.c) / t.a) - 1, math.ceil((maxx - t.c) / t.a) + 1
        r0, r1 = math.floor((maxy - t.f) / t.e) - 1, math.ceil((miny - t.f) / t.e) + 1
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, self.shape[0]), min(c1, self.shape[1])
        return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def _year(value) -> int:
    """A ``time`` value: a year, or nanoseconds since 1970 (the Icechunk adapter's form)."""
    value = int(value)
    return value if value < 10_000 else int(np.datetime64(value, "ns").astype("datetime64[Y]").astype(int) + 1970)


class ZarrTiles:
    """Tiles read from the store at ``location`` (a directory or an http(s) URL)."""

    layout = "zarr"

    def __init__(self, location: str, files: Files | None = None) -> None:
        self.location = str(location)
        self.files = files or open_files(location)
        self.reads = 0
        self._lock = threading.Lock()
        self._root: ZarrGroup | None = None
        self._zones: dict[int, _Zone | None] = {}

    @property
    def bytes_read(self) -> int:
        return self.files.bytes_read

    def root(self) -> ZarrGroup:
        with self._lock:
            if self._root is None:
                try:
                    self._root = ZarrGroup.open(self.files)
                except ZarrFormatError as exc:
                    raise SpecError("tessera.url", f"{exc}: expected a geotessera Zarr store "
                                    "(zarr.json with utmNN zone groups)") from None
                except DownloadError as exc:
                    raise SpecError("tessera.url", f"cannot read the Zarr store: {exc}") from None
            return self._root

    def zone(self, number: int) -> _Zone | None:
        root = self.root()
        with self._lock:
            if number not in self._zones:
                group = root.group(f"utm{number:02d}")
                self._zones[number] = None if group is None else _Zone(group)
            return self._zones[number]

    def unpublished(self, tiles: list[TileId], year: int) -> dict[TileId, str]:
        """Tiles outside every zone grid, or in a zone or year the store does not hold."""
        out: dict[TileId, str] = {}
        for tile in tiles:
            zone = self.zone(tile.zone)
            if zone is None:
                out[tile] = f"no Tessera data for {tile.name}: the store has no group utm{tile.zone:02d}"
            elif year not in zone.years:
                out[tile] = f"no Tessera data for {tile.name} in {year}: the store's utm{tile.zone:02d} holds {zone.years}"
            elif zone.window(tile) is None:
                out[tile] = f"no Tessera data for {tile.name}: outside the utm{tile.zone:02d} grid of the store"
        return out

    def read(self, tile: TileId, year: int, bounds: tuple[float, float, float, float] | None = None) -> TesseraTile:
        """The tile's pixels, only the part within the lon/lat ``bounds`` when given."""
        zone = self.zone(tile.zone)
        window = zone.window(tile, bounds) if zone is not None and year in zone.years else None
        if zone is None or window is None:
            raise TileFailure(f"no Tessera data for {tile.name} in {year} in the store")
        t = zone.years.index(year)
        r0, r1, c0, c1 = window
        try:
            scales = zone.scales.read((t, slice(r0, r1), slice(c0, c1)))
            valid = valid_scales(scales)

            def wanted(lo, hi):
                return bool(valid[lo[2] - r0:hi[2] - r0, lo[3] - c0:hi[3] - c0].any())

            quantised = zone.embeddings.read((t, slice(None), slice(r0, r1), slice(c0, c1)), wanted=wanted,
                                             axes=(0, 2, 3, 1))  # (H, W, 128), as the NPY tiles
        except (ZarrFormatError, DownloadError) as exc:
            raise TileFailure(f"{tile.name}: {exc}") from None
        with self._lock:
            self.reads += 1
        transform = zone.transform @ Affine.translation(c0, r0)
        return TesseraTile(tile, quantised, scales, np.isfinite(scales), zone.crs, transform)
