"""Chip grids: pixel grids snapped to multiples of scale_m, and ROI masks."""

from __future__ import annotations

import math

import h3
import pyproj
import pytest
from affine import Affine
from shapely.geometry import Point

from rsembed_db.specs import BBox, GridCell, H3Cell, PointBuffer
from rsembed_db.tiling import chip_grid_for

UTM33 = "EPSG:32633"
TO_LONLAT = pyproj.Transformer.from_crs(UTM33, "EPSG:4326", always_xy=True)
TO_UTM = pyproj.Transformer.from_crs("EPSG:4326", UTM33, always_xy=True)
SPECS = [
    BBox(12.55, 52.47, 12.62, 52.51),
    PointBuffer(12.6013, 52.4871, 733),
    H3Cell(h3.latlng_to_cell(52.49, 12.6, 8)),
    GridCell(UTM33, 335000.0, 5817000.0, 1000.0),
]


def _is_multiple(value: float, step: float) -> bool:
    return math.isclose(value / step, round(value / step), abs_tol=1e-9)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("scale", [10.0, 20.0, 60.0])
def test_grid_edges_are_multiples_of_scale_and_contain_the_roi(spec, scale):
    grid = chip_grid_for(spec, scale)
    assert grid.crs == UTM33 and grid.scale_m == scale
    assert grid.transform.e == -scale and grid.transform.b == grid.transform.d == 0
    left, bottom, right, top = grid.bounds
    assert all(_is_multiple(v, scale) for v in (left, bottom, right, top))
    assert (right - left, top - bottom) == pytest.approx((grid.width * scale, grid.height * scale))
    rminx, rminy, rmaxx, rmaxy = grid.roi.bounds
    assert left <= rminx and bottom <= rminy and rmaxx <= right and rmaxy <= top
    # Snapped outward by less than one pixel on every side.
    assert rminx - left < scale and right - rmaxx < scale
    assert rminy - bottom < scale and top - rmaxy < scale


@pytest.mark.parametrize("size, scale, pixels", [(1000.0, 10.0, 100), (500.0, 10.0, 50),
                                                 (1200.0, 30.0, 40), (960.0, 60.0, 16)])
def test_grid_cell_chip_is_exactly_size_over_scale_pixels(size, scale, pixels):
    cell = GridCell(UTM33, 336 * size, 5818 * size, size)
    grid = chip_grid_for(cell, scale)
    assert (grid.width, grid.height) == (pixels, pixels)
    assert grid.bounds == (cell.minx, cell.miny, cell.minx + size, cell.miny + size)
    assert grid.roi_mask().all()


def test_point_buffer_aligned_gives_100_pixels():
    lon, lat = TO_LONLAT.transform(335000.0, 5818000.0)
    grid = chip_grid_for(PointBuffer(lon, lat, buffer_m=500), 10)
    assert (grid.width, grid.height) == (100, 100)
    assert grid.bounds == pytest.approx((334500, 5817500, 335500, 5818500), abs=1e-6)
    assert grid.roi_mask().sum() == 100 * 100


def test_point_buffer_not_aligned_gives_101_pixels():
    lon, lat = TO_LONLAT.transform(335003.7, 5818006.2)
    grid = chip_grid_for(PointBuffer(lon, lat, buffer_m=500), 10)
    assert (grid.width, grid.height) == (101, 101)
    assert grid.bounds == pytest.approx((334500, 5817500, 335510, 5818510))
    # Pixel centres inside the 1000 m square: 100 per row and column.
    assert grid.roi_mask().sum() == 100 * 100


@pytest.mark.parametrize("res, rel", [(8, 0.01), (9, 0.03)])
def test_h3_mask_pixel_count_matches_hexagon_area(res, rel):
    cell = H3Cell(h3.latlng_to_cell(52.49, 12.6, res))
    grid = chip_grid_for(cell, 10)
    mask = grid.roi_mask()
    assert mask.shape == (grid.height, grid.width)
    # UTM area of the projected hexagon is within 0.1% of the true area here.
    assert mask.sum() == pytest.approx(h3.cell_area(cell.hex, unit="m^2") / 100, rel=rel)
    assert not mask.all()  # corners of the bounding box are outside the hexagon


def test_mask_on_a_coarser_grid():
    grid = chip_grid_for(H3Cell(h3.latlng_to_cell(52.49, 12.6, 8)), 10)
    coarse = grid.roi_mask((grid.height // 2, grid.width // 2), grid.transform @ Affine.scale(2))
    assert coarse.shape == (grid.height // 2, grid.width // 2)
    assert coarse.sum() == pytest.approx(grid.roi_mask().sum() / 4, rel=0.03)


@pytest.mark.parametrize("res", [13, 15])
def test_tiny_roi_mask_is_not_empty(res):
    cell = H3Cell(h3.latlng_to_cell(52.49, 12.6, res))
    grid = chip_grid_for(cell, 10)
    mask = grid.roi_mask()
    assert 1 <= mask.sum() <= 4 and mask.shape == (grid.height, grid.width)


def test_bbox_roi_keeps_curved_parallels():
    bbox = BBox(12.0, 52.0, 13.0, 53.0)
    grid = chip_grid_for(bbox, 10)
    mid_north = Point(TO_UTM.transform(12.5, 53.0))
    # The parallel bows away from the straight chord between the corners by ~100 m.
    chord_y = (TO_UTM.transform(12.0, 53.0)[1] + TO_UTM.transform(13.0, 53.0)[1]) / 2
    assert abs(mid_north.y - chord_y) > 50
    assert grid.roi.exterior.distance(mid_north) < 0.5
