"""inspect_gee_patch / ``rsembed-db inspect`` and SensorSpec.check_input on the bundled scene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import from_bounds

from rsembed_db.api import get_embedding, inspect_gee_patch
from rsembed_db.errors import TileFailure
from rsembed_db.inspect import inspect_model_input
from rsembed_db.specs import PointBuffer, SensorSpec, SpecError, TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for
from tests.conftest import SCENE, run_cli

POINT = PointBuffer(12.60, 52.49, 300)
YEAR = TemporalSpec.year(2017)


def test_reports_what_mosaiks_receives_and_saves_a_quicklook(tmp_path):
    result = inspect_gee_patch(spatial=POINT, temporal=YEAR, model="mosaiks", imagery=SCENE,
                               out_dir=tmp_path, name="havelland", return_array=True)
    report = result["report"]
    grid = chip_grid_for(POINT, 10)
    assert report["bands"] == ["B02", "B03", "B04", "B08"]          # the model's input contract
    assert result["model"]["name"] == "mosaiks" and result["source"] == "local"
    assert report["shape"] == [4, grid.height, grid.width]
    with rasterio.open(SCENE) as ds:
        red = ds.read(4, window=from_bounds(*grid.bounds, transform=ds.transform)).astype(np.float32)
    assert np.array_equal(result["array_chw"][2], red)                # exactly the fetched chip
    stats = report["band_stats"]["B04"]
    assert stats["min"] == red.min() and stats["max"] == red.max()
    assert stats["mean"] == pytest.approx(red.mean(), rel=1e-6)
    assert report["value_range"] == [float(result["array_chw"].min()), float(result["array_chw"].max())]
    assert report["nan_fraction"] == 0 and report["valid_fraction"] == 1 and result["ok"]
    with Image.open(tmp_path / "havelland.png") as png:
        assert png.size == (grid.width, grid.height) and png.mode == "RGB"
    assert result["artifacts"]["quicklook"] == str(tmp_path / "havelland.png")
    saved = json.loads((tmp_path / "havelland.json").read_text())
    assert saved["report"]["band_stats"]["B04"]["max"] == stats["max"]


def test_model_input_is_what_the_network_receives():
    result = inspect_model_input("mosaiks", spatial=POINT, temporal=YEAR, imagery=SCENE, return_array=True)
    norm = result["model"]["normalisation"]
    raw = result["array_chw"].astype(np.float64)
    expected = (raw * norm["scale"] - np.array(norm["mean"])[:, None, None]) / np.array(norm["std"])[:, None, None]
    np.testing.assert_allclose(result["model_input_array"], expected, rtol=1e-12)
    assert result["model_input"]["shape"] == list(expected.shape)
    assert result["model_input"]["channels"][2]["mean"] == pytest.approx(expected[2].mean(), rel=1e-9)


def test_fill_and_out_of_range_values_are_issues(tmp_path):
    edge = PointBuffer(12.494, 52.49, 400)                            # half outside the scene
    result = inspect_gee_patch(spatial=edge, temporal=YEAR, imagery=SCENE,
                               sensor=SensorSpec("local", ("B04",), fill_value=-1), value_range=(0, 1000))
    report = result["report"]
    assert 0.3 < report["invalid_fraction"] < 0.7
    assert report["band_stats"]["B04"]["fill_value_fraction"] == pytest.approx(report["invalid_fraction"])
    assert any("outside [0, 1000]" in issue for issue in report["issues"]) and not result["ok"]


def test_needs_a_model_or_a_sensor():
    with pytest.raises(SpecError, match="sensor"):
        inspect_gee_patch(spatial=POINT, temporal=YEAR, imagery=SCENE)


def test_check_input_saves_reports_and_fails_bad_tiles(tmp_path):
    sensor = SensorSpec("local", ("B02", "B03", "B04", "B08"), check_input=True,
                        check_save_dir=str(tmp_path / "checks"))
    emb = get_embedding("mosaiks", spatial=POINT, temporal=YEAR, imagery=SCENE, sensor=sensor,
                        model_config={"num_filters": 4})
    assert emb.data.shape == (8,)
    assert len(list((tmp_path / "checks").glob("*.png"))) == 1
    edge = PointBuffer(12.4935, 52.49, 400)                           # mostly outside: fill
    with pytest.raises(TileFailure, match="input check failed.*fill"):
        get_embedding("mosaiks", spatial=edge, temporal=YEAR, imagery=SCENE, sensor=sensor,
                      model_config={"num_filters": 4})


def test_cli_inspect(tmp_path):
    proc = run_cli("inspect", "--lon", "12.6", "--lat", "52.49", "--buffer-m", "300", "--year", "2017",
                   "--model", "mosaiks", "--imagery", str(SCENE), "--out-dir", str(tmp_path))
    assert "B04" in proc.stdout and "quicklook" in proc.stdout
    assert (tmp_path / "patch.png").exists() and (tmp_path / "patch.json").exists()
