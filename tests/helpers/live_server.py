"""Live servers on 127.0.0.1 for tests: uvicorn in a thread, or ``rsembed_db`` served by a
child process (whose memory and signals a test can watch), and a small store to serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import uvicorn

from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.records import EmbeddingRecord
from rsembed_db.service import ServiceSettings, create_app
from rsembed_db.specs import H3Cell, PointBuffer, TemporalSpec
from rsembed_db.store import EmbeddingStore
from tests.conftest import ROOT, SCENE
from tests.store_rows import toy_store

SERVE_SCRIPT = Path(__file__).with_name("serve_app.py")
POINT = {"lon": 12.6, "lat": 52.49, "buffer_m": 300}
CELL = "881f1d4b1bfffff"


def small_store(db: Path | str) -> list[str]:
    """A ``toy`` table and two fake ``mosaiks`` rows (a point and an H3 cell, 2017); their keys."""
    toy_store(db)
    return fake_mosaiks_rows(db)


def fake_mosaiks_rows(db: Path | str) -> list[str]:
    """Two fake ``mosaiks`` rows (a point and an H3 cell, 2017) written to ``db``; their keys."""
    producer = make_producer("mosaiks", SCENE)
    requests = [producer.request(PointBuffer(**POINT), TemporalSpec.year(2017)),
                producer.request(H3Cell(CELL), TemporalSpec.year(2017))]
    records = [EmbeddingRecord(r, f"tile{i}", np.full(256, i + 0.5, np.float32), meta={"fake": True})
               for i, r in enumerate(requests)]
    EmbeddingStore(db).write("mosaiks", records, 256)
    return [r.key for r in requests]


@contextmanager
def server_thread(settings: ServiceSettings) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread; yields the base URL."""
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning",
                                        lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not srv.started:
        assert thread.is_alive() and time.time() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "server did not stop"


@contextmanager
def server_process(config: dict) -> Iterator[tuple[subprocess.Popen, str]]:
    """``tests/helpers/serve_app.py`` with ``config`` (ServiceSettings fields; ``sql`` as a
    dict of SqlLimits) in a child process; yields (process, base URL). Stopped with SIGTERM."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, str(SERVE_SCRIPT), json.dumps(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith("port "), f"server did not start: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        yield proc, f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
