"""Tessera scale validity: sentinel scales are never pooled, counted in meta, failures explained."""

from __future__ import annotations

import numpy as np
import pytest

from rsembed_db.api import get_embedding
from rsembed_db.errors import TileFailure
from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.tile import TesseraTile, valid_scales
from rsembed_db.specs import BBox, PointBuffer, TemporalSpec
from rsembed_db.specs.spatial import WGS84, transformer
from tests.products.tessera_helpers import YEAR, brute_mean, make_tree, owned_pixels

T = TemporalSpec.year(YEAR)
TILE = TileId(123, 524)  # 12.3-12.4 E, 52.4-52.5 N
BOX = (12.32, 52.42, 12.38, 52.48)
SENTINELS = np.array([3.4e38, 1e5, 1.0, np.inf, -np.inf, np.nan, 0.0, -0.01], np.float32)


def in_box(lon, lat, box=BOX):
    return (lon >= box[0]) & (lon <= box[2]) & (lat >= box[1]) & (lat <= box[3])


def embed(root, spatial):
    return get_embedding("tessera", spatial=spatial, temporal=T, model_config={"dir": str(root), "url": "none"})


def save(root, tile):
    np.save(root / tile.tile.scales_path(YEAR), tile.scales)


def test_validity_rule():
    scales = np.array([[0.06, 0.999, 1.0, 3.4e38], [np.nan, np.inf, 0.0, -1e-3]], np.float32)
    assert valid_scales(scales).tolist() == [[True, True, False, False], [False] * 4]
    per_channel = np.full((1, 2, 128), 0.1, np.float32)
    per_channel[0, 1, 77] = 1e5  # one bad channel makes the pixel invalid
    assert valid_scales(per_channel).tolist() == [[True, False]]
    q = np.ones((1, 2, 128), np.int8)
    tile = TesseraTile(TILE, q, per_channel, np.ones((1, 2), bool), "EPSG:32633", None)
    out = tile.dequantise()
    assert np.isfinite(out[0, 0]).all() and np.isnan(out[0, 1]).all()
    assert tile.valid_and_flagged()[1].tolist() == [[False, True]]


def test_sentinel_scales_inside_a_bbox_are_left_out_and_counted(tmp_path):
    data = make_tree(tmp_path, [TILE])[TILE]
    lon, lat, owned = owned_pixels(data)
    inside = np.argwhere(owned & in_box(lon, lat))
    rng = np.random.default_rng(3)
    picks = inside[rng.choice(len(inside), size=40, replace=False)]
    for k, (r, c) in enumerate(picks):
        data.scales[r, c] = SENTINELS[k % len(SENTINELS)]
    save(tmp_path, data)
    emb = embed(tmp_path, BBox(*BOX))
    assert np.isfinite(emb.data).all() and np.abs(emb.data).max() < 2.0
    bad = np.zeros(data.land.shape, bool)
    bad[picks[:, 0], picks[:, 1]] = True
    clean = [type(data)(**{**data.__dict__, "land": data.land & ~bad})]
    np.testing.assert_allclose(emb.data, brute_mean(clean, in_box), rtol=1e-5, atol=1e-6)
    total = int((owned & in_box(lon, lat)).sum())
    assert emb.meta["pixels"] == total - 40
    assert emb.meta["pixels_excluded"] == 40 and emb.meta["pixels_invalid_scale"] == 40


def test_water_is_excluded_but_not_counted_as_invalid(tmp_path):
    data = make_tree(tmp_path, [TILE], land=lambda lon, lat: lat < 52.45)[TILE]
    data.scales[:] = np.where(data.land, data.scales, np.float32(3.4e38))  # sentinels under water too
    save(tmp_path, data)
    emb = embed(tmp_path, BBox(*BOX))
    lon, lat, owned = owned_pixels(data)
    water = int((owned & in_box(lon, lat) & ~data.land).sum())
    assert emb.meta["pixels_excluded"] == water > 0 and emb.meta["pixels_invalid_scale"] == 0


def test_roi_of_sentinels_only_is_a_failure_with_the_reason(tmp_path):
    data = make_tree(tmp_path, [TILE])[TILE]
    lon, lat, owned = owned_pixels(data)
    data.scales[in_box(lon, lat)] = np.float32(3.4e38)
    save(tmp_path, data)
    with pytest.raises(TileFailure, match=r"no valid pixel among the \d+ inside the ROI: \d+ refused for an "
                                          r"invalid scale \(not finite, <= 0 or >= 1"):
        embed(tmp_path, BBox(*BOX))


def test_sentinel_at_a_point(tmp_path):
    data = make_tree(tmp_path, [TILE])[TILE]
    point = PointBuffer(12.35, 52.45, 3.0)  # smaller than a pixel: takes the pixel holding it
    ok = embed(tmp_path, point)
    assert ok.meta["roi_smaller_than_pixel"] and np.isfinite(ok.data).all()
    inv = ~data.transform
    x, y = transformer(WGS84, data.crs).transform(12.35, 52.45)
    c, r = (int(v) for v in np.floor(inv @ (x, y)))
    expected = data.quantised[r, c].astype(np.float32) * data.scales[r, c]
    np.testing.assert_array_equal(ok.data, expected)
    data.scales[r, c] = np.float32(1e5)
    save(tmp_path, data)
    with pytest.raises(TileFailure, match="smaller than a pixel and its pixel is refused for an invalid scale"):
        embed(tmp_path, point)


def test_three_d_scales_with_one_bad_channel(tmp_path):
    data = make_tree(tmp_path, [TILE])[TILE]
    lon, lat, owned = owned_pixels(data)
    scales3 = np.repeat(data.scales[..., None], 128, axis=2)
    r, c = np.argwhere(owned & in_box(lon, lat))[5]
    scales3[r, c, 100] = np.float32(3.4e38)
    np.save(tmp_path / TILE.scales_path(YEAR), scales3)
    emb = embed(tmp_path, BBox(*BOX))
    assert np.isfinite(emb.data).all() and emb.meta["pixels_invalid_scale"] == 1
    land = data.land.copy()
    land[r, c] = False
    np.testing.assert_allclose(emb.data, brute_mean([type(data)(**{**data.__dict__, "land": land})], in_box),
                               rtol=1e-5, atol=1e-6)
