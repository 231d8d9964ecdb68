"""Multi-frame chips (``sources.frames``) from a folder of real Sentinel-2 scenes at several dates.

The scenes are windows of the bundled Havelland L1C scene, written under names carrying
other dates with a per-date offset added to every value (so each date is recognisable),
one of them valid on its eastern half only.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window, from_bounds

from rsembed_db.errors import TileFailure
from rsembed_db.models.base import Embedder, FeatureMap, ModelDescription
from rsembed_db.producers.onthefly import OnTheFlyProducer
from rsembed_db.sources.counting import CountingSource
from rsembed_db.sources.frames import frame_bins, median_date
from rsembed_db.sources.local import LocalImagerySource
from rsembed_db.sources.quality import chip_report
from rsembed_db.specs import GridCell, SensorSpec, SpecError, TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for

HAVELLAND = Path(__file__).resolve().parents[1] / "examples/data/havelland_s2l1c_20170216_13band_10m.tif"
WINDOW = Window(400, 300, 96, 96)              # 960 m square of the real scene
CELL = GridCell("EPSG:32633", 334100, 5818100, 640)   # 64 x 64 px inside WINDOW
GRID = chip_grid_for(CELL, 10)
Y2017 = TemporalSpec.year(2017)
BANDS = ("B04", "B08", "B02")
SENSOR = SensorSpec("s2", BANDS)
# date -> offset added to the real values; the August scene is valid east of its middle only
SCENES = {"20170110": 0, "20170216": 100, "20170320": 200, "20170805": 300}
HALF = "20170805"


def write_scene(folder: Path, day: str, offset: int, east_only: bool | None = None) -> Path:
    """The real scene's WINDOW plus ``offset``, named for ``day``; valid on its eastern half
    only when ``east_only`` (default: the HALF date)."""
    with rasterio.open(HAVELLAND) as src:
        data = src.read(window=WINDOW).astype(np.uint16) + np.uint16(offset)
        profile = {**src.profile, "width": WINDOW.width, "height": WINDOW.height,
                   "transform": src.window_transform(WINDOW), "nodata": 0}
        descriptions = src.descriptions
    if day == HALF if east_only is None else east_only:
        data[:, :, : WINDOW.width // 2] = 0
    path = folder / f"S2A_MSIL1C_{day}T101031_havelland.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dated")
    for day, offset in SCENES.items():
        write_scene(root, day, offset)
    return root


@pytest.fixture(scope="module")
def base():
    """The real values of BANDS on GRID (float32, (C, H, W))."""
    with rasterio.open(HAVELLAND) as ds:
        names = list(ds.descriptions)
        window = from_bounds(*GRID.bounds, transform=ds.transform)
        return ds.read([names.index(b) + 1 for b in BANDS], window=window).astype(np.float32)


@pytest.fixture
def source(folder):
    src = LocalImagerySource(folder)
    yield src
    src.close()


def test_frame_bins_split_the_window_into_equal_whole_day_bins():
    bins = frame_bins(Y2017, 4)
    assert [(b.start, b.end) for b in bins] == [
        ("2017-01-01", "2017-04-02"), ("2017-04-02", "2017-07-02"), ("2017-07-02", "2017-10-01"),
        ("2017-10-01", "2018-01-01")]
    assert [b.start for b in frame_bins(TemporalSpec.range("2020-06-01", "2020-07-01"), 3)] == [
        "2020-06-01", "2020-06-11", "2020-06-21"]
    assert frame_bins(Y2017, 1) == [TemporalSpec.range("2017-01-01", "2018-01-01")]
    with pytest.raises(SpecError, match="frames: a window of 3 day"):
        frame_bins(TemporalSpec.range("2017-01-01", "2017-01-04"), 4)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(SpecError, match="frames"):
            frame_bins(Y2017, bad)


def test_median_date():
    d = dt.date
    assert median_date([d(2017, 3, 20), d(2017, 1, 10), d(2017, 2, 16)]) == d(2017, 2, 16)
    assert median_date([d(2017, 1, 10), d(2017, 1, 13)]) == d(2017, 1, 11)
    assert median_date([d(2017, 8, 5)]) == d(2017, 8, 5)


def test_each_bin_is_its_own_composite_and_empty_bins_repeat_the_window(source, base):
    chip = source.fetch(GRID, Y2017, SENSOR, frames=4)
    assert chip.data.shape == (4, 3, 64, 64) and chip.data.dtype == np.float32
    assert chip.bands == BANDS and chip.valid.shape == (64, 64) and chip.valid.all()
    assert np.isfinite(chip.data).all()
    # bin 0 (Jan-Mar): median of +0, +100, +200
    np.testing.assert_array_equal(chip.data[0], base + 100)
    # bin 2 (Jul-Sep): the August scene alone, valid on its eastern half; fill elsewhere
    august = np.asarray(chip.meta["frame_scenes"][2])
    assert len(august) == 1 and HALF in august[0]
    valid2 = chip.data[2, 0] != SENSOR.fill_value
    np.testing.assert_array_equal(chip.data[2][:, valid2], (base + 300)[:, valid2])
    assert (chip.data[2][:, ~valid2] == SENSOR.fill_value).all()
    assert chip.meta["frame_valid_fraction"][2] == pytest.approx(valid2.mean()) and 0.3 < valid2.mean() < 0.7
    # bins 1 and 3 are empty: the whole-window median (+150 where August is valid, else +100)
    whole = np.where(valid2, base + 150, base + 100)
    for i in (1, 3):
        np.testing.assert_array_equal(chip.data[i], whole)
    meta = chip.meta
    assert meta["frame_bins"] == [["2017-01-01", "2017-04-02"], ["2017-04-02", "2017-07-02"],
                                  ["2017-07-02", "2017-10-01"], ["2017-10-01", "2018-01-01"]]
    assert meta["frame_backfilled"] == [False, True, False, True]
    bins = frame_bins(Y2017, 4)
    assert meta["frame_dates"] == ["2017-02-16", bins[1].midpoint.isoformat(), "2017-08-05",
                                   bins[3].midpoint.isoformat()]
    assert (meta["n_frames"], meta["n_frames_requested"], meta["n_distinct_frames"],
            meta["n_backfilled_frames"]) == (4, 4, 2, 2)
    assert meta["dates"] == ["2017-01-10", "2017-02-16", "2017-03-20", "2017-08-05"]
    assert len(meta["scenes"]) == 4 and meta["input_time"] == Y2017.midpoint.isoformat()
    assert meta["covered_fraction"] == 1.0 and meta["source"] == "local" and meta["composite"] == "median"


def test_a_frame_equals_a_single_frame_fetch_of_its_bin(source):
    chip = source.fetch(GRID, Y2017, SENSOR, frames=4)
    for i, window in enumerate(frame_bins(Y2017, 4)):
        if not chip.meta["frame_backfilled"][i]:
            single = source.fetch(GRID, window, SENSOR)
            np.testing.assert_array_equal(chip.data[i], single.data)
            assert chip.meta["frame_scenes"][i] == single.meta["scenes"]


def test_one_frame_is_the_composite_it_always_was(source, base):
    chip = source.fetch(GRID, Y2017, SENSOR, frames=1)
    default = source.fetch(GRID, Y2017, SENSOR)
    assert chip.data.shape == (3, 64, 64)
    np.testing.assert_array_equal(chip.data, default.data)
    assert chip.meta == default.meta and "frame_bins" not in chip.meta
    august_valid = source.fetch(GRID, frame_bins(Y2017, 4)[2], SENSOR).valid
    assert august_valid[:, 38:].all() and not august_valid[:, :38].any()   # WINDOW's eastern half
    np.testing.assert_array_equal(chip.data, np.where(august_valid, base + 150, base + 100))


def test_mosaic_frames_take_the_latest_scene_of_their_bin(source, base):
    chip = source.fetch(GRID, Y2017, SensorSpec("s2", BANDS, composite="mosaic"), frames=4)
    np.testing.assert_array_equal(chip.data[0], base + 200)
    assert chip.meta["composite"] == "mosaic"


def test_validity_is_any_real_frame(source):
    summer = TemporalSpec.range("2017-02-01", "2017-09-01")   # bins: Feb-May (2 scenes), May-Sep (August)
    chip = source.fetch(GRID, summer, SENSOR, frames=2)
    assert chip.meta["frame_backfilled"] == [False, False] and chip.valid.all()
    only_august = source.fetch(GRID, TemporalSpec.range("2017-07-01", "2017-09-01"), SENSOR, frames=2)
    assert only_august.meta["frame_backfilled"] == [True, False]
    assert 0.3 < only_august.valid.mean() < 0.7       # the August scene's half: the back-fill adds nothing
    np.testing.assert_array_equal(only_august.data[0], only_august.data[1])


def test_no_imagery_in_the_window_fails_the_tile_and_bad_counts_fail_early(source):
    with pytest.raises(TileFailure, match="no scene is dated in window"):
        source.fetch(GRID, TemporalSpec.year(2019), SENSOR, frames=4)
    with pytest.raises(SpecError, match="frames"):
        source.fetch(GRID, TemporalSpec.range("2017-01-01", "2017-01-03"), SENSOR, frames=3)


def test_counting_source_shares_fetches_per_frame_count(folder):
    counted = CountingSource(LocalImagerySource(folder), cache_size=4)
    four = counted.fetch(GRID, Y2017, SENSOR, frames=4)
    again = counted.fetch(GRID, Y2017, SENSOR, frames=4)
    one = counted.fetch(GRID, Y2017, SENSOR)
    assert again.data.shape == (4, 3, 64, 64) and np.array_equal(four.data, again.data)
    assert one.data.shape == (3, 64, 64)
    assert counted.stats.snapshot()["done"] == 2 and counted.stats.snapshot()["cached"] == 1
    counted.close()


def test_quality_report_covers_every_frame(source):
    report = chip_report(source.fetch(GRID, Y2017, SENSOR, frames=4), SENSOR)
    assert report["shape"] == [4, 3, 64, 64] and set(report["band_stats"]) == set(BANDS)
    assert report["valid_fraction"] == 1.0


class FrameMeans(Embedder):
    """Per pixel and band, the mean over frames: a (T, C, H, W) chip -> (C, H, W) features."""

    name = "frame_means"

    def describe(self) -> ModelDescription:
        return ModelDescription(self.name, 3, "on_the_fly", BANDS, 10.0, frames=self.config.get("frames", 4))

    def default_sensor(self) -> SensorSpec:
        return SENSOR

    def embed(self, chips):
        return [FeatureMap(c.data.mean(axis=0), c.valid, c.grid.transform, c.grid.crs) for c in chips]


def test_the_producer_asks_for_the_model_frames_warns_and_keeps_the_frame_meta(folder, base):
    producer = OnTheFlyProducer(FrameMeans(), LocalImagerySource(folder))
    request = producer.request(CELL, Y2017)
    with pytest.warns(UserWarning, match=r"2 of 4 frame bins have no imagery.*2017-04-02\.\.2017-07-02"):
        prepared = producer.prepare(request)
    assert prepared.payload.data.shape == (4, 3, 64, 64)
    [record] = producer.finish([prepared])
    meta = record.meta
    assert meta["frame_backfilled"] == [False, True, False, True] and meta["n_distinct_frames"] == 2
    assert meta["frame_dates"][0] == "2017-02-16" and len(meta["frame_bins"]) == 4
    assert "source_frame_bins" not in meta and meta["source_dates"][0] == "2017-01-10"
    np.testing.assert_allclose(record.vector, prepared.payload.data.mean(axis=(0, 2, 3)), rtol=1e-6)

    single = OnTheFlyProducer(FrameMeans(frames=1), LocalImagerySource(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chip = single.prepare(single.request(CELL, Y2017)).payload
    assert chip.data.shape == (3, 64, 64) and "frame_bins" not in chip.meta


def test_inspect_fetches_the_frames_a_multi_temporal_model_receives(folder, tmp_path):
    from rsembed_db.inspect import inspect_gee_patch

    report = inspect_gee_patch(spatial=CELL, temporal=Y2017, model="galileo", model_config={"num_frames": 4},
                               imagery=folder, out_dir=tmp_path, name="series", return_array=True)
    assert report["report"]["shape"] == [4, 10, 64, 64] and report["array_chw"].shape == (4, 10, 64, 64)
    assert report["meta"]["frame_backfilled"] == [False, True, False, True]
    assert (tmp_path / "series.png").is_file() and report["model"]["name"] == "galileo"
