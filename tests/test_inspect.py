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
from rsembed_db.specs import PointBuffer, SensorSpec, SpecError, TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for
from tests.conftest import SCENE, run_cli

POINT = PointBuffer(12.60, 52.49, 300)
YEAR = TemporalSpec.year(2017)


def test_reports_what_mosaiks_receives_and_saves_a_quicklook(tmp_path):
    report = inspect_gee_patch(spatial=POINT, temporal=YEAR, model="mosaiks", imagery=SCENE,
                               out_dir=tmp_path, name="havelland", return_array=True)
    grid = chip_grid_for(POINT, 10)
    assert report["bands"] == ["B02", "B03", "B04", "B08"]          # the model's input contract
    assert report["model"]["name"] == "mosaiks" and report["source"] == "local"
    assert report["shape"] == [4, grid.height, grid.width]
    with rasterio.open(SCENE) as ds:
        red = ds.read(4, window=from_bounds(*grid.bounds, transform=ds.transform)).astype(np.float32)
    assert np.array_equal(report["array"][2], red)                    # exactly the fetched chip
    stats = report["band_stats"]["B04"]
    assert stats["min"] == red.min() and stats["max"] == red.max()
    assert stats["mean"] == pytest.approx(red.mean(), rel=1e-6)
    assert report["value_range"] == [float(report["array"].min()), float(report["array"].max())]
    assert report["nan_fraction"] == 0 and report["valid_fraction"] == 1 and report["ok"]
    with Image.open(tmp_path / "havelland.png") as png:
        assert png.size == (grid.width, grid.height) and png.mode == "RGB"
    saved = json.loads((tmp_path / "havelland.json").read_text())
    assert saved["band_stats"]["B04"]["max"] == stats["max"]


def test_fill_and_out_of_range_values_are_issues(tmp_path):
    edge = PointBuffer(12.494, 52.49, 400)                            # half outside the scene
    report = inspect_gee_patch(spatial=edge, temporal=YEAR, imagery=SCENE,
                               sensor=SensorSpec("local", ("B04",), fill_value=-1), value_range=(0, 1000))
    assert 0.3 < report["invalid_fraction"] < 0.7
    assert report["band_stats"]["B04"]["fill_value_fraction"] == pytest.approx(report["invalid_fraction"])
    assert any("outside [0, 1000]" in issue for issue in report["issues"]) and not report["ok"]


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
