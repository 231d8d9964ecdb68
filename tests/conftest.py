"""Shared fixtures: the bundled scene, the example region, a CLI runner, a local Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RAY_TESTS = "RSEMBED_RAY_TESTS"  # set by scripts/test.sh: the tests that start Ray run

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "examples" / "data" / "havelland_s2l1c_20170216_13band_10m.tif"
REGION = ROOT / "examples" / "region.geojson"


def run_cli(*args: str, db: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``rsembed-db`` as a user would, in a subprocess."""
    env = {**os.environ, "COLUMNS": "200"}
    if db is not None:
        env["RSEMBED_DB"] = str(db)
    proc = subprocess.run([sys.executable, "-m", "rsembed_db", *args], capture_output=True,
                          text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "db.lance"


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray for the whole session (2 CPUs, loopback only, no dashboard): Ray takes
    ~30 s and ~1 GB to start, so every test that needs it (``test_distributed_ingest``, the
    Ray examples of the docs) joins this one. Skips unless ``$RSEMBED_RAY_TESTS`` is set."""
    if not os.environ.get(RAY_TESTS):
        pytest.skip(f"Ray tests run with {RAY_TESTS}=1 (scripts/test.sh sets it)")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _node_ip_address="127.0.0.1",
                       runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
