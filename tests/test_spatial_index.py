"""Polygon filters inside the Lance scan: ``geometry`` tagged ``geoarrow.wkb`` with an
R-tree on new tables; tables made before the tag take the bbox + shapely path."""

from __future__ import annotations

import json

import h3
import lancedb
import numpy as np
import pyarrow as pa
import pytest
import shapely
from typer.testing import CliRunner

from rsembed_db.cli.app import app
from rsembed_db.query.filters import compile_filters
from rsembed_db.query.profile import table_profile
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.search import search
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.indexes import index_table
from rsembed_db.store.schema import has_geoarrow_footprint
from rsembed_db.store.synthetic import synthetic_cells, synthetic_table, synthetic_vectors
from tests.test_search import assert_exact

PARENT = h3.latlng_to_cell(52.5, 12.8, 6)
TRIANGLE = shapely.Polygon([(12.55, 52.30), (12.95, 52.35), (12.70, 52.62)])


def _untagged(table: pa.Table) -> pa.Table:
    """``table`` as a table made before the geometry tag stores it."""
    index = table.schema.get_field_index("geometry")
    return table.cast(table.schema.set(index, pa.field("geometry", pa.binary())))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The same 1029 rows twice: ``new`` (tagged, R-tree) and ``old`` (plain binary geometry)."""
    path = tmp_path_factory.mktemp("spatial") / "db"
    cells = synthetic_cells(PARENT, 9)
    years = [2019, 2020, 2021]
    vectors = synthetic_vectors(cells, years, 16, 3)
    data = pa.concat_tables([synthetic_table(cells, y, vectors[i * len(cells):(i + 1) * len(cells)])
                             for i, y in enumerate(years)])
    db = lancedb.connect(str(path))
    db.create_table("new", data)
    db.create_table("old", _untagged(data))
    store = EmbeddingStore(path)
    for name in ("new", "old"):
        index_table(store, name)
    return store


def _rows(store, name):
    data = store.dataset(name).to_table(columns=["key", "lon", "lat", "geometry", "vector"])
    rows = {n: data[n].to_numpy(zero_copy_only=False) for n in ("key", "lon", "lat")}
    rows["vector"] = np.stack(data["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    rows["geometry"] = shapely.from_wkb(data["geometry"].to_numpy(zero_copy_only=False))
    return rows


def test_new_tables_get_an_rtree_old_ones_do_not(store):
    new, old = store.dataset("new"), store.dataset("old")
    assert has_geoarrow_footprint(new.schema) and not has_geoarrow_footprint(old.schema)
    assert any(i["type"] == "RTree" and i["fields"] == ["geometry"] for i in new.list_indices())
    assert not any(i["fields"] == ["geometry"] for i in old.list_indices())
    assert table_profile(store, "new").spatial_index and not table_profile(store, "old").spatial_index


def test_polygon_sql_prunes_with_the_rtree(store):
    sql = compile_filters(SearchFilters(polygon=TRIANGLE, spatial_match="intersects"), spatial_index=True).sql
    assert "st_intersects" not in compile_filters(SearchFilters(polygon=TRIANGLE), spatial_index=True).sql  # centre
    plan = store.dataset("new").scanner(columns=["key"], filter=sql).explain_plan()
    assert "geometry_idx(RTree)" in plan
    got = set(store.dataset("new").to_table(columns=["key"], filter=sql)["key"].to_pylist())
    rows = _rows(store, "new")
    assert got == set(rows["key"][shapely.intersects(TRIANGLE, rows["geometry"])])  # st_intersects is exact


@pytest.mark.parametrize("match", ["centre", "intersects"])
@pytest.mark.parametrize("name", ["new", "old"])
def test_polygon_search_is_exact_on_both_paths(store, name, match):
    rows = _rows(store, name)
    if match == "centre":
        mask = shapely.intersects_xy(TRIANGLE, rows["lon"], rows["lat"])
    else:
        mask = shapely.intersects(TRIANGLE, rows["geometry"])
    query = rows["vector"][10]
    result = search(store, name, SearchRequest(vector=query, k=12, exact=True,
                                               filters=SearchFilters(polygon=TRIANGLE, spatial_match=match)))
    assert result.matched == int(mask.sum()) > 12
    assert_exact(result, rows, query, "cosine", 12, mask)


def test_cli_polygon_search_on_a_new_table(store, tmp_path):
    area = tmp_path / "area.geojson"
    area.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(TRIANGLE)}))
    rows = _rows(store, "new")
    key = rows["key"][10]
    result = CliRunner().invoke(app, ["search", "--table", "new", "--key", key, "-k", "5", "--format", "json",
                                      "--polygon", str(area), "--spatial-match", "intersects", "--tiling", "any",
                                      "--db", store.uri])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    inside = set(rows["key"][shapely.intersects(TRIANGLE, rows["geometry"])])
    assert len(found) == 5 and {r["key"] for r in found} <= inside
