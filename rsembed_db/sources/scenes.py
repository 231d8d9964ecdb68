"""Local raster scenes: finding the files and reading what a fetch needs to know."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from rsembed_db.errors import SpecError
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.scene_dates import WRITE_TIME_TAG, date_from_name, date_from_tags

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2")


@dataclass(frozen=True)
class Scene:
    """One raster file: georeferencing, normalised band names and acquisition date.

    ``bands`` holds one canonical name per band (``None`` where a band has no
    description); ``bounds`` are (left, bottom, right, top) in ``crs``.
    """

    path: Path
    crs: CRS
    bounds: tuple[float, float, float, float]
    bands: tuple[str | None, ...]
    dtype: str
    nodata: float | None
    date: dt.date

    def band_indexes(self, requested: Sequence[str]) -> tuple[int, ...]:
        """1-based indexes of ``requested`` band names; SpecError naming what exists."""
        named = [name for name in self.bands if name]
        if not named:
            raise SpecError(
                "bands",
                f"{self.path} has no band descriptions, so bands {list(requested)} cannot be "
                "found by name; set descriptions such as B02 or BLUE on its bands",
            )
        indexes = []
        for name in requested:
            key = normalise_band(name)
            if key not in self.bands:
                raise SpecError("bands", f"{self.path} has no band {name!r}", named)
            indexes.append(self.bands.index(key) + 1)
        return tuple(indexes)


def discover(paths: Iterable[Path]) -> list[Path]:
    """Raster files named by ``paths``: files as given, folders searched recursively."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
            if not files:
                raise SpecError("imagery", f"no rasters ({', '.join(RASTER_SUFFIXES)}) under {path}")
        elif path.is_file():
            files = [path]
        else:
            raise SpecError("imagery", f"no such file or folder: {path}")
        found.update(dict.fromkeys(files))
    return list(found)


def scan_scene(path: Path, date: dt.date | None, date_pattern: re.Pattern[str] | None) -> Scene:
    """Read a file's metadata; SpecError when it is unreadable, unreferenced or undated."""
    try:
        with rasterio.open(path) as ds:
            crs, bounds, tags = ds.crs, tuple(ds.bounds), ds.tags()
            bands = tuple(normalise_band(d) if d and d.strip() else None for d in ds.descriptions)
            dtype, nodata = ds.dtypes[0], ds.nodata
    except RasterioError as exc:
        raise SpecError("imagery", f"cannot read {path}: {exc}") from exc
    if crs is None:
        raise SpecError("imagery", f"{path} has no CRS")
    day = (date or date_from_tags(tags) or date_from_name(path.name, date_pattern)
           or date_from_tags(tags, (WRITE_TIME_TAG,)))
    if day is None:
        raise SpecError(
            "imagery",
            f"no acquisition date for {path} (no date tag, no date in the file name): "
            "pass --imagery-date (date=...) or rename the file to contain YYYYMMDD",
        )
    return Scene(path, crs, bounds, bands, dtype, nodata, day)
