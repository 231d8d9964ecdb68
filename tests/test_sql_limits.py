"""SQL limits that hold for single huge values, measured from outside: the CLI and a live
server (a child process) under small limits, wall time and peak resident memory taken by the test.

Before the fix, ``repeat('x', 1e9)`` ran 13-45 s at ~1.9 GB with ``--timeout 1`` and
``len(range(0, 150000000))`` took 1.3-13 GB against a 256 MB limit: DuckDB checks for
interruption between vectors and bounds only its buffer manager, so one huge value escapes both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from rsembed_db.errors import ResourceLimit
from rsembed_db.query.sql import SqlLimits, run_sql
from rsembed_db.store import EmbeddingStore
from tests.conftest import ROOT
from tests.helpers.live_server import server_process, small_store

MB = 1 << 20
LIMIT = "256MB"
LIMIT_BYTES = 256 * 10**6
TIMEOUT_S = 2.0
MARGIN_BYTES = 384 * MB  # the query process's own footprint (~200 MiB) and the address-space slack
MARGIN_S = 10.0  # process start-up on a busy machine
HUGE = [
    "SELECT length(repeat('x', 1000000000)) AS n",  # one 1 GB string
    "SELECT len(range(0, 150000000)) AS n",  # one 1.2 GB list
    "SELECT length(repeat('x', 2000000000)) AS n",
    "SELECT length(string_agg(repeat('y', 1000000), '')) AS n FROM range(3000)",  # a 3 GB aggregate
]


def _measured(args: list[str], db: Path) -> tuple[int, str, float, float, int, int]:
    """(exit status, stderr, wall seconds, CPU seconds, peak resident bytes of the command
    and its children, peak of its children alone: the query process)."""
    env = {**os.environ, "COLUMNS": "200", "RSEMBED_DB": str(db)}
    with open(db.parent / "err.txt", "w+") as err, open(db.parent / "out.txt", "w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "rsembed_db", *args], stdout=out, stderr=err, env=env)
        stop, peaks = threading.Event(), [0]
        watcher = threading.Thread(target=_children_peak, args=(proc.pid, stop, peaks))
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss: the largest of the process and its waited children
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return proc.returncode, err.read(), wall, cpu, usage.ru_maxrss * 1024, max(peaks)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "db"
    small_store(path)
    return path


@pytest.fixture(scope="module")
def cli_baseline(db) -> tuple[float, float, int]:
    """Wall time, CPU time and peak memory of a trivial query: the CLI's own cost."""
    status, err, wall, cpu, peak, _ = _measured(["sql", "SELECT 1 AS one", "--memory-limit", LIMIT], db)
    assert status == 0, err
    return wall, cpu, peak


@pytest.mark.parametrize("sql", HUGE)
def test_cli_huge_values_stay_within_the_limits(db, cli_baseline, sql):
    base_wall, base_cpu, base_peak = cli_baseline
    args = ["sql", sql, "--timeout", str(TIMEOUT_S), "--memory-limit", LIMIT]
    status, err, wall, cpu, peak, query_peak = _measured(args, db)
    print(f"cli {sql!r}: exit {status}, {wall:.2f} s wall / {cpu:.2f} s CPU (baseline {base_wall:.2f} / {base_cpu:.2f}),"
          f" peak {peak / MB:.0f} MiB (baseline {base_peak / MB:.0f} MiB), query process {query_peak / MB:.0f} MiB")
    # One line, the limit that stopped it, its exit code (ResourceLimit 7, SqlTimeout 6).
    assert status in (6, 7) and err.count("\n") == 1 and err.startswith("error: sql:"), err
    assert ("memory" in err and LIMIT in err) if status == 7 else f"time limit of {TIMEOUT_S:g} s" in err
    # Time: the CPU spent beyond the CLI's own start-up is at most the limit on each DuckDB thread
    # (load-independent); wall time, which a busy machine stretches, gets a wider margin.
    assert cpu < base_cpu + TIMEOUT_S * SqlLimits.threads + 3
    assert wall < 2 * base_wall + TIMEOUT_S + MARGIN_S
    assert peak < max(base_peak, LIMIT_BYTES) + MARGIN_BYTES
    assert query_peak < LIMIT_BYTES + MARGIN_BYTES


