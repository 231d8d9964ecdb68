"""Storage accounting (``tables --verbose``) and ``optimize`` leaving no index files that
no retained version uses."""

from __future__ import annotations

import datetime as dt

import h3
import pytest
import shapely
from typer.testing import CliRunner

from rsembed_db.cli.app import app
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.indexes import IndexPolicy, ensure_indexes, optimize_table
from rsembed_db.store.storage import index_dirs_on_disk, referenced_index_dirs, storage_report
from rsembed_db.store.synthetic import write_synthetic

PARENT = h3.latlng_to_cell(52.5, 12.8, 6)
ROWS = 343 * 2  # res-9 children of a res-6 cell, two years
DIM = 16


@pytest.fixture
def store(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    write_synthetic(store, "f16", PARENT, 9, [2020, 2021], DIM, vector_dtype="float16")
    write_synthetic(store, "f32", PARENT, 9, [2020, 2021], DIM)
    return store


def test_vector_bytes_follow_the_dtype_and_parts_add_up(store):
    f16, f32 = storage_report(store.dataset("f16")), storage_report(store.dataset("f32"))
    assert f16.rows == f32.rows == ROWS and f16.raw_vector_bytes == ROWS * DIM * 4
    assert ROWS * DIM * 2 <= f16.vector_bytes <= ROWS * DIM * 2 * 1.05
    assert ROWS * DIM * 4 <= f32.vector_bytes <= ROWS * DIM * 4 * 1.05
    assert f16.scalar_bytes == pytest.approx(f32.scalar_bytes, rel=0.02)  # same other columns
    assert set(f16.columns) >= {"key", "geometry", "vector", "h3"}
    assert f16.index_bytes == 0 and f16.stale_index_dirs == ()
    assert f16.total_bytes == f16.vector_bytes + f16.scalar_bytes + f16.other_bytes
    ensure_indexes(store.table("f16"), IndexPolicy(vector_min_rows=256))
    indexed = storage_report(store.dataset("f16"))
    assert indexed.index_bytes > 0 and indexed.columns == f16.columns


def test_footprints_are_stored_compressed_and_read_back_unchanged(store):
    dataset = store.dataset("f16")
    rows = dataset.to_table(columns=["tile_id", "geometry"])
    hexagons = shapely.polygons([[(lon, lat) for lat, lon in h3.cell_to_boundary(c)] for c in rows["tile_id"].to_pylist()])
    assert shapely.equals_exact(shapely.from_wkb(rows["geometry"].to_numpy(zero_copy_only=False)), hexagons, 0).all()
    raw = sum(len(wkb) for wkb in rows["geometry"].to_pylist())
    assert raw == ROWS * (1 + 4 + 4 + 4 + 7 * 16)  # WKB polygon, one ring of 7 points
    assert storage_report(dataset).columns["geometry"] < 0.6 * raw  # zstd pages (130 -> 69 B/row at res 9)


def test_tables_verbose_prints_bytes_per_row(store):
    result = CliRunner().invoke(app, ["tables", "--verbose", "--db", store.uri], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in result.output.splitlines() if line.startswith("│ f")]
    # first table: table, rows, dim, dtype, models, tilings; second: table, vectors B/row, scalars, indexes,
    # other, total, x raw, superseded indexes
    dtypes = {cells[0]: cells[3] for cells in rows if len(cells) == 6}
    assert dtypes == {"f16": "float16", "f32": "float32"}
    per_row = {cells[0]: cells[1:] for cells in rows if len(cells) == 8}
    assert float(per_row["f16"][0]) == pytest.approx(DIM * 2, rel=0.05)
    assert float(per_row["f32"][0]) == pytest.approx(DIM * 4, rel=0.05)
    report = storage_report(store.dataset("f16"))
    assert float(per_row["f16"][4]) == pytest.approx(report.total_bytes / ROWS, abs=0.1)


def test_optimize_leaves_only_referenced_index_dirs(store):
    table = store.table("f16")
    ensure_indexes(table, IndexPolicy(vector_min_rows=256))
    write_synthetic(store, "f16", PARENT, 9, [2022], DIM, seed=4, vector_dtype="float16")  # unindexed rows
    ensure_indexes(table)  # folds them in: new index directories supersede the first ones
    dataset = store.dataset("f16")
    assert index_dirs_on_disk(dataset) > referenced_index_dirs(dataset)

    kept = optimize_table(table, dt.timedelta(days=7))
    dataset = store.dataset("f16")
    stale = index_dirs_on_disk(dataset) - referenced_index_dirs(dataset)
    assert kept.superseded_indexes == len(stale) > 0
    # each one is still used by a retained version: nothing on disk is referenced by none
    used = set()
    for version in dataset.versions():
        used |= referenced_index_dirs(dataset.checkout_version(version["version"]))
    assert index_dirs_on_disk(dataset) == used

    report = optimize_table(table, dt.timedelta(0))
    dataset = store.dataset("f16")
    assert report.superseded_indexes == 0 and report.versions_after == 1
    assert index_dirs_on_disk(dataset) == referenced_index_dirs(dataset) != set()
    assert storage_report(dataset).stale_index_bytes == 0
    assert store.table("f16").count_rows() == 343 * 3
