"""Against a real uvicorn server on 127.0.0.1: single-flight compute-on-miss over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rsembed_db.producers.onthefly import OnTheFlyProducer
from rsembed_db.service import ServiceSettings
from rsembed_db.service.auth import ApiKeys
from rsembed_db.store import EmbeddingStore
from tests.conftest import SCENE
from tests.helpers.live_server import server_thread

QUERY = {"model": "mosaiks", "lon": 12.61, "lat": 52.48, "buffer_m": 400, "year": 2017}


@pytest.fixture
def server(tmp_path) -> Iterator[str]:
    """A uvicorn server on a free port (port 0: the OS picks), stopped after the test."""
    settings = ServiceSettings(db=str(tmp_path / "db"), imagery=(str(SCENE),),
                               api_keys=ApiKeys.parse("w:write,r:read", "test"))
    with server_thread(settings) as url:
        yield url


def test_concurrent_http_requests_for_a_missing_key_compute_it_once(server, tmp_path, monkeypatch):
    calls: list[int] = []
    original = OnTheFlyProducer.finish

    def counted(self, batch):
        calls.append(len(batch))
        time.sleep(0.5)  # keep the computation in flight while the other requests arrive
        return original(self, batch)

    monkeypatch.setattr(OnTheFlyProducer, "finish", counted)
    barrier = threading.Barrier(8)

    def fetch(_):
        with httpx.Client(base_url=server, headers={"X-API-Key": "w"}, timeout=120) as http:
            barrier.wait()
            return http.get("/v1/embeddings", params=QUERY)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(fetch, range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert calls == [1]
    bodies = [a.json() for a in answers]
    assert len({b["key"] for b in bodies}) == 1 and all(b["vector"] == bodies[0]["vector"] for b in bodies)
    assert EmbeddingStore(tmp_path / "db").table("mosaiks").count_rows() == 1

    with httpx.Client(base_url=server, timeout=60) as http:
        stored = http.get("/v1/embeddings", params=QUERY, headers={"Authorization": "Bearer r"}).json()
        assert stored["from_store"] and stored["vector"] == bodies[0]["vector"] and calls == [1]
        assert http.get("/v1/embeddings", params=QUERY).status_code == 401
        assert http.get("/healthz").json()["tables"] == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_rsembed_db_serve_subprocess(tmp_path):
    port = _free_port()
    env = {**os.environ, "RSEMBED_DB": str(tmp_path / "db"), "RSEMBED_API_KEYS": "r:read"}
    proc = subprocess.Popen([sys.executable, "-m", "rsembed_db", "serve", "--port", str(port),
                             "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.time() < deadline, "serve did not come up"
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/tables", timeout=5).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/v1/tables", headers={"X-API-Key": "r"}, timeout=5).json() == {"tables": []}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_refuses_an_open_service_beyond_loopback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSEMBED_API_KEYS")}
    done = subprocess.run([sys.executable, "-m", "rsembed_db", "serve", "--host", "0.0.0.0",
                           "--db", str(tmp_path / "db")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error: host:" in done.stderr
