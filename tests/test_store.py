"""The LanceDB store: schema, idempotent upserts, failures, width checks."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import shapely
from affine import Affine

from rsembed_db.errors import NotFound
from rsembed_db.models.base import FeatureMap
from rsembed_db.models.pooling import to_dataarray
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.query.rows import grid_from_row
from rsembed_db.specs import EmbeddingRequest, H3Cell, OutputSpec, SpecError, TemporalSpec
from rsembed_db.store import EmbeddingStore

CELLS = ["881f1d4b1bfffff", "881f1d4b1dfffff", "881f1d4b19fffff"]


def _records(dim: int = 4, offset: float = 0.0) -> list[EmbeddingRecord]:
    out = []
    for i, cell in enumerate(CELLS):
        request = EmbeddingRequest("toy", H3Cell(cell), TemporalSpec.year(2021))
        out.append(EmbeddingRecord(request, cell, np.full(dim, i + offset, np.float32), meta={"i": i}))
    return out


def test_write_is_idempotent_and_columns_are_filled(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    store.write("toy", _records(), 4)
    store.write("toy", _records(offset=10), 4)  # same keys: updated, not duplicated
    table = store.table("toy")
    assert table.count_rows() == 3
    row = store.get("toy", _records()[1].request.key)
    cell = H3Cell(CELLS[1])
    assert row["vector"] == [11.0] * 4 and row["h3"] == cell.int_id and row["h3_res"] == 8
    assert row["t_start"] == dt.date(2021, 1, 1) and row["t_end"] == dt.date(2022, 1, 1) and row["year"] == 2021
    hexagon = shapely.from_wkb(row["geometry"])
    assert hexagon.equals_exact(cell.lonlat_geometry(), 1e-12)
    assert (row["minlon"], row["minlat"], row["maxlon"], row["maxlat"]) == hexagon.bounds
    assert row["spatial_kind"] == "h3" and row["pooling"] == "mean" and row["grid"] is None
    assert any(idx.columns == ["key"] for idx in table.list_indices())
    [info] = store.info()
    assert (info.name, info.rows, info.dim, info.models) == ("toy", 3, 4, ("toy",))


def test_width_mismatch_is_refused_and_nothing_is_lost(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    store.write("toy", _records(), 4)
    with pytest.raises(SpecError, match="4-d"):
        store.write("toy", _records(dim=8), 8)
    assert store.table("toy").count_rows() == 3


def test_existing_keys_and_grid_requirement(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    records = _records()
    values = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    grid = to_dataarray(FeatureMap(values, np.ones((2, 3), bool), Affine(10, 0, 100, 0, -10, 200), "EPSG:32633"))
    records[0] = EmbeddingRecord(
        EmbeddingRequest("toy", H3Cell(CELLS[0]), TemporalSpec.year(2021), output=OutputSpec.grid()),
        CELLS[0], np.zeros(4, np.float32), grid)
    store.write("toy", records, 4)
    keys = [r.request.key for r in records]
    assert store.existing_keys("toy", keys + ["missing"]) == set(keys)
    assert store.existing_keys("toy", keys, need_grid=True) == {keys[0]}
    back = grid_from_row(store.get("toy", keys[0]))
    np.testing.assert_array_equal(back.values, values)
    assert back.attrs["crs"] == "EPSG:32633" and back.x.values.tolist() == [105.0, 115.0, 125.0]
    assert back.y.values.tolist() == [195.0, 185.0]


def test_failures_are_logged_then_cleared_by_success(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    records = _records()
    store.record_failures("toy", [FailureRecord(records[0].request, CELLS[0], "no imagery")])
    store.record_failures("toy", [FailureRecord(records[0].request, CELLS[0], "still no imagery")])
    [failure] = store.failures("toy")
    assert failure["error"] == "still no imagery" and failure["request"]["spatial"]["cell"] == CELLS[0]
    store.write("toy", records[:1], 4)
    assert store.failures() == []
    assert store.table_names() == ["toy"]


def test_missing_table_names_the_choices(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    store.write("toy", _records(), 4)
    with pytest.raises(NotFound, match=r"no table 'nope' in .* \(tables: toy\)") as info:
        store.table("nope")
    assert info.value.field == "table" and isinstance(info.value, LookupError)
