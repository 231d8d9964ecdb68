"""Weighted-sum pooling (int8 x per-pixel scale, one product per ROI) equals the plain masked mean."""

from __future__ import annotations

import numpy as np
import shapely
from rasterio.features import geometry_mask

from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.products import zonal
from rsembed_db.producers.products.rois import RoiSet
from rsembed_db.sources.tessera.layout import TileId
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
    zonal._weighted_sums(q, w, flat, owner, total)
    expected = np.stack([(q[flat[owner == k]].astype(np.float64) * w[flat[owner == k], None]).sum(axis=0)
                         for k in range(3)])
    np.testing.assert_allclose(total, expected, rtol=1e-5)
