"""Prithvi-EO-2.0 with T > 1 end to end: real multi-date scenes on disk -> frame bins ->
a (T, C, H, W) chip -> the tiny real-architecture Prithvi with one (year, day-of-year) per
frame taken from the chip's ``frame_dates``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rsembed_db.api import get_embedding
from rsembed_db.models.chip_context import centre_lonlat
from rsembed_db.producers.catalog import make_producer
from rsembed_db.specs import GridCell, TemporalSpec
from tests.test_frames import SCENES, write_scene
from tests.test_model_zoo import install_prithvi

CELL = GridCell("EPSG:32633", 334100, 5818100, 640)
Y2017 = TemporalSpec.year(2017)


@pytest.fixture
def tiny_prithvi(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    torch.manual_seed(0)
    install_prithvi(monkeypatch, tmp_path / "hf", tmp_path / "weights")
    return {"cache_dir": str(tmp_path / "hf"), "device": "cpu", "num_frames": 4}


def dated_folder(root, days):
    """The four test scenes (same pixels, the last valid on its eastern half) under ``days``."""
    root.mkdir()
    for i, (day, offset) in enumerate(zip(days, SCENES.values())):
        write_scene(root, day, offset, east_only=i == 3)
    return root


def test_four_frames_from_real_scenes_carry_their_dates_into_the_model(tiny_prithvi, tmp_path):
    folder = dated_folder(tmp_path / "scenes", SCENES)
    producer = make_producer("prithvi", imagery=folder, model_config=tiny_prithvi)
    assert producer.description.frames == 4
    request = producer.request(CELL, Y2017)
    with pytest.warns(UserWarning, match="2 of 4 frame bins have no imagery"):
        prepared = producer.prepare(request)
    chip = prepared.payload
    assert chip.data.shape == (4, 6, 22, 22) and chip.bands == ("B02", "B03", "B04", "B8A", "B11", "B12")
    assert chip.meta["frame_dates"][0] == "2017-02-16" and chip.meta["frame_dates"][2] == "2017-08-05"

    embedder = producer.embedder
    side = embedder.side_inputs(chip, {})
    assert side["time"] == [(2017, 47), (2017, 137), (2017, 217), (2017, 320)]   # day of year of frame_dates
    [record] = producer.finish([prepared])
    assert record.meta["frame_backfilled"] == [False, True, False, True]

    # The same computation by hand: terratorch's encoder on the normalised (B, C, T, H, W) cube.
    model = embedder.model()
    x = embedder.model_input(chip).data.reshape(4, 6, 22, 22)
    cube = torch.nn.functional.interpolate(torch.from_numpy(x), size=(224, 224), mode="bilinear",
                                           align_corners=False).transpose(0, 1)[None]
    lon, lat = centre_lonlat(chip)
    with torch.inference_mode():
        tokens = model.forward_features(cube, temporal_coords=torch.tensor([side["time"]], dtype=torch.float32),
                                        location_coords=torch.tensor([[lat, lon]], dtype=torch.float32))[-1]
    manual = tokens[0, 1:].reshape(4, 196, 32).mean(0).T.reshape(32, 14, 14).numpy()
    np.testing.assert_allclose(embedder.embed([chip])[0].values, manual, rtol=1e-4, atol=1e-5)


def test_the_frame_dates_not_the_window_drive_the_time_input(tiny_prithvi, tmp_path):
    early = dated_folder(tmp_path / "early", ["20170110", "20170216", "20170320", "20170805"])
    late = dated_folder(tmp_path / "late", ["20170115", "20170301", "20170325", "20170920"])  # same bins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a = get_embedding("prithvi", spatial=CELL, temporal=Y2017, imagery=early, model_config=tiny_prithvi)
        b = get_embedding("prithvi", spatial=CELL, temporal=Y2017, imagery=late, model_config=tiny_prithvi)
        blind = {**tiny_prithvi, "time": False}
        a_blind = get_embedding("prithvi", spatial=CELL, temporal=Y2017, imagery=early, model_config=blind)
        b_blind = get_embedding("prithvi", spatial=CELL, temporal=Y2017, imagery=late, model_config=blind)
    assert a.meta["frame_dates"] == ["2017-02-16", "2017-05-17", "2017-08-05", "2017-11-16"]
    assert b.meta["frame_dates"] == ["2017-03-01", "2017-05-17", "2017-09-20", "2017-11-16"]
    assert a.data.shape == (32,) and not np.allclose(a.data, b.data)
    np.testing.assert_array_equal(a_blind.data, b_blind.data)     # same pixels, only the dates moved
