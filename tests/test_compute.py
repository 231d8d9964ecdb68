"""Single-flight compute-on-miss from Python: one computation per key under concurrency."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rsembed_db.api import get_embedding
from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.onthefly import OnTheFlyProducer
from rsembed_db.query.compute import (
    FLIGHTS,
    MissingEmbeddings,
    SingleFlight,
    read_through,
)
from rsembed_db.specs import PointBuffer, TemporalSpec
from rsembed_db.store import EmbeddingStore
from tests.conftest import SCENE

POINT = PointBuffer(12.6, 52.49, 300)
YEAR = TemporalSpec.year(2017)


@pytest.fixture
def finish_calls(monkeypatch):
    """Count embedder batches (``OnTheFlyProducer.finish``), slowed so callers overlap."""
    calls: list[int] = []
    original = OnTheFlyProducer.finish

    def counted(self, batch):
        calls.append(len(batch))
        time.sleep(0.3)
        return original(self, batch)

    monkeypatch.setattr(OnTheFlyProducer, "finish", counted)
    return calls


def _together(n: int, fn):
    """Run ``fn`` on ``n`` threads released at once; results in thread order."""
    barrier = threading.Barrier(n)

    def go(_):
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_single_flight_runs_one_computation_and_shares_it():
    flights, runs = SingleFlight(), []

    def compute(ids):
        runs.append(list(ids))
        time.sleep(0.2)
        return {i: f"value of {i}" for i in ids}

    results = _together(8, lambda: flights.run(["a", "b"], compute))
    assert runs == [["a", "b"]]
    assert all(r == {"a": "value of a", "b": "value of b"} for r in results)
    assert flights.in_flight() == 0
    flights.run(["a"], compute)  # nothing in flight any more: computed again
    assert len(runs) == 2


def test_single_flight_error_reaches_every_waiter_and_clears():
    flights = SingleFlight()

    def fail(ids):
        time.sleep(0.2)
        raise RuntimeError("boom")

    def call():
        try:
            flights.run(["k"], fail)
        except RuntimeError as exc:
            return str(exc)

    assert _together(5, call) == ["boom"] * 5
    assert flights.in_flight() == 0


def test_concurrent_get_embedding_computes_a_missing_key_once(tmp_path, finish_calls):
    store = EmbeddingStore(tmp_path / "db")
    results = _together(6, lambda: get_embedding("mosaiks", spatial=POINT, temporal=YEAR,
                                                 store=store, imagery=SCENE))
    assert finish_calls == [1]
    assert len({r.meta["key"] for r in results}) == 1
    for r in results[1:]:
        np.testing.assert_array_equal(r.data, results[0].data)
    assert store.table("mosaiks").count_rows() == 1
    again = get_embedding("mosaiks", spatial=POINT, temporal=YEAR, store=store, imagery=SCENE)
    assert again.meta["from_store"] and finish_calls == [1]
    np.testing.assert_array_equal(again.data, results[0].data)


def test_overlapping_batches_compute_each_key_once(tmp_path, finish_calls):
    store = EmbeddingStore(tmp_path / "db")
    producer = make_producer("mosaiks", SCENE)
    points = [PointBuffer(12.58 + 0.01 * i, 52.49, 200) for i in range(3)]
    batches = [[points[0], points[1]], [points[1], points[2]], [points[2], points[0]]]
    requests = [[producer.request(p, YEAR) for p in batch] for batch in batches]
    barrier = threading.Barrier(3)

    def run(reqs):
        barrier.wait()
        return read_through(producer, reqs, store)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, requests))
    assert sum(finish_calls) == 3  # three distinct keys, each embedded once
    assert store.table("mosaiks").count_rows() == 3
    assert results[0][1].meta["key"] == results[1][0].meta["key"]
    np.testing.assert_array_equal(results[0][1].data, results[1][0].data)


def test_compute_never_reports_the_missing_keys(tmp_path):
    producer = make_producer("mosaiks", SCENE)
    request = producer.request(POINT, YEAR)
    with pytest.raises(MissingEmbeddings) as info:
        read_through(producer, [request], EmbeddingStore(tmp_path / "db"), compute=False)
    assert info.value.keys == [request.key]


def test_failing_compute_leaves_the_table_readable_and_unchanged(tmp_path, monkeypatch):
    store = EmbeddingStore(tmp_path / "db")
    stored = get_embedding("mosaiks", spatial=POINT, temporal=YEAR, store=store, imagery=SCENE)
    table = store.table("mosaiks")
    version, rows = table.version, table.to_arrow()

    def broken(self, batch):
        raise RuntimeError("embedder crashed")

    monkeypatch.setattr(OnTheFlyProducer, "finish", broken)
    others = [PointBuffer(12.6, 52.49, 100 + i) for i in range(4)]
    errors = _together(4, lambda: _error_of(lambda: [get_embedding(
        "mosaiks", spatial=p, temporal=YEAR, store=store, imagery=SCENE) for p in others]))
    assert errors == ["embedder crashed"] * 4
    assert FLIGHTS.in_flight() == 0
    table = store.table("mosaiks")
    assert table.version == version and table.to_arrow().equals(rows)
    back = get_embedding("mosaiks", spatial=POINT, temporal=YEAR, store=store, imagery=SCENE)
    assert back.meta["from_store"]
    np.testing.assert_array_equal(back.data, stored.data)


def _error_of(fn) -> str | None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    return None
