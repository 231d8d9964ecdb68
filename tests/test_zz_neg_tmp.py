from tests.test_compute import *
from rsembed_db.query import compute as C
def test_neg(tmp_path, finish_calls, monkeypatch):
    monkeypatch.setattr(C.SingleFlight, "run", lambda self, ids, fn: fn(list(ids)))
    store = EmbeddingStore(tmp_path / "db")
    _together(6, lambda: get_embedding("mosaiks", spatial=POINT, temporal=YEAR, store=store, imagery=SCENE))
    assert finish_calls == [1]
