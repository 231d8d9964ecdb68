"""InputPrepSpec semantics (DESIGN.md section 2) with fake forwards whose outputs are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from affine import Affine
from shapely.geometry import box

from rsembed_db.models.input_prep import feature_crops, owned_spans, run_with_input_prep, tile_starts
from rsembed_db.models.pooling import pool
from rsembed_db.specs import InputPrepSpec, SpecError
from rsembed_db.tiling.chip_grid import ChipGrid

CRS = "EPSG:32633"
T = Affine(10, 0, 500000, 0, -10, 5800000)


def patch_means(patch: int, calls: list[int] | None = None):
    """forward: mean of each patch x patch block per channel -> (B, C, S/patch, S/patch)."""
    def forward(batch: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(batch.shape[0])
        return F.avg_pool2d(torch.from_numpy(batch).double(), patch).numpy()
    return forward


def grid_for(height: int, width: int) -> ChipGrid:
    left, top = T.c, T.f
    return ChipGrid(CRS, T, width, height, box(left, top - 10 * height, left + 10 * width, top))


def run(data, prep, size, forward, grid_output=False, valid=None):
    valid = np.ones(data.shape[1:], bool) if valid is None else valid
    return run_with_input_prep(data, valid, T, CRS, prep, size, forward, grid_output)


def test_cover_shift_starts():
    assert tile_starts(300, 224) == [0, 76]
    assert tile_starts(6, 4) == [0, 2]
    assert tile_starts(10, 4) == [0, 4, 6]
    assert tile_starts(8, 4) == [0, 4]
    assert tile_starts(224, 224) == [0]
    assert tile_starts(100, 224) == [0]


def test_midpoint_cut_ownership():
    assert owned_spans([0, 3], 4, 7) == [(0, 3), (3, 7)]
    assert owned_spans([0, 76], 224, 300) == [(0, 150), (150, 300)]
    assert owned_spans([0, 4], 4, 8) == [(0, 4), (4, 8)]
    assert owned_spans([0], 224, 100) == [(0, 100)]


def test_stride_must_equal_tile_size():
    with pytest.raises(SpecError, match="tile_stride"):
        InputPrepSpec(mode="tile", tile_size=4, tile_stride=2)
    assert InputPrepSpec(mode="tile", tile_size=4, tile_stride=4).tile_stride == 4


def test_feature_crops_snap_cuts_to_patch_edges_in_order():
    assert feature_crops([0, 76], [(0, 150), (150, 300)], 224, 14) == [(0, 9), (4, 14)]
    assert feature_crops([0, 3], [(0, 3), (3, 7)], 4, 1) == [(0, 1), (0, 1)]
    assert feature_crops([0, 4], [(0, 4), (4, 8)], 4, 2) == [(0, 2), (0, 2)]
    assert feature_crops([0], [(0, 3)], 4, 4) == [(0, 3)]            # padding cropped


def test_pooled_mean_weighted_by_owned_area():
    # Width 7, tile 4: tiles [0, 4) and [3, 7) own widths 3 and 4; one patch per tile.
    data = np.zeros((1, 4, 7), np.float32)
    data[:, :, 3:] = 7.0                      # tile means: 7/4 and 7
    fmap = run(data, InputPrepSpec("tile"), 4, patch_means(4))
    assert fmap.values.shape == (1, 1, 2)     # the patch layout: one cell per tile
    assert fmap.values[0, 0].tolist() == [1.75, 7.0]
    assert fmap.transform == T @ Affine.scale(3.5, 4)
    assert pool(fmap, grid_for(4, 7)).tolist() == [(3 * 1.75 + 4 * 7.0) / 7]
    assert pool(fmap, grid_for(4, 7), "max").tolist() == [7.0]


def test_vit_sized_tiles_stitch_on_the_patch_layout():
    # 300 px, tile 224, 16 px patches: starts [0, 76], cut at 150, snapped to 144 | 140.
    x = np.arange(300, dtype=np.float32)
    data = np.broadcast_to(x, (1, 300, 300)).copy()
    calls: list[int] = []
    fmap = run(data, InputPrepSpec("tile"), 224, patch_means(16, calls), grid_output=True)
    assert calls == [4]                       # all tiles in one batch
    assert fmap.meta["input_prep"]["starts_x"] == [0, 76]
    assert fmap.values.shape == (1, 19, 19)
    assert fmap.meta["input_prep"]["stitched_grid"] == [19, 19]
    assert fmap.transform == T @ Affine.scale(300 / 19, 300 / 19)
    expected = [16 * k + 7.5 for k in range(9)] + [76 + 16 * k + 7.5 for k in range(4, 14)]
    assert fmap.values[0, 0].tolist() == expected
    # Pooled: per-tile means (111.5 for tiles at x=0, 187.5 at x=76), weighted by owned area 150 x 150 each.
    assert pool(fmap, grid_for(300, 300))[0] == pytest.approx((111.5 + 187.5) / 2, rel=1e-7)


def test_a_chip_that_fits_one_tile_runs_the_plain_model_call():
    data = np.random.default_rng(0).uniform(0, 1, (2, 4, 3)).astype(np.float32)
    resized = run(data, InputPrepSpec("resize"), 4, patch_means(2), grid_output=True)
    for prep in (InputPrepSpec("tile"), InputPrepSpec("auto"), InputPrepSpec.tile(tile_size=6)):
        other = run(data, prep, 4, patch_means(2), grid_output=True)
        assert np.array_equal(other.values, resized.values) and other.transform == resized.transform
        assert other.meta == resized.meta and other.tiles is None


def test_pad_edges_pads_short_axes_and_crops_the_padding():
    data = np.arange(21, dtype=np.float32).reshape(1, 3, 7)   # rows: one padded tile; cols: two
    fmap = run(data, InputPrepSpec("tile", pad_edges=True), 4, patch_means(1))
    assert fmap.values.shape == (1, 3, 7)     # padded cells are not part of the grid
    assert np.array_equal(fmap.values[0], data[0])
    assert fmap.transform == T


def test_without_pad_edges_a_short_axis_is_stretched_to_the_model_size():
    data = np.ones((1, 3, 7), np.float32)
    fmap = run(data, InputPrepSpec("tile", pad_edges=False), 4, patch_means(1))
    assert fmap.values.shape == (1, 4, 7)     # 4 patches over the 3 stretched rows
    assert fmap.transform == T @ Affine.scale(1, 3 / 4)


def test_resize_georeferences_the_patch_grid_on_the_chip():
    data = np.ones((2, 8, 8), np.float32)
    fmap = run(data, InputPrepSpec("resize"), 4, patch_means(2))
    assert fmap.values.shape == (2, 2, 2)
    assert fmap.transform == T @ Affine.scale(4, 4)   # 8 px chip / 2 cells
    assert np.allclose(fmap.values, 1.0)


def test_auto_tiles_grid_output_within_max_tiles_else_resizes():
    data = np.ones((1, 8, 8), np.float32)
    mode = lambda **kw: run(data, InputPrepSpec("auto", **kw.pop("spec", {})), 4,  # noqa: E731
                            patch_means(2), **kw).meta["input_prep"]["mode"]
    assert mode(grid_output=True) == "tile"                      # 4 tiles <= 9
    assert mode(grid_output=False) == "resize"                   # pooled: resize
    assert mode(grid_output=True, spec={"max_tiles": 3}) == "resize"


def test_tile_size_defaults_to_model_size_and_can_differ_from_it():
    data = np.ones((1, 16, 16), np.float32)
    calls: list[int] = []
    fmap = run(data, InputPrepSpec("tile", tile_size=8), 4, patch_means(2, calls))
    assert calls == [4] and fmap.meta["input_prep"]["tile_size"] == 8
    assert fmap.values.shape == (1, 4, 4)
    assert fmap.transform == T @ Affine.scale(4, 4)              # 8 px tiles -> 2 cells each


def test_patch_validity_needs_half_the_pixels():
    data = np.ones((1, 4, 4), np.float32)
    valid = np.ones((4, 4), bool)
    valid[:, :2] = False                      # left patch all invalid
    valid[0, 2] = False                       # right patch 7/8 valid
    fmap = run(data, InputPrepSpec("resize"), 4, lambda b: F.avg_pool2d(torch.from_numpy(b), (4, 2)).numpy(),
               valid=valid)
    assert fmap.valid.tolist() == [[False, True]]


def test_auto_is_resolved_into_the_storage_key():
    """auto tiles for grid output and resizes for pooled output, and the key says which."""
    from rsembed_db import H3Cell, OutputSpec, SensorSpec, TemporalSpec
    from rsembed_db.models.base import Embedder, ModelDescription
    from rsembed_db.producers.onthefly import OnTheFlyProducer

    class Square32(Embedder):
        name = "square32"

        def describe(self) -> ModelDescription:
            return ModelDescription("square32", 4, "on_the_fly", ("B04",), 10.0, image_size=32, patch_size=8)

        def default_sensor(self) -> SensorSpec:
            return SensorSpec("local", ("B04",))

        def embed(self, chips):
            raise AssertionError("not called")

    producer = OnTheFlyProducer(Square32(), source=None)
    cell, year = H3Cell("881f1c6481fffff"), TemporalSpec.year(2017)  # ~100 x 100 px at 10 m: 16 tiles
    pooled = producer.request(cell, year, OutputSpec.pooled(), input_prep="auto")
    grid = producer.request(cell, year, OutputSpec.grid(), input_prep=InputPrepSpec("auto", max_tiles=16))
    few = producer.request(cell, year, OutputSpec.grid(), input_prep="auto")  # 16 tiles > max_tiles 9
    assert (pooled.input_prep.mode, grid.input_prep.mode, few.input_prep.mode) == ("resize", "tile", "resize")
    assert pooled.key != grid.key
    assert pooled.key == producer.request(cell, year, OutputSpec.pooled(), input_prep="resize").key
