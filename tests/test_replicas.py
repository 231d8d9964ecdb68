"""Two ``rsembed-db serve`` processes over one store behave as one service.

Ingest jobs live in the store, so either replica reports and cancels a job the other
runs; reads on one replica see the other's writes; concurrent computes of one missing key
on both replicas end as one row.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rsembed_db.store import EmbeddingStore
from rsembed_db.store.jobs import JobTable
from tests.conftest import REGION, SCENE
from tests.helpers.serve import ServeProcess

QUERY = {"model": "mosaiks", "lon": 12.615, "lat": 52.475, "buffer_m": 350, "year": 2017}


@pytest.fixture
def replicas(tmp_path) -> Iterator[tuple[ServeProcess, ServeProcess, Path]]:
    db = tmp_path / "db"
    servers = [ServeProcess(str(db), "--imagery", str(SCENE), log=tmp_path / f"serve{i}.log") for i in (0, 1)]
    try:
        for server in servers:
            server.wait_healthy()
        yield servers[0], servers[1], db
    finally:
        for server in servers:
            server.stop()


def ingest_body(res: int) -> dict:
    import json

    return {"model": "mosaiks", "region": json.loads(REGION.read_text()), "temporal": {"year": 2017},
            "tiles": f"h3:{res}"}


def wait_for(url: str, job_id: str, done: callable, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/v1/ingest/{job_id}", timeout=30).json()
        if done(state):
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {state}")


def test_a_job_started_on_one_replica_is_seen_and_cancelled_on_the_other(replicas):
    a, b, db = replicas
    started = httpx.post(f"{a.url}/v1/ingest", json=ingest_body(8), timeout=60)
    assert started.status_code == 202
    job = started.json()
    seen = httpx.get(f"{b.url}/v1/ingest/{job['id']}", timeout=30).json()
    assert seen["id"] == job["id"] and seen["replica"] == job["replica"]
    final = wait_for(b.url, job["id"], lambda s: s["state"] in ("succeeded", "failed", "cancelled"))
    assert final["state"] == "succeeded" and final["computed"] == final["planned"] > 0 and final["progress"] == 1.0
    assert job["id"] in [j["id"] for j in httpx.get(f"{b.url}/v1/ingest", timeout=30).json()["jobs"]]
    # B reads what A's job wrote (its caches follow the table's version).
    hits = httpx.post(f"{b.url}/v1/search", json={"model": "mosaiks", "near": [12.58, 52.49], "k": 3}, timeout=60)
    assert len(hits.json()["results"]) == 3

    long = httpx.post(f"{a.url}/v1/ingest", json=ingest_body(10), timeout=60).json()
    wait_for(b.url, long["id"], lambda s: s["state"] == "running" and s["done"] > 0)
    asked = httpx.delete(f"{b.url}/v1/ingest/{long['id']}", timeout=30).json()
    assert asked["cancel_requested"] is True
    cancelled = wait_for(a.url, long["id"], lambda s: s["state"] in ("succeeded", "failed", "cancelled"))
    assert cancelled["state"] == "cancelled" and cancelled["done"] < cancelled["to_compute"]
    assert httpx.get(f"{b.url}/v1/ingest/{long['id']}", timeout=30).json()["state"] == "cancelled"
    assert httpx.get(f"{b.url}/v1/ingest/nope", timeout=30).status_code == 404


def test_concurrent_computes_of_one_key_on_two_replicas_store_one_row(replicas):
    a, b, db = replicas
    barrier = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def ask(url: str) -> None:
        barrier.wait()
        answers.append(httpx.get(f"{url}/v1/embeddings", params=QUERY, timeout=300))

    threads = [threading.Thread(target=ask, args=(url,)) for url in (a.url, b.url) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in answers] == [200] * 6
    bodies = [r.json() for r in answers]
    assert len({body["key"] for body in bodies}) == 1
    assert all(body["vector"] == bodies[0]["vector"] for body in bodies)
    table = EmbeddingStore(db).table("mosaiks")
    assert table.count_rows(f"key = '{bodies[0]['key']}'") == 1
    again = [httpx.get(f"{url}/v1/embeddings", params=QUERY, timeout=60).json() for url in (a.url, b.url)]
    assert [body["from_store"] for body in again] == [True, True]


def test_a_job_whose_replica_went_silent_reads_as_failed(tmp_path):
    from rsembed_db.service.jobs import public

    jobs = JobTable(EmbeddingStore(tmp_path / "db"))
    jobs.put({"id": "j1", "state": "running", "model": "mosaiks", "table_name": "mosaiks", "tiles": "h3:8",
              "created_at": dt.datetime.now(dt.UTC).isoformat(), "owner": "host:1:abc", "planned": 10,
              "already_stored": 0, "to_compute": 10, "computed": 4, "failed": 0})
    row = jobs.get("j1")
    assert public(row, lost_after_s=600)["state"] == "running"
    lost = public(row, lost_after_s=0)
    assert lost["state"] == "failed" and "host:1:abc" in lost["error"]["message"]
    jobs.request_cancel("j1", "key:1234")
    assert jobs.cancel_requested("j1") and jobs.get("j1")["cancel_requested"]
    assert "_jobs" not in EmbeddingStore(tmp_path / "db").table_names()
