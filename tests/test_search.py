"""Similarity search on small tables: exact top-k against numpy, every query form, filters
and their combinations, polygon, exclusion, renderings."""

from __future__ import annotations

import datetime as dt
import time

import h3
import numpy as np
import pyarrow as pa
import pytest
import shapely

from rsembed_db.errors import NotFound
from rsembed_db.query import hot
from rsembed_db.query.filters import PolygonTest, compile_filters, descendant_range
from rsembed_db.query.profile import table_profile
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.search import search
from rsembed_db.specs import BBox, SpecError
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.synthetic import write_synthetic

PARENT = h3.latlng_to_cell(52.5, 12.8, 5)  # 2401 res-9 cells; x 3 years
YEARS = [2019, 2020, 2021]
TABLE = "syn"


@pytest.fixture(scope="module", params=["lance", "in-memory"])
def small(request, tmp_path_factory):
    """A 7203-row table of 16-d vectors (no vector index) and its rows as numpy; every test
    runs twice: exact search reading Lance, and over the in-memory copy of the vectors."""
    store = EmbeddingStore(tmp_path_factory.mktemp("search") / "db")
    write_synthetic(store, TABLE, PARENT, 9, YEARS, 16, seed=3)
    data = store.table(TABLE).to_lance().to_table(columns=["key", "lon", "lat", "h3", "year", "t_start", "vector"])
    rows = {name: data[name].to_numpy(zero_copy_only=False) for name in ("key", "lon", "lat", "h3", "year")}
    rows["vector"] = np.stack(data["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    hot.configure(64 if request.param == "in-memory" else 0)  # 0 also undoes an app's budget
    if request.param == "in-memory":
        assert hot.warm(store, TABLE).vectors.shape == (7203, 16)
    yield store, rows
    hot.configure(0)


def numpy_distances(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    matrix, query = matrix.astype(np.float64), np.asarray(query, np.float64)
    if metric == "l2":
        return ((matrix - query) ** 2).sum(axis=1)
    if metric == "dot":
        return 1.0 - matrix @ query
    return 1.0 - (matrix @ query) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))


def assert_exact(result, rows, query, metric, k, mask=None, exclude=()):
    """The result is the true top-k among rows passing ``mask`` (ties within float32 noise)."""
    mask = np.ones(len(rows["key"]), bool) if mask is None else mask.copy()
    mask &= ~np.isin(rows["key"], list(exclude))
    dist = numpy_distances(rows["vector"][mask], query, metric)
    expected = np.sort(dist)[:k]
    got = np.asarray(result.rows["distance"].to_pylist(), np.float64)
    assert len(result) == min(k, int(mask.sum()))
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(got, expected, atol=2e-5 * scale)
    by_key = dict(zip(rows["key"][mask], dist))
    for key, d in zip(result.keys, got):  # every returned row passes the filter, with its own distance
        assert abs(by_key[key] - d) <= 2e-5 * scale


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_exact_top_k_matches_numpy(small, metric):
    store, rows = small
    query = np.random.default_rng(1).normal(size=16).astype(np.float32)
    result = search(store, TABLE, SearchRequest(vector=query, k=15, metric=metric))
    assert result.route == "exact" and result.metric == metric
    assert ("in-memory" in result.notes[-1]) == (hot.CACHE.budget > 0)
    assert_exact(result, rows, query, metric, 15)
    assert result.rows["distance"].to_pylist() == sorted(result.rows["distance"].to_pylist())


def test_key_query_excludes_itself_unless_asked(small):
    store, rows = small
    key, vector = rows["key"][100], rows["vector"][100]
    result = search(store, TABLE, SearchRequest(key=key, k=5))
    assert key not in result.keys and result.query_keys == (key,)
    assert_exact(result, rows, vector, "cosine", 5, exclude=[key])
    kept = search(store, TABLE, SearchRequest(key=key, k=5, exclude_query=False))
    assert kept.keys[0] == key and kept.rows["distance"][0].as_py() == pytest.approx(0, abs=1e-6)


def test_near_and_h3_find_the_covering_row_for_the_window(small):
    store, rows = small
    i = int(np.nonzero(rows["year"] == 2020)[0][7])
    cell = h3.int_to_str(int(rows["h3"][i]))
    lat, lon = h3.cell_to_latlng(cell)
    by_point = search(store, TABLE, SearchRequest(near=(lon, lat), k=3, filters=SearchFilters(year=2020)))
    assert by_point.query_keys == (rows["key"][i],)
    by_cell = search(store, TABLE, SearchRequest(h3=cell, k=3, filters=SearchFilters(year=2020)))
    assert by_cell.query_keys == (rows["key"][i],) and by_cell.keys == by_point.keys
    child = h3.cell_to_center_child(cell, 11)  # a finer cell: its stored ancestor is the query
    assert search(store, TABLE, SearchRequest(h3=child, k=3, filters=SearchFilters(year=2020))).query_keys \
        == (rows["key"][i],)
    latest = search(store, TABLE, SearchRequest(near=(lon, lat), k=3))  # no window: the most recent
    assert rows["year"][list(rows["key"]).index(latest.query_keys[0])] == 2021
    with pytest.raises(SpecError, match="near: no stored embedding covers"):
        search(store, TABLE, SearchRequest(near=(0.0, 0.0), k=3))


def test_filters_combine_time_bbox_and_h3_parent(small):
    store, rows = small
    parent = h3.cell_to_parent(h3.int_to_str(int(rows["h3"][0])), 6)
    box = BBox(12.6, 52.3, 13.0, 52.6)
    query = rows["vector"][5000]
    in_parent = np.array([h3.cell_to_parent(h3.int_to_str(int(c)), 6) == parent for c in rows["h3"]])
    in_box = (rows["lon"] >= box.minlon) & (rows["lon"] <= box.maxlon) & (rows["lat"] >= box.minlat) \
        & (rows["lat"] <= box.maxlat)
    cases = [
        (SearchFilters(year=2020), rows["year"] == 2020),
        (SearchFilters(start="2020-06-01", end="2021-02-01"), np.isin(rows["year"], [2020, 2021])),
        (SearchFilters(start="2021-01-01"), rows["year"] == 2021),  # [t_start, t_end) overlap, end open
        (SearchFilters(end="2020-01-01"), rows["year"] == 2019),
        (SearchFilters(bbox=box), in_box),
        (SearchFilters(h3_parent=parent), in_parent),
        (SearchFilters(year=2019, bbox=box, h3_parent=parent), (rows["year"] == 2019) & in_box & in_parent),
        (SearchFilters(bbox=box, where="year != 2020 AND lat > 52.45"),
         in_box & (rows["year"] != 2020) & (rows["lat"] > 52.45)),
    ]
    for filters, mask in cases:
        assert mask.any()
        result = search(store, TABLE, SearchRequest(vector=query, k=10, filters=filters))
        assert_exact(result, rows, query, "cosine", 10, mask)


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """4802 rows with 3-day windows at pseudo-random days of 2020 and 2021."""
    store = EmbeddingStore(tmp_path_factory.mktemp("windows") / "db")
    write_synthetic(store, TABLE, PARENT, 9, [2020, 2021], 16, seed=5, window_days=3)
    data = store.table(TABLE).to_lance().to_table(columns=["key", "t_start", "t_end", "vector"])
    rows = {"key": data["key"].to_numpy(zero_copy_only=False),
            "t_start": data["t_start"].to_numpy().astype("datetime64[D]"),
            "t_end": data["t_end"].to_numpy().astype("datetime64[D]"),
            "vector": np.stack(data["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)}
    return store, rows


@pytest.fixture(params=["lance", "in-memory"])
def memory(request):
    """Run a test on Lance and over in-memory vectors (the window then tested in numpy)."""
    hot.configure(64 if request.param == "in-memory" else 0)
    yield request.param
    hot.configure(0)


def test_time_window_filters_are_exact_with_the_t_start_bound(windows, memory):
    """[start, end) overlaps [t_start, t_end): exact top-k at every window length, with the
    implied lower bound on t_start (the table's longest window is 3 days) in the SQL."""
    from rsembed_db.query.filters import compile_filters
    from rsembed_db.query.profile import table_profile

    store, rows = windows
    if memory == "in-memory":
        hot.warm(store, TABLE)
    assert table_profile(store, TABLE).max_window_days() == 3
    sql = compile_filters(SearchFilters(start="2020-06-10", end="2020-06-11"), max_window_days=3).sql
    assert "t_start > date '2020-06-07'" in sql and "t_end" in sql
    query = rows["vector"][7]
    for start, end in [("2020-06-10", "2020-06-11"), ("2020-06-10", "2020-06-13"), ("2020-02-01", "2020-03-01"),
                       ("2020-12-30", "2021-01-02"), ("2021-11-01", None), (None, "2020-01-05")]:
        mask = np.ones(len(rows["key"]), bool)
        if start:
            mask &= rows["t_end"] > np.datetime64(start)
        if end:
            mask &= rows["t_start"] < np.datetime64(end)
        assert mask.any(), (start, end)
        result = search(store, TABLE, SearchRequest(vector=query, k=10, filters=SearchFilters(start=start, end=end)))
        assert_exact(result, rows, query, "cosine", 10, mask)
        assert ("in-memory" in result.notes[-1]) == (memory == "in-memory")


def test_rows_without_a_start_keep_the_plain_overlap_test(tmp_path, memory):
    """A row with an end but no start: no t_start bound is implied, so it still matches an
    open-ended ``start`` filter exactly as before."""
    from rsembed_db.query.profile import table_profile
    from rsembed_db.store.synthetic import synthetic_cells, synthetic_table

    store = EmbeddingStore(tmp_path / "db")
    cells = synthetic_cells(h3.latlng_to_cell(52.5, 12.8, 7), 9)
    vectors = np.random.default_rng(0).normal(size=(len(cells), 8)).astype(np.float32)
    rows = synthetic_table(cells, 2020, vectors, window_days=2)
    starts = rows["t_start"].to_pylist()
    starts[0] = None
    rows = rows.set_column(rows.schema.get_field_index("t_start"), "t_start", pa.array(starts, pa.date32()))
    store.ensure_table("t", 8).add(rows)
    assert table_profile(store, "t").max_window_days() is None
    if memory == "in-memory":
        assert np.isnan(hot.warm(store, "t").t_start).sum() == 1
    end = rows["t_end"][0].as_py()
    result = search(store, "t", SearchRequest(vector=vectors[0], k=3, filters=SearchFilters(
        start=end - dt.timedelta(days=1))))
    assert result.keys[0] == rows["key"][0].as_py()
    bounded = search(store, "t", SearchRequest(vector=vectors[0], k=3, filters=SearchFilters(
        start=end - dt.timedelta(days=1), end=end + dt.timedelta(days=30))))
    assert rows["key"][0].as_py() not in bounded.keys  # t_start < end is null: not a match


def test_h3_parent_ranges_are_exactly_the_descendants():
    parent = h3.str_to_int(PARENT)
    for res in (5, 7, 9, 12):
        children = [h3.str_to_int(c) for c in h3.cell_to_children(PARENT, res)]
        assert descendant_range(parent, res) == (min(children), max(children))
        low, high = descendant_range(parent, res)
        for neighbour in h3.grid_ring(PARENT, 1):  # no other cell of that resolution falls inside
            assert not any(low <= h3.str_to_int(c) <= high for c in h3.cell_to_children(neighbour, min(res, 8)))


def test_h3_parent_coarser_than_every_row_and_finer_rows(small):
    store, rows = small
    result = search(store, TABLE, SearchRequest(vector=rows["vector"][0], k=5,
                                                filters=SearchFilters(h3_parent=h3.cell_to_parent(PARENT, 2))))
    assert len(result) == 5  # every row descends from the res-2 ancestor
    finer = h3.cell_to_center_child(h3.int_to_str(int(rows["h3"][0])), 10)  # rows are res 9: none inside
    assert len(search(store, TABLE, SearchRequest(vector=rows["vector"][0], k=5,
                                                  filters=SearchFilters(h3_parent=finer)))) == 0


@pytest.mark.parametrize("match", ["centre", "intersects"])
def test_polygon_filter(small, match):
    store, rows = small
    triangle = shapely.Polygon([(12.55, 52.30), (12.95, 52.35), (12.70, 52.62)])
    geojson = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(triangle)}
    if match == "centre":
        mask = shapely.intersects_xy(triangle, rows["lon"], rows["lat"])
    else:
        geoms = store.table(TABLE).to_lance().to_table(columns=["geometry"])["geometry"].to_numpy(zero_copy_only=False)
        mask = shapely.intersects(triangle, shapely.from_wkb(geoms))
        assert mask.sum() > shapely.intersects_xy(triangle, rows["lon"], rows["lat"]).sum()
    query = rows["vector"][10]
    result = search(store, TABLE, SearchRequest(vector=query, k=12, filters={"polygon": geojson,
                                                                             "spatial_match": match}))
    assert result.matched == int(mask.sum())
    assert_exact(result, rows, query, "cosine", 12, mask)
    outside = shapely.Polygon([(0, 0), (1, 0), (1, 1)])
    empty = search(store, TABLE, SearchRequest(vector=query, k=12, filters=SearchFilters(polygon=outside)))
    assert len(empty) == 0 and "distance" in empty.rows.column_names


def test_polygon_estimate_reads_centres_or_footprint_boxes(small):
    """The router's estimate of a polygon's rows: its test on the centres (exact), or on
    the footprints' bboxes (a superset of the footprints meeting it)."""
    store, _ = small
    triangle = shapely.Polygon([(12.55, 52.30), (12.95, 52.35), (12.70, 52.62)])
    data = store.dataset(TABLE).to_table(columns=["lon", "lat", "minlon", "minlat", "maxlon", "maxlat", "geometry"])
    for match in ("centre", "intersects"):
        test = PolygonTest(triangle, match)
        exact, bounds = test.mask(data), test.bounds_mask(data.select(list(test.bounds_columns)))
        assert (bounds == exact).all() if match == "centre" else (bounds >= exact).all() and bounds.sum() > exact.sum()
        sql = compile_filters(SearchFilters(polygon=triangle, spatial_match=match)).sql
        assert table_profile(store, TABLE).estimate(sql, test) == int(bounds.sum())  # 7203 rows: sampled whole


def test_fewer_matching_rows_than_k(small):
    store, rows = small
    cell = h3.int_to_str(int(rows["h3"][3]))
    result = search(store, TABLE, SearchRequest(vector=rows["vector"][3], k=10, filters=SearchFilters(h3_parent=cell)))
    assert len(result) == 3  # the cell in each of the 3 years
    assert set(result.keys) == set(rows["key"][rows["h3"] == rows["h3"][3]])


def test_positives_and_negatives(small):
    store, rows = small
    pos, neg = [rows["key"][i] for i in (10, 20, 30)], [rows["key"][40]]
    unit = rows["vector"] / np.linalg.norm(rows["vector"], axis=1, keepdims=True)
    expected_query = 2 * unit[[10, 20, 30]].mean(axis=0) - unit[[40]].mean(axis=0)
    result = search(store, TABLE, SearchRequest(positives=pos, negatives=neg, k=10))
    assert set(result.query_keys) == {*pos, *neg} and not set(result.keys) & {*pos, *neg}
    assert_exact(result, rows, expected_query, "cosine", 10, exclude=[*pos, *neg])
    mixed = search(store, TABLE, SearchRequest(positives=[pos[0], rows["vector"][20].tolist()], k=10, metric="l2"))
    assert_exact(mixed, rows, (rows["vector"][10] + rows["vector"][20]) / 2, "l2", 10, exclude=[pos[0]])
    with pytest.raises(SpecError, match="positives: no stored row"):
        search(store, TABLE, SearchRequest(positives=["nope"]))


def test_renderings(small):
    store, rows = small
    result = search(store, TABLE, SearchRequest(key=rows["key"][0], k=4, include_vector=True))
    table = result.to_arrow()
    assert table.column_names[:2] == ["key", "distance"] and "vector" in table.column_names
    first = result.to_dicts()[0]
    assert first["rank"] == 1 and h3.is_valid_cell(first["h3"]) and first["h3_res"] == 9
    assert dt.date.fromisoformat(first["t_start"]).year in YEARS and first["year"] in YEARS
    hexagon = shapely.geometry.shape(first["geometry"])
    assert hexagon.bounds == pytest.approx((first["minlon"], first["minlat"], first["maxlon"], first["maxlat"]))
    stored = store.get(TABLE, first["key"], columns=["minlon", "maxlat", "year", "h3_res", "lon"])
    assert (stored["minlon"], stored["maxlat"], stored["year"], stored["h3_res"], stored["lon"]) == \
        (first["minlon"], first["maxlat"], first["year"], first["h3_res"], first["lon"])
    collection = result.to_geojson()
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 4
    assert collection["features"][0]["geometry"]["type"] == "Polygon"
    assert collection["properties"]["query_keys"] == [rows["key"][0]]


def test_result_columns_can_be_narrowed(small):
    store, rows = small
    full = search(store, TABLE, SearchRequest(key=rows["key"][0], k=4))
    light = search(store, TABLE, SearchRequest(key=rows["key"][0], k=4, columns=("lat", "lon")))
    assert light.rows.column_names == ["key", "distance", "lon", "lat"]
    assert light.keys == full.keys and light.rows["lon"].equals(full.rows["lon"])
    derived = search(store, TABLE, SearchRequest(key=rows["key"][0], k=4, columns=("year", "maxlat", "h3_res")))
    assert derived.rows.column_names == ["key", "distance", "h3_res", "maxlat", "year"]
    for name in ("year", "maxlat", "h3_res"):
        assert derived.rows[name].equals(full.rows[name])


def test_query_errors_name_the_field(small):
    store, _ = small
    with pytest.raises(SpecError, match="vector: the table holds 16-d"):
        search(store, TABLE, SearchRequest(vector=[1.0, 2.0]))
    with pytest.raises(SpecError, match="key: no stored row"):
        search(store, TABLE, SearchRequest(key="missing"))
    with pytest.raises(NotFound, match="table: no table"):
        search(store, "absent", SearchRequest(vector=[1.0]))
    with pytest.raises(SpecError, match="filters.where"):
        search(store, TABLE, SearchRequest(vector=np.ones(16), filters=SearchFilters(where="lon = 'abc'")))


@pytest.mark.parametrize("data, field", [
    ({"k": 10}, "query"),
    ({"key": "a", "vector": [1.0]}, "query"),
    ({"key": "a", "k": 0}, "k"),
    ({"key": "a", "k": True}, "k"),
    ({"key": "a", "metric": "hamming"}, "metric"),
    ({"negatives": ["a"], "key": "b"}, "negatives"),
    ({"vector": [1.0, float("nan")]}, "vector"),
    ({"near": [200, 10]}, "near"),
    ({"h3": "not-a-cell"}, "h3"),
    ({"key": "a", "colour": 1}, "colour"),
    ({"key": "a", "filters": {"bbox": [3, 1, 2, 4]}}, "filters.bbox"),
    ({"key": "a", "filters": {"bbox": "1,2"}}, "filters.bbox"),
    ({"key": "a", "filters": {"h3_parent": 12}}, "filters.h3_parent"),
    ({"key": "a", "filters": {"start": "2020-02-30"}}, "filters.start"),
    ({"key": "a", "filters": {"start": "2021-01-01", "end": "2020-01-01"}}, "filters.end"),
    ({"key": "a", "filters": {"year": "2020"}}, "filters.year"),
    ({"key": "a", "filters": {"polygon": {"type": "Point", "coordinates": [1, 2]}}}, "filters.polygon"),
    ({"key": "a", "filters": {"spatial_match": "near"}}, "filters.spatial_match"),
    ({"key": "a", "filters": {"cloud": 3}}, "filters.cloud"),
    ({"positives": "abc"}, "positives"),
    ({"key": "a", "columns": ["vector"]}, "columns"),
    ({"key": "a", "columns": "lon"}, "columns"),
])
def test_request_validation_names_the_field(data, field):
    with pytest.raises(SpecError) as info:
        SearchRequest.from_dict(data)
    assert info.value.field == field


def test_request_from_dict_round_trip():
    request = SearchRequest.from_dict({"near": {"lon": 12.5, "lat": 52.4}, "k": 3, "metric": "l2",
                                       "filters": {"bbox": [12, 52, 13, 53], "year": 2020,
                                                   "h3_parent": PARENT, "where": "h3_res = 9"}})
    assert request.near == (12.5, 52.4) and request.query_kind == "near"
    assert request.filters.bbox == BBox(12, 52, 13, 53) and request.filters.h3_parent.hex == PARENT


def test_in_memory_vectors_follow_the_table(tmp_path):
    """The in-memory copy is used only while it holds exactly the table's rows: after an
    append the search runs on Lance (and still finds the new rows) until the copy is
    refreshed with the added fragment; after a delete the copy is read again."""
    store = EmbeddingStore(tmp_path / "db")
    parent = h3.latlng_to_cell(52.5, 12.8, 6)
    write_synthetic(store, "t", parent, 9, [2020], 8, seed=1)  # 343 rows
    hot.configure(16)
    try:
        first = hot.warm(store, "t")
        assert first.vectors.shape == (343, 8)
        query = write_synthetic(store, "t", parent, 9, [2021], 8, seed=2)[0]  # a second fragment
        stale = search(store, "t", SearchRequest(vector=query, k=3))
        assert "in-memory" not in stale.notes[-1] and stale.rows["distance"][0].as_py() == pytest.approx(0, abs=1e-6)
        assert stale.rows["t_start"][0].as_py().year == 2021
        refreshed = hot.warm(store, "t")
        assert refreshed.vectors.shape == (686, 8) and refreshed.fragments[:1] == first.fragments  # appended
        fresh = search(store, "t", SearchRequest(vector=query, k=3))
        assert "in-memory" in fresh.notes[-1] and fresh.keys == stale.keys
        store.ensure_table("t", 8).delete(f"key = '{fresh.keys[0]}'")
        assert "in-memory" not in search(store, "t", SearchRequest(vector=query, k=3)).notes[-1]
        again = hot.warm(store, "t")
        assert again.vectors.shape == (685, 8)
        after = search(store, "t", SearchRequest(vector=query, k=3))
        assert "in-memory" in after.notes[-1] and after.keys[:2] == fresh.keys[1:]
    finally:
        hot.configure(0)


def test_service_searches_over_in_memory_vectors(tmp_path, monkeypatch):
    """The service keeps tables' vectors in memory (``search_cache_mb``, default 1024 MB,
    ``$RSEMBED_SEARCH_CACHE_MB``): loaded in the background on the first search, which is
    answered by Lance meanwhile; the same rows either way."""
    from fastapi.testclient import TestClient

    from rsembed_db.service import ServiceSettings, create_app

    store = EmbeddingStore(tmp_path / "db")
    write_synthetic(store, TABLE, PARENT, 9, [2020], 16, seed=2)
    monkeypatch.delenv(hot.ENV_BUDGET, raising=False)
    assert ServiceSettings.from_env().search_cache_mb == 1024  # unset: the default budget
    monkeypatch.setenv(hot.ENV_BUDGET, "lots")
    with pytest.raises(SpecError, match=hot.ENV_BUDGET):
        ServiceSettings.from_env()
    monkeypatch.setenv(hot.ENV_BUDGET, "32")
    settings = ServiceSettings.from_env(db=str(tmp_path / "db"))
    assert settings.search_cache_mb == 32 and ServiceSettings().search_cache_mb == 1024
    try:
        with TestClient(create_app(settings)) as client:
            body = {"table": TABLE, "vector": [1.0] * 16, "k": 5, "filters": {"start": "2020-01-01"}}
            first = client.post("/v1/search", json=body).json()
            for _ in range(200):  # the copy loads in the background
                answer = client.post("/v1/search", json=body).json()
                if "in-memory" in answer["notes"][-1]:
                    break
                time.sleep(0.05)
            assert "in-memory" in answer["notes"][-1], answer["notes"]
            assert [r["key"] for r in answer["results"]] == [r["key"] for r in first["results"]]
    finally:
        hot.configure(0)
