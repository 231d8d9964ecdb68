"""Where-clause validation: one boolean expression over stored scalar columns, nothing else."""

from __future__ import annotations

import pytest

from rsembed_db.query.where import scalar_columns, validate_where
from rsembed_db.specs import SpecError


@pytest.mark.parametrize("clause", [
    "year >= 2019 AND h3_res = 9",
    "(lon BETWEEN 12.5 AND 13) OR NOT (lat < 52.1)",
    "model IN ('a', 'b''s') AND key LIKE 'ab%'",
    "t_start >= date '2020-01-01' AND t_end < '2022-01-01'",
    "meta ILIKE '%cloud%' OR spatial_kind IS NOT NULL",
    "CAST(year AS BIGINT) % 2 = 0",
    "created_at > TIMESTAMP '2020-01-01 00:00:00'",
    "lon > -1.5e1",
    "tile_id = 'a;b -- not a comment'",  # separators inside string literals are data
])
def test_valid_clauses_pass_unchanged(clause):
    assert validate_where(f"  {clause} ") == clause


@pytest.mark.parametrize("clause, needle", [
    ("year = 2020; DROP TABLE syn", "statement separators"),
    ("key IN (SELECT key FROM other)", "subqueries"),
    ("lon > 1 -- trailing", "comments"),
    ("lon > 1 /* block */", "comments"),
    ("vector IS NULL", "unknown column or keyword 'vector'"),
    ("geometry IS NULL", "unknown column or keyword 'geometry'"),
    ("lower(key) = 'a'", "unknown column or keyword 'lower'"),
    ("read_parquet('x') IS NULL", "unknown column or keyword 'read_parquet'"),
    ('"key" = \'x\'', "unexpected character"),
    ("`key` = 'x'", "unexpected character"),
    ("(lat > 1", "unbalanced"),
    ("lat > 1)", "unbalanced"),
    ("lon", "boolean"),
    ("lon + 1", "boolean"),
    ("", "non-empty"),
    ("'unterminated = 1", "unexpected character"),
    ("x" * 5000, "longer than"),
])
def test_invalid_clauses_are_refused_naming_the_field(clause, needle):
    with pytest.raises(SpecError, match=needle) as info:
        validate_where(clause)
    assert info.value.field == "filters.where"


def test_where_columns_are_the_stored_scalars():
    columns = scalar_columns()
    assert {"key", "h3", "year", "t_start", "lon", "meta"} <= set(columns)
    assert not {"vector", "grid", "geometry", "grid_shape"} & set(columns)


def test_valid_clauses_run_in_lancedb(tmp_path):
    import h3
    import numpy as np

    from rsembed_db.query.request import SearchFilters, SearchRequest
    from rsembed_db.query.search import search
    from rsembed_db.store import EmbeddingStore
    from rsembed_db.store.synthetic import write_synthetic

    store = EmbeddingStore(tmp_path / "db")
    write_synthetic(store, "syn", h3.latlng_to_cell(52.5, 12.8, 7), 9, [2020, 2021], 8)
    for clause in ["(lon BETWEEN 12.5 AND 13) OR NOT (lat < 52.1)", "t_start >= date '2020-01-01'",
                   "t_end < date '2022-01-01'", "meta ILIKE '%x%' OR spatial_kind IS NOT NULL",
                   "CAST(year AS BIGINT) % 2 = 0", "created_at > TIMESTAMP '2020-01-01 00:00:00'",
                   "h3 > 0 AND key LIKE '%'"]:
        result = search(store, "syn", SearchRequest(vector=np.ones(8), k=3, filters=SearchFilters(where=clause)))
        assert len(result) == 3, clause
    with pytest.raises(SpecError, match="filters.where: .*Date32"):  # LanceDB's own type errors
        search(store, "syn", SearchRequest(vector=np.ones(8), filters=SearchFilters(where="t_end < '2022-01-01'")))
