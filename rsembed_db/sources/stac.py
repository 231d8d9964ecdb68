"""Imagery from a STAC API: item search, then windowed reads of COG assets over HTTP.

For public catalogues, no Earth Engine account needed (Earth Search's
``sentinel-2-l2a``, Planetary Computer's ``sentinel-2-l2a``...). A fetch:

1. searches ``collection`` (the source's, else ``sensor.collection``) with the chip's
   lon/lat bbox and the window; STAC intervals are closed, so items dated at or after
   the window's end are dropped here: the window stays half-open ``[start, end)``.
   ``eo:cloud_cover <= cloudy_pct`` is sent as a query where the API supports it and
   checked here in any case (items without the property pass; SAR bands skip it).
2. finds each band's asset by its key or its ``eo:bands`` names, normalised as in
   ``sources.bands`` (``red``, ``B04`` and ``nir08``/``B8A`` all work), preferring
   single-band data assets;
3. reads only the chip's window of each asset (GDAL ``/vsicurl/`` HTTP range
   requests on COGs), warping every band onto the chip grid (bilinear, nodata kept),
   so 20 m bands are resampled to a 10 m chip;
4. composites the items per pixel (``median`` or ``mosaic``, as the local source).

``frames=T > 1``: one search over the window, each item read once, and each frame bin
composites its own items (``sources.frames``).

Values are read as stored (no ``raster:bands`` scale/offset applied), like local files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds

from rsembed_db.errors import SpecError, TileFailure, Unavailable
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.base import Chip
from rsembed_db.sources.composite import COMPOSITES
from rsembed_db.sources.frames import DatedPlane, frame_bins, frames_from_planes, require_frames
from rsembed_db.sources.warp import warp_to_grid
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import ChipGrid

SAR_BANDS = ("VV", "VH", "HH", "HV")
GDAL_HTTP = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per file
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "VSI_CACHE": "TRUE",
}


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def gdal_path(href: str) -> str:
    """The path GDAL opens for an asset href (HTTP(S) through ``/vsicurl/``)."""
    return f"/vsicurl/{href}" if href.startswith(("http://", "https://")) else href


def band_asset(item: Any, band: str) -> tuple[str, int, float | None]:
    """(href, 1-based band index, nodata) of ``band`` in ``item``; SpecError listing assets."""
    wanted = normalise_band(band)
    best: tuple[int, str, int, float | None] | None = None
    for key, asset in item.assets.items():
        roles = asset.roles or ["data"]
        if "data" not in roles:
            continue
        described = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
        raster = asset.extra_fields.get("raster:bands") or []
        names = [(normalise_band(key), 0, 1)] + [
            (normalise_band(str(name)), 1, i + 1)
            for i, info in enumerate(described)
            for name in (info.get("name"), info.get("common_name"), info.get("eo:common_name")) if name]
        for name, rank, index in names:
            if name != wanted:
                continue
            single = 0 if len(described) <= 1 else 1
            nodata = raster[index - 1].get("nodata") if len(raster) >= index else None
            candidate = (rank + 2 * single, asset.href, index, nodata)
            if best is None or candidate[0] < best[0]:
                best = candidate
    if best is None:
        raise SpecError("bands", f"STAC item {item.id} has no asset for band {band!r}", sorted(item.assets))
    return best[1], best[2], best[3]


class StacImagerySource:
    """``ImagerySource`` over a STAC API and its COG assets; thread-safe.

    ``modifier`` is passed to ``pystac_client.Client.open`` (e.g. Planetary Computer's
    ``planetary_computer.sign_inplace`` to sign asset URLs); ``max_items`` caps the
    items composited per fetch; ``read_workers`` reads assets in parallel.
    """

    name = "stac"

    def __init__(self, url: str, collection: str | None = None, *, max_items: int = 100,
                 read_workers: int = 4, modifier: Callable[[Any], Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.url, self.collection = url, collection
        self.max_items, self.read_workers = max_items, read_workers
        self._modifier, self._headers = modifier, headers
        self._client: Any = None

    def client(self) -> Any:
        """The ``pystac_client.Client`` (opened once): Unavailable when the API cannot be
        reached or answers with an error, SpecError when the URL is no STAC API."""
        if self._client is None:
            from pystac_client import Client
            from pystac_client.exceptions import APIError

            try:
                self._client = Client.open(self.url, headers=self._headers, modifier=self._modifier)
            except (APIError, OSError) as exc:
                raise Unavailable(f"source: cannot reach the STAC API at {self.url}: {exc}") from exc
            except ValueError as exc:
                raise SpecError("source", f"{self.url} is not a STAC API: {exc}") from exc
        return self._client

    def search(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec) -> list[Any]:
        """Items of the window over the chip, oldest first, cloud filter applied."""
        from pystac_client.conformance import ConformanceClasses

        collection = self.collection or sensor.collection
        client = self.client()
        start, end = _utc(temporal.start_date), _utc(temporal.end_date)
        cloudy = None if sensor.cloudy_pct >= 100 or any(
            normalise_band(b) in SAR_BANDS for b in sensor.bands) else float(sensor.cloudy_pct)
        query = {"collections": [collection],
                 "bbox": list(transform_bounds(grid.crs, "EPSG:4326", *grid.bounds, densify_pts=21)),
                 "datetime": f"{start.isoformat()}/{end.isoformat()}".replace("+00:00", "Z"),
                 "max_items": self.max_items}
        if cloudy is not None and client.conforms_to(ConformanceClasses.QUERY):
            query["query"] = {"eo:cloud_cover": {"lte": cloudy}}
        items = [item for item in client.search(**query).items()
                 if item.datetime is not None and start <= item.datetime < end
                 and (cloudy is None or item.properties.get("eo:cloud_cover", 0) <= cloudy)]
        return sorted(items, key=lambda item: (item.datetime, item.id))

    def fetch(self, grid: ChipGrid, temporal: TemporalSpec, sensor: SensorSpec, frames: int = 1) -> Chip:
        """The composite of the window's items on ``grid`` (``frames`` > 1: one composite per
        frame bin); TileFailure when none covers it."""
        if require_frames(frames) > 1:
            frame_bins(temporal, frames)  # a bad frame count fails before any request
        items = self.search(grid, temporal, sensor)
        collection = self.collection or sensor.collection
        if not items:
            raise TileFailure(f"no {collection} item in window {temporal.start_date}..{temporal.end_date} "
                              f"intersects tile (cloudy_pct={sensor.cloudy_pct:g})")
        assets = [[band_asset(item, band) for band in sensor.bands] for item in items]
        with ThreadPoolExecutor(max_workers=self.read_workers, thread_name_prefix="cog") as pool:
            planes = list(pool.map(lambda bands: self._read_item(bands, grid), assets))
        used = [(item, plane) for item, plane in zip(items, planes) if np.isfinite(plane[0]).any()]
        if not used:
            raise TileFailure(f"{len(items)} {collection} item(s) in window but none has a valid "
                              "pixel on the tile")
        if frames > 1:
            dated = [DatedPlane(item.id, item.datetime.date(), plane) for item, plane in used]
            return frames_from_planes(grid, temporal, sensor, frames, dated,
                                      {"source": self.name, "collection": collection})
        data = COMPOSITES[sensor.composite](np.stack([plane for _, plane in used]))
        valid = np.isfinite(data[0])
        data[:, ~valid] = sensor.fill_value
        meta = {
            "source": self.name,
            "collection": collection,
            "scenes": [item.id for item, _ in used],
            "dates": [item.datetime.date().isoformat() for item, _ in used],
            "composite": sensor.composite,
            "covered_fraction": float(valid.mean()),
            "input_time": temporal.midpoint.isoformat(),
        }
        return Chip(data, valid, tuple(sensor.bands), grid, meta)

    def _read_item(self, bands: list[tuple[str, int, float | None]], grid: ChipGrid) -> np.ndarray:
        """(C, H, W) of one item's bands on the grid, NaN where any band is invalid."""
        out = np.empty((len(bands), grid.height, grid.width), dtype=np.float32)
        with rasterio.Env(**GDAL_HTTP):
            for i, (href, index, nodata) in enumerate(bands):
                try:
                    with rasterio.open(gdal_path(href)) as dataset:
                        fill = dataset.nodata if dataset.nodata is not None else nodata
                        out[i] = warp_to_grid(dataset, [index], fill, grid)[0]
                except RasterioError as exc:
                    raise TileFailure(f"cannot read {href}: {exc}") from exc
        out[:, ~np.isfinite(out).all(axis=0)] = np.nan
        return out
