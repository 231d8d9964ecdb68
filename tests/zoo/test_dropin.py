"""rs-embed scripts run by changing one import: the spec page's examples against rsembed-db."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

from rsembed_db.api import reset_runtime
from tests.test_model_zoo import install_prithvi, install_remoteclip

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("spec_page_script.py")


@pytest.fixture
def tiny_weights(tmp_path, monkeypatch):
    """Tiny instances of the real remoteclip and prithvi architectures, in the Hugging Face
    cache the reference's default calls read (no weights arguments in the script)."""
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read at import
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    install_remoteclip(monkeypatch, cache, tmp_path / "weights")
    install_prithvi(monkeypatch, cache, tmp_path / "weights")
    reset_runtime()
    yield
    reset_runtime()


def test_spec_page_script_runs_with_one_import_changed(tiny_weights, tmp_path, monkeypatch, capsys):
    source = SCRIPT.read_text()
    assert "rsembed_db" not in source and source.count("rs_embed") == 1
    monkeypatch.setenv("RSEMBED_IMAGERY", str(ROOT / "examples" / "data"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "spec_page_script"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(source.replace("rs_embed", "rsembed_db"), str(SCRIPT), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    emb, grid, prithvi = namespace["emb"], namespace["grid"], namespace["prithvi_emb"]
    assert emb.data.shape == (32,) and printed[0] == "(32,)" and printed[1] == "remoteclip"
    assert emb.meta["sensor"]["scale_m"] == 10.0
    # 4096 m at 10 m is 411 px (snapped outward): tiled by default, two 224 px tiles per axis.
    side = emb.meta["image_size"][1]
    assert side == 411 and emb.meta["input_prep"]["mode"] == "tile"
    assert emb.meta["input_prep"]["starts_x"] == [0, side - 224]
    assert grid.data.dims == ("band", "y", "x") and grid.data.shape[0] == 32
    assert grid.data.shape[1:] == tuple(grid.meta["input_prep"]["stitched_grid"])
    assert prithvi.data.shape == (32,) and np.isfinite(prithvi.data).all()
    assert printed[3] == "['pooled', 'grid']" and printed[4] == "224" and printed[5] == "on_the_fly"
    manifest = namespace["manifest"]
    assert manifest["status"] == "ok" and os.path.exists(tmp_path / "exports" / "run.npz")
    assert namespace["tiled"].mode == "tile" and namespace["automatic"].max_tiles == 4
    assert namespace["documented"] == namespace["range_spec"] and namespace["year_spec"].year == 2022
