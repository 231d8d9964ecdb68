"""The ROIs of many requests, vectorised: each in the CRS it is defined in.

H3 cells and bboxes are lon/lat polygons; point buffers and grid cells are squares in
their projected CRS (as ``ChipGrid`` builds them). Long edges are densified so that
reprojecting vertices keeps their shape; ``in_crs`` reprojects a subset in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.spatial import (
    WGS84,
    BBox,
    GridCell,
    PointBuffer,
    lonlat_geometries,
    reproject_geometry,
)
from rsembed_db.tiling.chip_grid import chip_grid_for

LONLAT_SEGMENT_DEG = 0.001  # as tiling.region.project_lonlat: ~100 m


@dataclass
class RoiSet:
    requests: list[EmbeddingRequest]
    crs: np.ndarray  # (n,) CRS of each ROI's geometry
    geoms: np.ndarray  # (n,) polygons in that CRS, densified
    lonlat_bounds: np.ndarray  # (n, 4) minlon, minlat, maxlon, maxlat

    @classmethod
    def of(cls, requests: list[EmbeddingRequest]) -> "RoiSet":
        specs = [r.spatial for r in requests]
        lonlat = lonlat_geometries(specs)
        crs = np.full(len(specs), WGS84, dtype=object)
        geoms = lonlat.copy()
        for i, spec in enumerate(specs):
            if isinstance(spec, BBox):
                geoms[i] = shapely.segmentize(lonlat[i], LONLAT_SEGMENT_DEG)
            elif isinstance(spec, (PointBuffer, GridCell)):
                chip = chip_grid_for(spec, 1.0)
                crs[i] = chip.crs
                geoms[i] = shapely.segmentize(chip.roi, max(chip.roi.length / 64.0, 1.0))
        return cls(requests, crs, geoms, shapely.bounds(lonlat))

    def __len__(self) -> int:
        return len(self.requests)

    def in_crs(self, idx: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
        """(polygons, (n, 2) centroids) of ROIs ``idx`` in ``crs``."""
        out = np.empty(len(idx), dtype=object)
        src = self.crs[idx]
        for source in set(src.tolist()):
            pick = np.flatnonzero(src == source)
            geoms = self.geoms[idx[pick]]
            out[pick] = geoms if source == crs else reproject_geometry(geoms, source, crs)
        return out, shapely.get_coordinates(shapely.centroid(out))
