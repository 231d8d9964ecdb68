"""``rsembed-db ingest --engine ray`` against a local Ray cluster the tests start (2 CPUs).

The CLI runs as a user runs it, a subprocess joining the cluster with ``--ray-address``;
its rows are compared with the local engine's: same keys, bit-identical vectors, grids
and meta. A driver killed mid-run leaves only uncommitted files; the rerun stores every
tile exactly once.

Ray takes ~30 s and ~1 GB to start, so these tests are marked ``ray`` and run when
``RSEMBED_RAY_TESTS=1`` (``scripts/test.sh`` sets it: CI runs them), on the session's one
local Ray (``ray_address`` of ``conftest.py``, shared with the docs' Ray examples).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region
from rsembed_db.tiling.region import load_region
from tests.conftest import RAY_TESTS, REGION, SCENE, run_cli
from tests.products.tessera_helpers import make_tree

pytestmark = [pytest.mark.ray, pytest.mark.skipif(
    not os.environ.get(RAY_TESTS), reason=f"Ray tests run with {RAY_TESTS}=1 (scripts/test.sh sets it)")]
MOSAIKS = ("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE))


def rows(db: Path, table: str) -> pa.Table:
    return EmbeddingStore(db).table(table).to_lance().to_table().sort_by("key")


def summary(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[-1].replace(".", "").isdigit():
            out[" ".join(parts[:-1])] = parts[-1]
    return out


def assert_same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a["key"].to_pylist() == b["key"].to_pylist()
    assert len(set(a["key"].to_pylist())) == a.num_rows
    for column in ("vector", "grid"):
        for x, y in zip(a[column].to_pylist(), b[column].to_pylist()):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
    for column in ("meta", "tile_id", "spatial", "grid_shape", "t_start", "t_end"):
        assert a[column].to_pylist() == b[column].to_pylist(), column


def test_ray_engine_matches_the_local_engine_on_the_bundled_scene(ray_address, tmp_path):
    local = run_cli(*MOSAIKS, "--db", str(tmp_path / "local"))
    ray_run = run_cli(*MOSAIKS, "--db", str(tmp_path / "ray"), "--engine", "ray", "--ray-address", ray_address,
                      "--requests-per-unit", "8", "--commit-every", "16")
    assert "engine ray" in ray_run.stdout and "time spent" in ray_run.stdout
    for name in ("planned tiles", "already stored", "computed", "failed"):
        assert summary(ray_run.stdout)[name] == summary(local.stdout)[name], name
    assert_same_rows(rows(tmp_path / "ray", "mosaiks"), rows(tmp_path / "local", "mosaiks"))
    assert EmbeddingStore(tmp_path / "ray").internal_names() == []  # the staging table is dropped
    again = run_cli(*MOSAIKS, "--db", str(tmp_path / "ray"), "--engine", "ray", "--ray-address", ray_address)
    assert summary(again.stdout)["computed"] == "0"


def test_ray_engine_matches_the_local_engine_on_a_tessera_area(ray_address, tmp_path):
    tree = tmp_path / "tessera"
    make_tree(tree, [TileId(ix, iy) for ix in range(124, 128) for iy in range(523, 527)], year=2024)
    args = ("ingest", str(REGION), "--model", "tessera", "--year", "2024", "--tiles", "h3:9", "--output", "both",
            "--config", f"dir={tree}")
    local = run_cli(*args, "--db", str(tmp_path / "local"))
    # One source tile per unit: ROIs on tile edges span units and are merged by the driver.
    ray_run = run_cli(*args, "--db", str(tmp_path / "ray"), "--engine", "ray", "--ray-address", ray_address,
                      "--tiles-per-unit", "1", "--commit-every", "50")
    assert "merge_shared" in ray_run.stdout
    assert summary(ray_run.stdout)["computed"] == summary(local.stdout)["computed"]
    assert_same_rows(rows(tmp_path / "ray", "tessera"), rows(tmp_path / "local", "tessera"))


def test_killed_driver_then_rerun_stores_every_tile_once(ray_address, tmp_path):
    db = tmp_path / "db"
    expected = sorted(c.hex for c in tile_region(load_region(REGION), "h3:9"))
    args = (*MOSAIKS, "--tiles", "h3:9", "--db", str(db), "--engine", "ray", "--ray-address", ray_address,
            "--requests-per-unit", "8", "--commit-every", "8")
    proc = subprocess.Popen([sys.executable, "-m", "rsembed_db", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    versions = db / "mosaiks.lance" / "_versions"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once some (not all) commits landed
        if versions.exists() and len(list(versions.iterdir())) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before its driver could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = EmbeddingStore(db)
    partial = store.table("mosaiks").to_lance().to_table(columns=["tile_id"])["tile_id"].to_pylist()
    assert 0 < len(partial) < len(expected) and len(partial) == len(set(partial))
    staging = [n for n in store.internal_names() if n.startswith("_staging_")]
    assert len(staging) == 1  # the killed run's uncommitted files stay there, outside the model table

    resumed = run_cli(*args)
    assert summary(resumed.stdout)["already stored"] == str(len(partial))
    tiles = rows(db, "mosaiks")["tile_id"].to_pylist()
    assert len(tiles) == len(set(tiles)) and sorted(tiles) == expected
    report = json.loads(run_cli("check", "--format", "json", "--db", str(db)).stdout)
    assert all(t["healthy"] and t["duplicate_keys"] == 0 for t in report["tables"])
    run_cli("optimize", "--retention-days", "0", "--db", str(db))
    assert not [n for n in EmbeddingStore(db).internal_names() if n.startswith("_staging_")]
