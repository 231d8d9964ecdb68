"""ChipGrid: the pixel grid a spatial spec is sampled on (local UTM at ``scale_m``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from rsembed_db.specs.spatial import (
    WGS84,
    GridCell,
    PointBuffer,
    SpatialSpec,
    transformer,
    utm_crs_for,
)
from rsembed_db.tiling.region import project_lonlat


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
        inside = geometry_mask([self.roi], out_shape=shape, transform=transform, invert=True)
        if touched_fallback and not inside.any():
            inside = geometry_mask([self.roi], out_shape=shape, transform=transform,
                                   invert=True, all_touched=True)
        return inside


def chip_grid_for(spatial: SpatialSpec, scale_m: float) -> ChipGrid:
    """The chip grid of a spatial spec at ``scale_m`` metres per pixel."""
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
