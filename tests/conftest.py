"""Shared fixtures: the bundled scene, the example region, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
