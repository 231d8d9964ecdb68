"""Weighted-sum pooling (int8 x per-pixel scale, one product per ROI) equals the plain masked mean."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import geometry_mask

from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.products import zonal
from rsembed_db.producers.products.rois import RoiSet
from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.tile import valid_scales
from rsembed_db.specs import TemporalSpec
from rsembed_db.tiling.plan import tile_region
from tests.products.tessera_helpers import YEAR, make_tree

TILE = TileId(123, 524)


def test_weighted_sums_equal_the_masked_mean(tmp_path, monkeypatch):
    data = make_tree(tmp_path, [TILE], pixel_m=20.0, land=lambda lon, lat: (lon - 12.35) ** 2 + (lat - 52.45) ** 2 > 4e-4)[TILE]
    data.scales[::7, ::5] = np.float32(3.4e38)  # sentinels too
    np.save(tmp_path / TILE.scales_path(YEAR), data.scales)
    producer = make_producer("tessera", model_config={"dir": str(tmp_path), "url": "none"})
    cells = tile_region(shapely.box(12.302, 52.402, 12.398, 52.498), "h3:9")
    rois = RoiSet.of(producer.requests(cells, TemporalSpec.year(YEAR)))
    _, grid = producer.open_tile(TILE, YEAR, np.array(TILE.bounds))
    assert grid.factors is not None
    geoms, centroids = rois.in_crs(np.arange(len(rois)), grid.crs)
    fast = zonal.pool_grid(grid, geoms, centroids, "mean")
    monkeypatch.setattr(zonal, "FACTORISED", False)
    plain = zonal.pool_grid(grid, geoms, centroids, "mean")
    assert len(cells) > 400 and (fast.count == plain.count).all() and fast.count.max() > 200
    assert 0 < (fast.count == 0).sum() < len(cells) // 4  # the lake's cells
    np.testing.assert_allclose(fast.total, plain.total, rtol=2e-6, atol=1e-4)
    vectors, reasons, used, _ = fast.results()
    pooled = fast.count > 0
    assert [r is None for r in reasons] == pooled.tolist() and np.isfinite(vectors[pooled]).all()
    valid = data.land & (data.scales < 1)
    for i in np.flatnonzero(pooled)[::37].tolist():  # the straightforward masked mean, float64
        mask = geometry_mask([geoms[i]], out_shape=data.land.shape, transform=data.transform, invert=True) & valid
        expected = (data.quantised[mask].astype(np.float64) * data.scales[mask][:, None]).mean(axis=0)
        assert used[i] == mask.sum()
        np.testing.assert_allclose(vectors[i], expected, rtol=1e-5, atol=1e-6)


def test_long_rois_are_summed_in_blocks(monkeypatch):
    rng = np.random.default_rng(4)
    q = rng.integers(-127, 128, size=(5000, 8), dtype=np.int8)
    w = rng.uniform(0.01, 0.2, 5000).astype(np.float32)
    owner = np.sort(rng.integers(0, 3, 5000))
    flat = rng.permutation(5000)
    monkeypatch.setattr(zonal, "BLOCK_PIXELS", 256)
    total = np.zeros((3, 8))
    offsets = np.searchsorted(owner, np.arange(4))
    zonal._weighted_sums(q, w, flat, offsets, total)
    expected = np.stack([(q[flat[owner == k]].astype(np.float64) * w[flat[owner == k], None]).sum(axis=0)
                         for k in range(3)])
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def _hexagon(x: float, y: float, radius: float) -> shapely.Polygon:
    angles = np.deg2rad(np.arange(6) * 60.0 + 30.0)
    return shapely.Polygon(np.c_[x + radius * np.cos(angles), y + radius * np.sin(angles)])


@pytest.mark.parametrize("factorised", [True, False])
def test_tile_pooling_equals_a_per_cell_reference(monkeypatch, factorised):
    """Whole-tile pooling (one rasterisation, one mask gather, segment sums) against a per-cell loop
    over pixel centres, on a generated tile with sentinel and NaN scales, no-data, an ownership
    boundary and cells cut by the raster's edge."""
    rng = np.random.default_rng(12)
    height, width, dim = 70, 55, 16
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_700.0)
    q = rng.integers(-127, 128, size=(height * width, dim), dtype=np.int8)
    w = rng.uniform(0.01, 0.2, height * width).astype(np.float32)
    w[rng.random(w.size) < 0.05] = np.float32(3.4e38)
    w[rng.random(w.size) < 0.02] = np.nan
    land = (rng.random((height, width)) < 0.9)
    rows, cols = np.mgrid[0:height, 0:width]
    owned = cols + 0.3 * rows < 45  # a slanted tile boundary
    ok = valid_scales(w.reshape(height, width))
    grid = zonal.PixelGrid("EPSG:32633", transform, (height, width), dim, land & ok & owned, owned,
                           lambda flat: q[flat].astype(np.float32) * w[flat, None], land & ~ok & owned,
                           (q, w))
    centres = [(500_000.0 + 10.0 * (0.37 + 5.3 * i) + 7.0 * (j % 2), 5_000_700.0 - 10.0 * (0.61 + 6.1 * j))
               for j in range(13) for i in range(11)]
    geoms = np.array([_hexagon(x, y, 33.3) for x, y in centres], dtype=object)
    monkeypatch.setattr(zonal, "FACTORISED", factorised)
    pooled = zonal.pool_grid(grid, geoms, shapely.get_coordinates(shapely.centroid(geoms)), "mean")
    px = 500_000.0 + 10.0 * (cols.ravel() + 0.5)
    py = 5_000_700.0 - 10.0 * (rows.ravel() + 0.5)
    partial = 0
    for i, geom in enumerate(geoms):
        inside = shapely.contains_xy(geom, px, py) & owned.ravel()
        valid = inside & (land & ok).ravel()
        partial += 0 < inside.sum() < shapely.contains_xy(geom, px, py).sum()
        assert pooled.pixels[i] == inside.sum()
        assert pooled.flagged[i] == (inside & (land & ~ok).ravel()).sum()
        assert pooled.count[i] == valid.sum()
        expected = (q[valid].astype(np.float64) * w[valid, None].astype(np.float64)).sum(axis=0)
        np.testing.assert_allclose(pooled.total[i], expected, rtol=2e-6, atol=1e-4)  # float32 products
    assert partial > 5 and (pooled.pixels == 0).sum() > 5 and (pooled.flagged > 0).sum() > 20
