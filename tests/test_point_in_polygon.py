"""The raster-assisted point-in-polygon test gives shapely's answers, boundary included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

from rsembed_db.query.filters import PolygonTest
from rsembed_db.query.point_in_polygon import MIN_POINTS, PolygonGrid

POLYGONS = {
    "diamond": shapely.Polygon([(12, 52.5), (13, 51.9), (14, 52.5), (13, 53.1)]),
    "with a hole": shapely.Polygon([(0, 0), (4, 0), (4, 3), (0, 3)], [[(1, 1), (2, 1), (2, 2), (1, 2)]]),
    "two parts": shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3.5)]),
    "ring of 256 vertices": shapely.Point(5, 5).buffer(3, 64).difference(shapely.Point(5, 5).buffer(1, 8)),
    "sliver": shapely.Polygon([(0, 0), (10, 0.001), (10, 0.002)]),
    "tiny": shapely.box(179.9999, -0.00001, 180.0, 0.0),
}


def points(polygon: shapely.Geometry, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points over the bounds and a margin, plus every vertex, points on the edges
    and the bounds' corners."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = polygon.bounds
    pad_x, pad_y = (maxx - minx) * 0.05, (maxy - miny) * 0.05
    x = rng.uniform(minx - pad_x, maxx + pad_x, count)
    y = rng.uniform(miny - pad_y, maxy + pad_y, count)
    vertices = shapely.get_coordinates(polygon.boundary)
    on_edges = shapely.get_coordinates(
        shapely.line_interpolate_point(polygon.boundary, rng.uniform(0, 1, 2000), normalized=True))
    corners = np.array([[minx, miny], [minx, maxy], [maxx, miny], [maxx, maxy], [minx - 1, miny - 1], [maxx + 1, maxy]])
    xy = np.concatenate([np.column_stack([x, y]), vertices, on_edges, corners])
    return xy[:, 0].copy(), xy[:, 1].copy()


@pytest.mark.parametrize("name", POLYGONS)
def test_grid_answers_as_shapely(name):
    polygon = POLYGONS[name]
    x, y = points(polygon, 300_000, seed=len(name))
    expected = shapely.intersects_xy(polygon, x, y)
    grid = PolygonGrid(polygon)
    assert np.array_equal(grid.contains(x, y), expected)
    assert (grid.classes == 2).mean() < 0.05  # most cells are answered by look-up
    assert 0 < expected.sum() < len(x)


def test_polygon_filter_uses_the_grid_for_many_centres():
    polygon = POLYGONS["with a hole"]
    x, y = points(polygon, MIN_POINTS * 3, seed=7)
    test = PolygonTest(polygon, "centre")
    mask = test.mask(pa.table({"lon": x, "lat": y}))
    assert "grid" in test.__dict__  # built once, kept for the next batches
    assert np.array_equal(mask, shapely.intersects_xy(polygon, x, y))
    few = PolygonTest(polygon, "centre").mask(pa.table({"lon": x[:100], "lat": y[:100]}))
    assert np.array_equal(few, mask[:100])


def test_degenerate_polygon_is_tested_by_shapely_alone():
    flat = shapely.Polygon([(0, 1), (2, 1), (3, 1)])  # no height
    x, y = np.array([0.0, 1.0, 2.5, 1.0]), np.array([1.0, 1.0, 1.0, 1.5])
    assert np.array_equal(PolygonGrid(flat).contains(x, y), shapely.intersects_xy(flat, x, y))


def test_null_centres_are_outside():
    polygon = POLYGONS["diamond"]
    x, y = np.array([13.0, np.nan, 13.0, np.nan]), np.array([52.5, 52.5, np.nan, np.nan])
    assert PolygonGrid(polygon).contains(x, y).tolist() == [True, False, False, False]
    assert shapely.intersects_xy(polygon, x, y).tolist() == [True, False, False, False]
