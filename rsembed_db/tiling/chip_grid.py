"""ChipGrid: the pixel grid a spatial spec is sampled on (local UTM at ``scale_m``), and
the size guard on it (``check_roi``: pixels per ROI, checked before anything is fetched)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from rsembed_db.errors import SpecError
from rsembed_db.specs.spatial import (
    WGS84,
    BBox,
    GridCell,
    H3Cell,
    PointBuffer,
    SpatialSpec,
    transformer,
    utm_crs_for,
)
from rsembed_db.tiling.region import check_utm_reach, project_lonlat
from rsembed_db.tiling.scanline import polygon_mask

# Compute-on-miss refuses ROIs of more pixels than this at the model's scale (1024 x 1024):
# inputs, feature maps and grids grow with it (a 1200 x 1200 MOSAIKS chip needed 5 GB).
DEFAULT_MAX_ROI_PIXELS = 1 << 20
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0  # at the equator


@dataclass(frozen=True)
class ChipGrid:
    """A north-up raster grid plus the ROI polygon, both in ``crs``.

    The grid is snapped outward to multiples of ``scale_m`` so that chips of
    neighbouring tiles share pixel edges and line up with UTM-aligned imagery.
    """

    crs: str
    transform: Affine
    width: int
    height: int
    roi: BaseGeometry

    @property
    def scale_m(self) -> float:
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return left, top + self.transform.e * self.height, left + self.transform.a * self.width, top

    def roi_mask(self, shape: tuple[int, int] | None = None, transform: Affine | None = None,
                 touched_fallback: bool = True) -> np.ndarray:
        """Boolean (H, W) mask of pixels whose centre lies in the ROI.

        With another ``shape``/``transform`` (e.g. a coarser feature grid) the mask is
        computed on that grid. An ROI smaller than every pixel centre falls back to
        the pixels it touches (unless ``touched_fallback`` is False), so a mask is never empty.
        """
        shape = shape or (self.height, self.width)
        transform = transform or self.transform
        # the scanline rule is GDAL's (pixel centre inside, tests/products): 40 us per chip
        # where rasterio.features.geometry_mask takes ~0.8 ms, a sixth of a MOSAIKS chip's ingest
        inside = polygon_mask(np.array([self.roi]), transform, shape)
        if touched_fallback and not inside.any():
            inside = geometry_mask([self.roi], out_shape=shape, transform=transform,
                                   invert=True, all_touched=True)
        return inside


def roi_field(spatial: SpatialSpec) -> str:
    """The request field that sets the ROI's size: ``buffer_m``, ``bbox``, ``h3`` or ``spatial``."""
    if isinstance(spatial, PointBuffer):
        return "buffer_m"
    return "bbox" if isinstance(spatial, BBox) else "h3" if isinstance(spatial, H3Cell) else "spatial"


def roi_pixels(spatial: SpatialSpec, scale_m: float) -> float:
    """About how many pixels the ROI's chip grid has at ``scale_m`` (never fewer), from its
    size alone: cheap, and finite for any ROI (nothing is projected)."""
    if isinstance(spatial, PointBuffer):
        side = 2 * float(spatial.buffer_m)
        return (side / scale_m + 1) ** 2
    if isinstance(spatial, GridCell):
        return (float(spatial.size_m) / scale_m + 1) ** 2
    minlon, minlat, maxlon, maxlat = spatial.lonlat_geometry().bounds
    widest = 0.0 if minlat <= 0 <= maxlat else min(abs(minlat), abs(maxlat))  # the latitude nearest the equator
    width = (maxlon - minlon) * _M_PER_DEG_LON * math.cos(math.radians(widest))
    height = (maxlat - minlat) * _M_PER_DEG_LAT
    return (width / scale_m + 1) * (height / scale_m + 1)


def check_roi(spatial: SpatialSpec, scale_m: float, max_pixels: int | None, field: str | None = None) -> None:
    """SpecError naming ``field`` (default ``roi_field``) when the ROI's chip grid at
    ``scale_m`` would have more than ``max_pixels`` pixels (None: no limit)."""
    if max_pixels is None:
        return
    pixels = roi_pixels(spatial, scale_m)
    if pixels > max_pixels:
        raise SpecError(field or roi_field(spatial), f"the ROI is about {pixels:.3g} pixels at {scale_m:g} m, more "
                        f"than the limit of {max_pixels} (max_roi_pixels); use a smaller ROI or a coarser scale_m")


def chip_grid_for(spatial: SpatialSpec, scale_m: float) -> ChipGrid:
    """The chip grid of a spatial spec at ``scale_m`` metres per pixel; SpecError naming
    the ROI's field when it is too wide for one UTM zone."""
    if isinstance(spatial, GridCell):
        crs, roi = spatial.crs, spatial.native_geometry()
    elif isinstance(spatial, PointBuffer):
        crs = utm_crs_for(spatial.lon, spatial.lat)
        x, y = transformer(WGS84, crs).transform(spatial.lon, spatial.lat)
        b = float(spatial.buffer_m)
        roi = box(x - b, y - b, x + b, y + b)
    else:
        lonlat = spatial.lonlat_geometry()
        centre = lonlat.centroid
        crs = utm_crs_for(centre.x, centre.y)
        check_utm_reach(lonlat.bounds, crs, roi_field(spatial), "an ROI")
        roi = project_lonlat(lonlat, crs)
    return _snapped_grid(crs, roi, float(scale_m))


def _snapped_grid(crs: str, roi: Polygon, scale: float) -> ChipGrid:
    minx, miny, maxx, maxy = roi.bounds
    # Snap outward; the epsilon keeps exact multiples (e.g. grid tiles) from growing a pixel.
    eps = 1e-6 * scale
    left = math.floor((minx + eps) / scale) * scale
    bottom = math.floor((miny + eps) / scale) * scale
    right = math.ceil((maxx - eps) / scale) * scale
    top = math.ceil((maxy - eps) / scale) * scale
    width = max(int(round((right - left) / scale)), 1)
    height = max(int(round((top - bottom) / scale)), 1)
    return ChipGrid(crs, Affine(scale, 0.0, left, 0.0, -scale, top), width, height, roi)
