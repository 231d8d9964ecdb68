"""Every command and the service on ``s3://``: a local S3 server (moto) the tests start.

The real path throughout: CLI subprocesses and a ``serve`` process configured only with
the standard AWS variables (or ``--storage-option``), LanceDB writing to and reading from
the server over HTTP. No mock of LanceDB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import h3
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from rsembed_db.store import EmbeddingStore
from rsembed_db.store.indexes import vector_index_info
from rsembed_db.store.synthetic import write_synthetic
from rsembed_db.tiling.plan import tile_region
from rsembed_db.tiling.region import load_region
from tests.conftest import REGION, SCENE
from tests.helpers import s3_server
from tests.helpers.serve import ServeProcess

BUCKET = "rsembed-test"
INGEST = ("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE))


@pytest.fixture(scope="module")
def s3() -> Iterator[s3_server.S3Server]:
    python = s3_server.s3_python()
    if python is None:
        if os.environ.get(s3_server.REQUIRED):
            pytest.fail("no moto interpreter (.venv-s3 or $RSEMBED_S3_PYTHON); run scripts/setup.sh")
        pytest.skip("no moto interpreter: scripts/setup.sh installs moto[server] into .venv-s3")
    server = s3_server.start(python, [BUCKET])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def uri(s3, monkeypatch) -> str:
    """A fresh database prefix in the bucket; this process sees the server through the AWS variables."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}/db"


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rsembed_db", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def summary(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[-1].replace(".", "").isdigit():
            rows[" ".join(parts[:-1])] = parts[-1]
    return rows


def cells(res: int) -> list[str]:
    return [c.hex for c in tile_region(load_region(REGION), f"h3:{res}")]


def test_ingest_search_sql_export_get_optimize_check_on_s3(uri, tmp_path):
    expected = cells(8)
    first = cli(*INGEST, "--db", uri)
    assert summary(first.stdout)["computed"] == str(len(expected))
    again = cli(*INGEST, "--db", uri)
    assert summary(again.stdout)["already stored"] == str(len(expected)) and summary(again.stdout)["computed"] == "0"
    store = EmbeddingStore(uri)
    tiles = store.table("mosaiks").to_lance().to_table(columns=["tile_id"])["tile_id"].to_pylist()
    assert sorted(tiles) == sorted(expected)

    assert "mosaiks" in cli("tables", "--db", uri).stdout
    found = json.loads(cli("search", "--model", "mosaiks", "--near", "12.58,52.49", "-k", "5", "--format", "json",
                           "--db", uri).stdout)
    assert len(found) == 5 and [r["distance"] for r in found] == sorted(r["distance"] for r in found)
    routed = cli("search", "--model", "mosaiks", "--near", "12.58,52.49", "-k", "3", "--db", uri).stdout
    assert "exact search" in routed

    counted = json.loads(cli("sql", "SELECT count(*) AS n, count(DISTINCT key) AS k FROM mosaiks", "--format", "json",
                             "--db", uri).stdout)
    assert counted["rows"][0] == {"n": len(expected), "k": len(expected)}

    out = tmp_path / "m.parquet"
    cli("export", "--model", "mosaiks", "--format", "geoparquet", "--out", str(out), "--db", uri)
    exported = pq.read_table(out)
    assert exported.num_rows == len(expected) and b"geo" in exported.schema.metadata

    point = ("get", "--model", "mosaiks", "--lon", "12.6", "--lat", "52.49", "--buffer-m", "300", "--year", "2017",
             "--imagery", str(SCENE), "--db", uri)
    assert "(computed)" in cli(*point, "--out", str(tmp_path / "a.npy")).stdout
    assert "(store)" in cli(*point, "--out", str(tmp_path / "b.npy")).stdout
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))

    optimized = cli("optimize", "--retention-days", "0", "--db", uri)
    assert "mosaiks" in optimized.stdout
    checked = json.loads(cli("check", "--format", "json", "--db", uri).stdout)
    mosaiks = next(t for t in checked["tables"] if t["table"] == "mosaiks")
    assert mosaiks["healthy"] and mosaiks["duplicate_keys"] == 0 and mosaiks["rows"] == len(expected) + 1


