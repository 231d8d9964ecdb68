"""The Python API: read-through get_embedding / get_embeddings_batch."""

from __future__ import annotations

import numpy as np
import pytest

from rsembed_db import FetchSpec, H3Cell, OutputSpec, PointBuffer, SensorSpec, SpecError, TemporalSpec
from rsembed_db.api import describe_model, get_embedding, get_embeddings_batch, list_models
from rsembed_db.errors import TileFailure
from rsembed_db.store import EmbeddingStore
from tests.conftest import SCENE

YEAR = TemporalSpec.year(2017)
CELL = H3Cell("881f1c6481fffff")  # inside the bundled scene


def test_miss_is_computed_and_stored_then_read_back(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    first = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, store=store, imagery=SCENE)
    assert first.meta["from_store"] is False and first.data.shape == (256,) and first.data.dtype == np.float32
    assert first.meta["source_covered_fraction"] == 1.0 and first.meta["input_time"] == "2017-07-02"
    second = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, store=store, imagery=SCENE)
    assert second.meta["from_store"] is True and second.meta["key"] == first.meta["key"]
    np.testing.assert_array_equal(second.data, first.data)
    # Without a store nothing is kept, and the values are the same bits.
    again = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, imagery=SCENE)
    np.testing.assert_array_equal(again.data, first.data)


def test_grid_of_a_pooled_only_row_is_computed_and_upserted(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    pooled = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, store=store, imagery=SCENE)
    grid = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, output=OutputSpec.grid(), store=store,
                         imagery=SCENE)
    assert grid.meta["from_store"] is False and grid.meta["key"] == pooled.meta["key"]
    assert grid.data.dims == ("band", "y", "x") and grid.data.attrs["crs"] == "EPSG:32633"
    assert store.table("mosaiks").count_rows() == 1
    stored = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, output=OutputSpec.grid(), store=store,
                           imagery=SCENE)
    assert stored.meta["from_store"] is True
    np.testing.assert_array_equal(stored.data.values, grid.data.values)
    # The stored vector is the hexagon-masked mean of the stored grid.
    from rsembed_db.tiling.chip_grid import chip_grid_for
    chip = chip_grid_for(CELL, 10)
    cells = chip.roi_mask() & ~np.isnan(grid.data.values[0])
    np.testing.assert_allclose(grid.data.values[:, cells].mean(axis=1), pooled.data, rtol=1e-5, atol=1e-6)


def test_batch_mixes_stored_and_missing(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    spatials = [CELL, PointBuffer(12.6, 52.49, 250), H3Cell("881f1c648bfffff")]
    get_embedding("mosaiks", spatial=spatials[1], temporal=YEAR, store=store, imagery=SCENE)
    out = get_embeddings_batch("mosaiks", spatials=spatials, temporal=YEAR, store=store, imagery=SCENE)
    assert [e.meta["from_store"] for e in out] == [False, True, False]
    assert store.table("mosaiks").count_rows() == 3


def test_outside_imagery_raises_tile_failure_and_stores_nothing(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    with pytest.raises(TileFailure, match="outside the footprint of every scene"):
        get_embedding("mosaiks", spatial=PointBuffer(13.5, 52.5, 200), temporal=YEAR, store=store,
                      imagery=SCENE)
    assert store.table_names() == []


def test_bad_requests_name_the_field():
    with pytest.raises(SpecError, match="^fetch:"):
        get_embedding("mosaiks", spatial=CELL, temporal=YEAR, imagery=SCENE,
                      sensor=SensorSpec("local", ("B02",)), fetch=FetchSpec(scale_m=20))
    with pytest.raises(SpecError, match="^modality:"):
        get_embedding("mosaiks", spatial=CELL, temporal=YEAR, imagery=SCENE, modality="sar")
    with pytest.raises(SpecError, match="^model:"):
        get_embedding("nope", spatial=CELL, temporal=YEAR, imagery=SCENE)
    with pytest.raises(SpecError, match="^imagery:"):
        get_embedding("mosaiks", spatial=CELL, temporal=YEAR)


def test_fetch_override_changes_key_and_resolution():
    coarse = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, imagery=SCENE, fetch=FetchSpec(scale_m=20),
                           output=OutputSpec.grid())
    fine = get_embedding("mosaiks", spatial=CELL, temporal=YEAR, imagery=SCENE, output=OutputSpec.grid())
    assert coarse.meta["key"] != fine.meta["key"]
    assert coarse.data.attrs["transform"][0] == 20 and fine.data.attrs["transform"][0] == 10


def test_catalogue():
    assert "mosaiks" in list_models()
    desc = describe_model("mosaiks")
    assert desc.dim == 256 and desc.kind == "on_the_fly"
