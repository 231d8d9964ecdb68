"""Index management and search at scale: the selectivity sweep (recall and fill vs exact),
new rows searchable before re-indexing, auto-index after ingest, optimize."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import h3
import numpy as np
import pytest
import shapely

from rsembed_db.ingest.engine import run_ingest
from rsembed_db.producers.base import Prepared, Producer
from rsembed_db.producers.records import EmbeddingRecord
from rsembed_db.query import hot, router
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.router import choose_route, exact_max_rows
from rsembed_db.query.search import search
from rsembed_db.specs import EmbeddingRequest, H3Cell, OutputSpec, SpecError, TemporalSpec
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.indexes import (
    BITMAP_COLUMNS,
    BTREE_COLUMNS,
    ENV_MIN_ROWS,
    IndexPolicy,
    ensure_indexes,
    optimize_table,
    vector_index_info,
)
from rsembed_db.store.synthetic import write_synthetic
from tests.test_search import assert_exact

HAVELLAND = (52.5, 12.8)


def _rows(store: EmbeddingStore, table: str) -> dict[str, np.ndarray]:
    data = store.table(table).to_lance().to_table(columns=["key", "lat", "year", "t_start", "t_end", "vector"])
    return {"key": data["key"].to_numpy(zero_copy_only=False), "lat": data["lat"].to_numpy(),
            "year": data["year"].to_numpy(), "t_start": data["t_start"].to_numpy().astype("datetime64[D]"),
            "t_end": data["t_end"].to_numpy().astype("datetime64[D]"),
            "vector": np.stack(data["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)}


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """100 842 rows (16 807 res-9 cells x 6 years, 2-day windows, 32-d), every index built."""
    store = EmbeddingStore(tmp_path_factory.mktemp("sweep") / "db")
    write_synthetic(store, "big", h3.latlng_to_cell(*HAVELLAND, 4), 9, list(range(2018, 2024)), 32, seed=7,
                    window_days=2)
    report = ensure_indexes(store.table("big"), IndexPolicy())
    assert set(report.created) == {*BTREE_COLUMNS, *BITMAP_COLUMNS, "geometry", "vector"}  # geometry: R-tree
    return store, _rows(store, "big")


def _band(rows: dict[str, np.ndarray], fraction: float, year: int) -> tuple[str, np.ndarray]:
    """A where-clause keeping about ``fraction`` of all rows: a latitude band within one year."""
    lats = np.sort(rows["lat"][rows["year"] == year])
    count = max(int(round(fraction * len(rows["lat"]))), 1)
    low, high = float(lats[len(lats) // 3]), float(lats[len(lats) // 3 + count])
    mask = (rows["year"] == year) & (rows["lat"] >= low) & (rows["lat"] < high)
    return f"year = {year} AND lat >= {low!r} AND lat < {high!r}", mask


def _window(rows: dict[str, np.ndarray], start: str, end: str) -> tuple[SearchFilters, np.ndarray]:
    """A time-window filter and its mask: [start, end) overlaps [t_start, t_end)."""
    mask = (rows["t_end"] > np.datetime64(start)) & (rows["t_start"] < np.datetime64(end))
    return SearchFilters(start=start, end=end), mask


@pytest.fixture(params=["lance", "in-memory"])
def memory(request):
    """Exact searches read Lance, or run over in-memory vectors (``query.hot``)."""
    hot.configure(256 if request.param == "in-memory" else 0)
    yield request.param
    hot.configure(0)


def test_selectivity_sweep_recall_and_fill(large, memory):
    store, rows = large
    if memory == "in-memory":
        assert hot.warm(store, "big") is not None
    years = rows["year"]
    cases = [(fraction, SearchFilters(where=where), mask)
             for fraction in (1e-4, 1e-3, 1e-2, 0.1) for where, mask in [_band(rows, fraction, 2020)]]
    cases += [(0.33, SearchFilters(where="year IN (2019, 2022)"), np.isin(years, [2019, 2022])),
              (0.67, SearchFilters(where="year >= 2020"), years >= 2020),
              (1.0, SearchFilters(), np.ones(len(years), bool))]
    # time windows: 1 day (~0.1 %), a month (~1.5 %), a quarter (~4 %), two years (33 %)
    cases += [(share, *_window(rows, start, end)) for share, start, end in [
        (1e-3, "2021-05-10", "2021-05-11"), (0.015, "2019-03-01", "2019-04-01"),
        (0.04, "2022-01-01", "2022-04-01"), (0.33, "2020-01-01", "2022-01-01")]]
    rng = np.random.default_rng(11)
    unit = rows["vector"] / np.linalg.norm(rows["vector"], axis=1, keepdims=True)
    routes = set()
    for fraction, filters, mask in cases:
        recalls = []
        for i in rng.choice(len(years), 20, replace=False):
            result = search(store, "big", SearchRequest(vector=rows["vector"][i], k=10, filters=filters))
            scores = unit[mask] @ unit[i]
            truth = set(rows["key"][mask][np.argsort(-scores)[:10]])
            assert len(result) == min(10, int(mask.sum())), (fraction, result.notes)  # fill
            recalls.append(len(truth & set(result.keys)) / len(truth))
            routes.add(result.route)
            filtered = mask.sum() < len(years)
            assert result.route == ("exact" if filtered and mask.sum() <= exact_max_rows(len(years)) else "ann"), \
                result.notes
            in_memory = memory == "in-memory" and (result.route == "exact" or filters == SearchFilters())  # HNSW
            assert ("in-memory" in result.notes[-1]) == in_memory, result.notes
        assert np.mean(recalls) >= 0.95, (fraction, recalls)
    assert routes == {"exact", "ann"}


def test_filtered_ann_keeps_recall_and_fill(large, monkeypatch):
    """Filtered searches on the ANN route (the budget cut so 10-67 % of these rows go there)."""
    store, rows = large
    monkeypatch.setattr(router, "ANN_MIN_CANDIDATES", 2_000)  # exact up to 4 000 matching rows
    unit = rows["vector"] / np.linalg.norm(rows["vector"], axis=1, keepdims=True)
    rng = np.random.default_rng(12)
    cases = [_band(rows, 0.1, 2021), ("year IN (2019, 2022)", np.isin(rows["year"], [2019, 2022])),
             ("year >= 2020", rows["year"] >= 2020)]
    for where, mask in cases:
        recalls = []
        for i in rng.choice(len(mask), 10, replace=False):
            result = search(store, "big", SearchRequest(vector=rows["vector"][i], k=10,
                                                        filters=SearchFilters(where=where)))
            assert result.route == "ann" and len(result) == 10, result.notes
            truth = set(rows["key"][mask][np.argsort(-(unit[mask] @ unit[i]))[:10]])
            recalls.append(len(truth & set(result.keys)) / 10)
        assert np.mean(recalls) >= 0.95, (where, recalls)


def test_route_at_ten_million_rows():
    """The 10M-row table of bench/scale_10m.py: 2 424 IVF_RQ partitions, 128-d."""
    index = SimpleNamespace(metric="cosine", indexed_rows=10_000_000, num_partitions=2_424, index_type="IVF_RQ")
    profile = SimpleNamespace(index=index, rows=10_000_000, dim=128)
    assert exact_max_rows(100_000) == 80_000 and exact_max_rows(10_000_000) == 300_000
    assert choose_route(profile, "cosine", lambda: 300_000).kind == "exact"  # 3 %: a flat scan of the subset
    route = choose_route(profile, "cosine", lambda: 1_000_000)  # 10 %: 412.5 matching rows per partition
    assert (route.kind, route.nprobes, route.refine_factor) == ("ann", 97, 2)  # ceil(40 000 / 412.5)
    assert route.scan_filter  # 10 % > SCAN_FILTER_SHARE: the prefilter is evaluated by a scan
    assert not choose_route(profile, "cosine", lambda: 500_000).scan_filter  # 5 %: from the scalar indexes
    unfiltered = choose_route(profile, "cosine", lambda: 10_000_000)
    assert (unfiltered.kind, unfiltered.nprobes, unfiltered.scan_filter) == ("ann", 20, False)
    assert choose_route(profile, "l2", lambda: 1_000_000).kind == "exact"  # the index serves cosine


def test_new_rows_are_searchable_before_reindexing(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    parent = h3.latlng_to_cell(*HAVELLAND, 5)
    write_synthetic(store, "t", parent, 9, list(range(2010, 2022)), 16)  # 28 812 rows: the ANN route
    table = store.table("t")
    ensure_indexes(table, IndexPolicy(vector_min_rows=1000))
    cell = h3.cell_to_center_child(parent, 10)  # not in the table yet
    request = EmbeddingRequest("synthetic", H3Cell(cell), TemporalSpec.year(2030))
    vector = np.full(16, 3.0, np.float32)
    vector[0] = -40.0  # far from everything indexed
    store.write("t", [EmbeddingRecord(request, cell, vector)], 16)
    info = vector_index_info(store.table("t"))
    assert info.unindexed_rows == 1
    result = search(store, "t", SearchRequest(vector=vector, k=3))
    assert result.route == "ann" and result.keys[0] == request.key
    dataset = store.table("t").to_lance()
    fast = dataset.to_table(columns=["key"], nearest={"column": "vector", "q": vector, "k": 3, "metric": "cosine"},
                            fast_search=True)
    assert request.key not in fast["key"].to_pylist()  # only the index: what we never use
    report = ensure_indexes(store.table("t"), IndexPolicy(vector_min_rows=1000))
    assert report.folded_rows == 1 and vector_index_info(store.table("t")).unindexed_rows == 0
    assert search(store, "t", SearchRequest(vector=vector, k=3)).keys[0] == request.key


def test_index_policy_threshold_and_validation(tmp_path, monkeypatch):
    store = EmbeddingStore(tmp_path / "db")
    write_synthetic(store, "t", h3.latlng_to_cell(*HAVELLAND, 6), 9, [2020], 8)  # 343 rows
    table = store.table("t")
    assert "vector" not in ensure_indexes(table, IndexPolicy()).created  # below the default threshold
    assert vector_index_info(table) is None
    monkeypatch.setenv(ENV_MIN_ROWS, "300")
    assert ensure_indexes(table).created == ["vector"]
    assert vector_index_info(table).metric == "cosine"
    with pytest.raises(SpecError, match="vector_min_rows"):
        IndexPolicy(vector_min_rows=100)
    with pytest.raises(SpecError, match="index_type"):
        IndexPolicy(index_type="FLAT")
    monkeypatch.setenv(ENV_MIN_ROWS, "many")
    with pytest.raises(SpecError, match=ENV_MIN_ROWS):
        IndexPolicy.from_env()


def test_other_metric_than_the_index_is_exact(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    write_synthetic(store, "t", h3.latlng_to_cell(*HAVELLAND, 5), 9, list(range(2010, 2022)), 8)
    ensure_indexes(store.table("t"), IndexPolicy(vector_min_rows=1000))
    vector = np.ones(8, np.float32)
    assert search(store, "t", SearchRequest(vector=vector, k=5)).route == "ann"
    l2 = search(store, "t", SearchRequest(vector=vector, k=5, metric="l2"))
    assert l2.route == "exact" and "for cosine, not l2" in l2.notes[0]


class _ToyProducer(Producer):
    """Computes nothing: a fixed vector per cell, to drive run_ingest."""

    description = SimpleNamespace(name="toy", dim=4)
    default_dim = 4

    def request(self, spatial, temporal, output=OutputSpec(), sensor=None, fetch=None, input_prep=None,
                modality=None):
        return EmbeddingRequest("toy", spatial, temporal, output)

    def prepare(self, request):
        return Prepared(request, None)

    def finish(self, batch):
        return [EmbeddingRecord(p.request, p.request.spatial.hex, np.arange(4, dtype=np.float32) + i)
                for i, p in enumerate(batch)]


def test_ingest_builds_indexes_once_the_table_is_large_enough(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_MIN_ROWS, "300")
    store = EmbeddingStore(tmp_path / "db")
    producer = _ToyProducer()
    cells = sorted(h3.cell_to_children(h3.latlng_to_cell(*HAVELLAND, 6), 9))
    first = [producer.request(H3Cell(c), TemporalSpec.year(2020)) for c in cells[:200]]
    run_ingest(store, producer, first)
    table = store.table(producer.table_name)
    assert {idx.columns[0] for idx in table.list_indices()} == {*BTREE_COLUMNS, *BITMAP_COLUMNS}
    rest = [producer.request(H3Cell(c), TemporalSpec.year(2020)) for c in cells[200:]]
    summary = run_ingest(store, producer, first + rest)
    assert summary.computed == len(cells) - 200
    info = vector_index_info(store.table(producer.table_name))
    assert info.indexed_rows == len(cells) and info.index_type == "IVF_PQ"  # 4-d: no IVF_RQ
    assert run_ingest(store, producer, first, dry_run=True).computed == 0


def test_optimize_keeps_rows_and_cleans_versions(tmp_path):
    store = EmbeddingStore(tmp_path / "db")
    write_synthetic(store, "t", h3.latlng_to_cell(*HAVELLAND, 6), 9, [2019, 2020, 2021, 2022], 8)
    table = store.table("t")
    ensure_indexes(table, IndexPolicy(vector_min_rows=256))
    write_synthetic(store, "t", h3.latlng_to_cell(*HAVELLAND, 6), 9, [2023], 8)
    keep = optimize_table(store.table("t"), dt.timedelta(days=7))  # nothing is 7 days old yet
    assert keep.rows_before == keep.rows_after == 343 * 5 and keep.versions_after >= keep.versions_before
    with pytest.warns(UserWarning, match="removes every version"):
        report = optimize_table(store.table("t"), dt.timedelta(0))
    assert report.rows_after == 343 * 5 and report.versions_after == 1 < report.versions_before
    table = store.table("t")
    assert len(table.to_lance().get_fragments()) < 5  # compacted
    assert vector_index_info(table).unindexed_rows == 0
    key = _rows(store, "t")["key"][5]
    assert search(store, "t", SearchRequest(key=key, k=3, exclude_query=False)).keys[0] == key
    with pytest.raises(SpecError, match="retention_days"):
        optimize_table(table, dt.timedelta(days=-1))


def test_ensure_indexes_merges_many_small_fragments(tmp_path):
    """An ingest commits a fragment every few hundred rows; past COMPACT_ABOVE_FRAGMENTS
    ``ensure_indexes`` merges them (per-hit column reads grow with the fragment count),
    keeping every row and the indexes."""
    from rsembed_db.store.indexes import COMPACT_ABOVE_FRAGMENTS

    store = EmbeddingStore(tmp_path / "db")
    parent = h3.latlng_to_cell(*HAVELLAND, 6)
    years = list(range(2000, 2000 + COMPACT_ABOVE_FRAGMENTS + 4))
    write_synthetic(store, "t", parent, 9, years[:4], 8)
    ensure_indexes(store.table("t"), IndexPolicy(vector_min_rows=256))
    write_synthetic(store, "t", parent, 9, years[4:], 8)  # a fragment per year
    table = store.table("t")
    assert len(table.to_lance().get_fragments()) > COMPACT_ABOVE_FRAGMENTS
    report = ensure_indexes(table, IndexPolicy(vector_min_rows=256))
    assert report.fragments_before > COMPACT_ABOVE_FRAGMENTS >= report.fragments_after
    assert report.rows_after == report.rows_before == 343 * len(years)
    table = store.table("t")
    assert vector_index_info(table).unindexed_rows == 0
    key = _rows(store, "t")["key"][400]
    assert search(store, "t", SearchRequest(key=key, k=3, exclude_query=False)).keys[0] == key
    assert search(store, "t", SearchRequest(key=key, k=3, filters=SearchFilters(year=2001))).route == "exact"


def test_in_memory_hnsw_for_unfiltered_searches(tmp_path):
    """With the table's vectors in memory, unfiltered cosine searches take candidates from
    an HNSW graph (faiss) and re-rank them exactly: recall >= 0.95 and k rows against
    numpy. The graph is kept beside the table and read back by the next process, not used
    while stale (LanceDB's index answers, new rows included), and extended after an append."""
    from rsembed_db.query import hot_ann

    store = EmbeddingStore(tmp_path / "db")
    parent = h3.latlng_to_cell(*HAVELLAND, 5)
    write_synthetic(store, "t", parent, 9, list(range(2010, 2022)), 16, seed=4)  # 28 812 rows
    ensure_indexes(store.table("t"), IndexPolicy(vector_min_rows=1000))
    rows = _rows(store, "t")
    unit = rows["vector"] / np.linalg.norm(rows["vector"], axis=1, keepdims=True)
    hot.configure(64)
    try:
        copy = hot.warm(store, "t")
        assert copy.ann is not None and copy.ann.ntotal == len(rows["key"])
        graphs = list((tmp_path / "db" / hot_ann.DIRECTORY / "t").glob("*.hnsw"))
        assert len(graphs) == 1
        recalls = []
        for i in np.random.default_rng(5).choice(len(unit), 20, replace=False):
            result = search(store, "t", SearchRequest(vector=rows["vector"][i], k=10))
            assert result.route == "ann" and "in-memory HNSW" in result.notes[-1] and len(result) == 10
            truth = set(rows["key"][np.argsort(-(unit @ unit[i]))[:10]])
            recalls.append(len(truth & set(result.keys)) / 10)
            expected = 1 - unit[np.isin(rows["key"], result.keys)] @ unit[i]
            np.testing.assert_allclose(sorted(result.rows["distance"].to_pylist()), np.sort(expected), atol=1e-5)
        assert np.mean(recalls) >= 0.95, recalls
        hot.configure(0)  # a new process: the copy is gone, the graph is read back
        hot.configure(64)
        modified = graphs[0].stat().st_mtime_ns
        assert hot.warm(store, "t").ann.ntotal == len(rows["key"]) and graphs[0].stat().st_mtime_ns == modified
        query = write_synthetic(store, "t", parent, 9, [2030], 16, seed=9)[0]  # an appended fragment
        stale = search(store, "t", SearchRequest(vector=query, k=3))
        assert "in-memory" not in stale.notes[-1] and stale.rows["t_start"][0].as_py().year == 2030
        extended = hot.warm(store, "t")
        assert extended.ann.ntotal == len(rows["key"]) + 2401
        assert [p.name for p in graphs[0].parent.glob("*.hnsw")] != [graphs[0].name]  # replaced
        fresh = search(store, "t", SearchRequest(vector=query, k=3))
        assert "in-memory HNSW" in fresh.notes[-1] and fresh.keys == stale.keys
    finally:
        hot.configure(0)


def _diamond(lon: np.ndarray, lat: np.ndarray, share: float) -> tuple[shapely.Polygon, np.ndarray]:
    """A diamond about the rows' median centre holding about ``share`` of the row centres
    (half of its bbox: the SQL prefilter keeps twice the rows the polygon does)."""
    cx, cy = float(np.median(lon)), float(np.median(lat))
    low, high = 1e-4, 4.0
    for _ in range(40):
        size = (low + high) / 2
        shape = shapely.Polygon([(cx - size, cy), (cx, cy - 0.6 * size), (cx + size, cy), (cx, cy + 0.6 * size)])
        mask = shapely.intersects_xy(shape, lon, lat)
        low, high = (size, high) if mask.mean() < share else (low, size)
    return shape, mask


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_polygon_routes_exact_and_ann(large, memory, metric, monkeypatch):
    """Polygon filters on every route: the one-pass scan over the polygon's bbox (Lance,
    several batches), the in-memory copy, and ANN over the exact allow-list (the budget
    cut so a 10 % polygon goes there; l2 has no index: exact)."""
    store, rows = large
    if memory == "in-memory":
        assert hot.warm(store, "big") is not None
    monkeypatch.setattr(router, "ANN_MIN_CANDIDATES", 2_000)  # exact up to 4 000 matching rows
    centres = store.dataset("big").to_table(columns=["lon", "lat"])
    lon, lat = centres["lon"].to_numpy(), centres["lat"].to_numpy()
    rng = np.random.default_rng(13)
    for share in (0.001, 0.01, 0.1):
        polygon, mask = _diamond(lon, lat, share)
        ann = metric == "cosine" and mask.sum() > exact_max_rows(len(mask))
        recalls = []
        for i in rng.choice(len(mask), 8, replace=False):
            result = search(store, "big", SearchRequest(vector=rows["vector"][i], k=10, metric=metric,
                                                        filters=SearchFilters(polygon=polygon)))
            assert result.matched == int(mask.sum()) and len(result) == 10, result.notes
            assert result.route == ("ann" if ann else "exact"), result.notes
            assert set(result.keys) <= set(rows["key"][mask])
            if ann:
                unit = rows["vector"] / np.linalg.norm(rows["vector"], axis=1, keepdims=True)
                truth = set(rows["key"][mask][np.argsort(-(unit[mask] @ unit[i]))[:10]])
                recalls.append(len(truth & set(result.keys)) / 10)
            else:
                assert_exact(result, rows, rows["vector"][i], metric, 10, mask)
                where = "over in-memory vectors" if memory == "in-memory" else "one pass over the polygon's bbox"
                assert where in result.notes[-1], result.notes
        assert not ann or np.mean(recalls) >= 0.95, (share, recalls)
    # with other filters: Lance answers them; the polygon is tested on the centres (in
    # memory: the copy's, among the rows the other filters keep)
    polygon, inside = _diamond(lon, lat, 0.2)
    mask = inside & (rows["year"] == 2020)
    for i in rng.choice(len(mask), 3, replace=False):
        result = search(store, "big", SearchRequest(vector=rows["vector"][i], k=10, metric=metric,
                                                    filters=SearchFilters(polygon=polygon, year=2020)))
        assert result.matched == int(mask.sum()) and result.route == "exact", result.notes
        assert_exact(result, rows, rows["vector"][i], metric, 10, mask)