def _children_peak(pid: int, stop: threading.Event, peaks: list[int]) -> None:
    """Poll the peak resident memory (VmHWM) of ``pid``'s children until ``stop``."""
    while not stop.is_set():
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                try:
                    status = Path(f"/proc/{child}/status").read_text()
                except OSError:
                    continue
                hwm = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)
                peaks.append(hwm)
        time.sleep(0.002)


def _own_peak(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


def test_http_huge_values_stay_within_the_limits(db):
    config = {"db": str(db), "sql": {"timeout_s": TIMEOUT_S, "memory_limit": LIMIT}}
    with server_process(config) as (proc, base), httpx.Client(base_url=base, timeout=120) as http:
        assert http.post("/v1/sql", json={"sql": "SELECT 1 AS one"}).status_code == 200  # starts the spare
        time.sleep(1)
        server_before = _own_peak(proc.pid)
        for sql in HUGE:
            stop, peaks = threading.Event(), [0]
            watcher = threading.Thread(target=_children_peak, args=(proc.pid, stop, peaks))
            watcher.start()
            started = time.perf_counter()
            answer = http.post("/v1/sql", json={"sql": sql})
            wall = time.perf_counter() - started
            stop.set()
            watcher.join()
            print(f"http {sql!r}: {answer.status_code}, {wall:.2f} s, query process peak {max(peaks) / MB:.0f} MiB")
            assert answer.status_code in (413, 504) and answer.json()["error"]["field"] == "sql", answer.text
            assert wall < TIMEOUT_S + MARGIN_S
            assert max(peaks) < LIMIT_BYTES + MARGIN_BYTES
            # The connection stays usable: the next request on it works.
            assert http.get("/healthz").status_code == 200
        assert _own_peak(proc.pid) - server_before < 64 * MB  # the server itself never held the values


def test_spill_goes_to_a_private_capped_directory_and_paths_stay_hidden(db, tmp_path, monkeypatch):
    workdir, temp = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    temp.mkdir()
    monkeypatch.chdir(workdir)  # the spill directory used to be ./.tmp of the working directory
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the query processes' private directories go
    store = EmbeddingStore(db)
    limits = SqlLimits(memory_limit="64MB", max_spill="16MB", timeout_s=60)
    with pytest.raises(ResourceLimit) as info:  # an ORDER BY that must spill more than 16 MB
        run_sql(store, "SELECT * FROM range(30000000) ORDER BY random()", limits)
    assert info.value.field == "sql" and ("16MB" in str(info.value) or "64MB" in str(info.value)), info.value
    assert list(workdir.iterdir()) == [] and list(temp.iterdir()) == []  # nothing left behind
    settings = run_sql(store, "SELECT name, value FROM duckdb_settings()", SqlLimits(timeout_s=60)).table.to_pylist()
    values = " ".join(str(row["value"]) for row in settings)
    for private in (str(ROOT), str(workdir), os.path.expanduser("~")):
        assert private not in values, [row for row in settings if private in str(row["value"])]
    named = {row["name"]: row["value"] for row in settings}
    assert named["temp_directory"] == "spill"
    assert list(temp.iterdir()) == []


def test_result_bytes_are_capped(db):
    store = EmbeddingStore(db)
    with pytest.raises(ResourceLimit) as info:
        run_sql(store, "SELECT repeat('z', 1000000) AS s FROM range(40)",
                SqlLimits(max_result_bytes="8MB", memory_limit="512MB", timeout_s=60))
    assert "8MB" in str(info.value)
    ok = run_sql(store, "SELECT repeat('z', 1000) AS s FROM range(40)", SqlLimits(max_result_bytes="8MB", timeout_s=60))
    assert ok.table.num_rows == 40 and json.dumps(ok.table.to_pylist())