def test_failures_are_logged_on_s3(uri, tmp_path):
    region = tmp_path / "half.geojson"  # half over the scene, half east of it
    region.write_text(json.dumps({"type": "Polygon", "coordinates": [[
        [12.70, 52.48], [12.76, 52.48], [12.76, 52.50], [12.70, 52.50], [12.70, 52.48]]]}))
    args = ("ingest", str(region), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE), "--db", uri)
    first = cli(*args, check=False)
    assert first.returncode == 10, first.stderr
    failures = EmbeddingStore(uri).failures("mosaiks")
    assert failures and all("outside" in f["error"] for f in failures)
    assert failures[0]["tile_id"] in cli("failures", "--db", uri).stdout
    assert cli(*args, check=False).returncode == 11  # only the failed tiles were retried


def test_sigkill_mid_ingest_then_resume_stores_every_tile_once_on_s3(uri, s3):
    expected = cells(9)
    proc = subprocess.Popen([sys.executable, "-m", "rsembed_db", *INGEST, "--tiles", "h3:9", "--commit-every", "8",
                             "--batch-size", "4", "--workers", "2", "--db", uri],
                            env={**os.environ, **s3.env()}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = EmbeddingStore(uri)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once some (not all) commits landed
        if store.has_table("mosaiks") and store.table("mosaiks").count_rows() >= 24:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = store.table("mosaiks").count_rows()
    assert 0 < partial < len(expected)
    resumed = cli(*INGEST, "--tiles", "h3:9", "--db", uri)
    assert summary(resumed.stdout)["already stored"] == str(partial)
    tiles = EmbeddingStore(uri).table("mosaiks").to_lance().to_table(columns=["tile_id"])["tile_id"].to_pylist()
    assert len(tiles) == len(set(tiles)) and sorted(tiles) == sorted(expected)


def test_ann_route_and_index_on_s3(uri):
    parent = h3.latlng_to_cell(52.49, 12.58, 5)
    write_synthetic(EmbeddingStore(uri), "synthetic", parent, 9, list(range(2010, 2022)), 16)  # 28 812 rows
    cli("index", "--db", uri)
    info = vector_index_info(EmbeddingStore(uri).table("synthetic"))
    assert info is not None and info.indexed_rows == 28_812
    cell = h3.latlng_to_cell(52.49, 12.58, 9)
    ann = cli("search", "--table", "synthetic", "--h3", cell, "-k", "5", "--db", uri)
    assert "ann search" in ann.stdout
    exact = cli("search", "--table", "synthetic", "--h3", cell, "-k", "5", "--year", "2015", "--db", uri)
    assert "exact search" in exact.stdout and "5 most similar" in exact.stdout


def test_storage_option_flag_configures_the_store(uri, s3):
    """Without AWS_ENDPOINT in the environment, ``--storage-option`` reaches the server."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT"}
    env.pop("AWS_ALLOW_HTTP", None)
    proc = subprocess.run([sys.executable, "-m", "rsembed_db", "--storage-option", f"aws_endpoint={s3.endpoint}",
                           "--storage-option", "allow_http=true", *INGEST, "--db", uri],
                          capture_output=True, text=True, env={**env, "COLUMNS": "200"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert EmbeddingStore(uri).table("mosaiks").count_rows() == len(cells(8))


def test_service_on_s3_computes_on_miss_and_searches(uri, s3, tmp_path):
    cli(*INGEST, "--db", uri)
    server = ServeProcess(uri, "--imagery", str(SCENE), env=s3.env(), log=tmp_path / "serve.log")
    try:
        server.wait_healthy()
        query = {"model": "mosaiks", "lon": 12.61, "lat": 52.48, "buffer_m": 400, "year": 2017}
        first = httpx.get(f"{server.url}/v1/embeddings", params=query, timeout=120).json()
        second = httpx.get(f"{server.url}/v1/embeddings", params=query, timeout=120).json()
        assert (first["from_store"], second["from_store"]) == (False, True)
        assert first["vector"] == second["vector"]
        hits = httpx.post(f"{server.url}/v1/search", json={"model": "mosaiks", "near": [12.58, 52.49], "k": 3},
                          timeout=60).json()
        assert len(hits["results"]) == 3
        rows = httpx.post(f"{server.url}/v1/sql", json={"sql": "SELECT count(*) AS n FROM mosaiks"},
                          timeout=60).json()["rows"]
        assert rows == [{"n": len(cells(8)) + 1}]
    finally:
        server.stop()
