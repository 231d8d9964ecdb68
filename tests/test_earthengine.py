"""The Earth Engine source against a fake ``ee`` module (no network, no credentials)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rsembed_db.api import get_embedding
from rsembed_db.errors import TileFailure
from rsembed_db.sources.counting import CountingSource
from rsembed_db.sources.earthengine import EarthEngineSource
from rsembed_db.sources.earthengine_collections import find_collection
from rsembed_db.sources.factory import make_source
from rsembed_db.specs import GridCell, PointBuffer, SensorSpec, SpecError, TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for
from tests.helpers.fake_ee import FakeEE

S2 = "COPERNICUS/S2_SR_HARMONIZED"
JUNE = TemporalSpec.range("2020-06-01", "2020-07-01")
CELL = GridCell("EPSG:32633", 500000, 5800000, 40)          # 4 x 4 px at 10 m
GRID = chip_grid_for(CELL, 10)
S2_BANDS = ("B2", "B3", "B4", "B8")


def ramp(k: float):
    """Scene values: distinct per band and scene, varying with the pixel centre."""
    return lambda band, x, y: 1000 * S2_BANDS.index(band) + (x - 500000) + (5800040 - y) / 100 + k


def left_half(x, y):
    return x < 500020


def s2_scenes():
    return [
        {"id": "a", "date": "2020-06-05", "properties": {"CLOUDY_PIXEL_PERCENTAGE": 10},
         "bands": S2_BANDS, "value": ramp(0)},
        {"id": "cloudy", "date": "2020-06-20", "properties": {"CLOUDY_PIXEL_PERCENTAGE": 50},
         "bands": S2_BANDS, "value": ramp(500)},
        {"id": "end", "date": "2020-07-01", "properties": {"CLOUDY_PIXEL_PERCENTAGE": 0},
         "bands": S2_BANDS, "value": ramp(700)},
        {"id": "b", "date": "2020-06-25", "properties": {"CLOUDY_PIXEL_PERCENTAGE": 5},
         "bands": S2_BANDS, "value": ramp(100), "footprint": left_half},
    ]


def source(fake: FakeEE, **kwargs) -> EarthEngineSource:
    sleeps: list[float] = []
    src = EarthEngineSource("my-project", ee=fake, sleep=sleeps.append, **kwargs)
    src.sleeps = sleeps
    return src


def centres(grid):
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    t = grid.transform
    return t.c + cols * t.a, t.f + rows * t.e


def expected(bands, scenes_used, composite, grid=GRID):
    x, y = centres(grid)
    out = []
    for band in bands:
        layers = []
        for scene in scenes_used:
            inside = scene.get("footprint", lambda x, y: np.ones(x.shape, bool))(x, y)
            layers.append(np.where(inside, scene["value"](band, x, y), np.nan))
        stack = np.stack(layers)
        if composite == "median":
            out.append(np.nanmedian(stack, axis=0))
        else:
            top = stack[0]
            for layer in stack[1:]:
                top = np.where(np.isfinite(layer), layer, top)
            out.append(top)
    return np.stack(out).astype(np.float32)


def test_sentinel2_median_filters_window_clouds_and_grid():
    fake = FakeEE({S2: s2_scenes()})
    chip = source(fake).fetch(GRID, JUNE, SensorSpec(S2, ("RED", "GREEN", "B02"), cloudy_pct=30))
    assert fake.initialized == ["my-project"]
    assert ("ImageCollection", S2) in fake.log
    assert ("filterDate", "2020-06-01", "2020-07-01") in fake.log        # end excluded
    assert ("filter", "CLOUDY_PIXEL_PERCENTAGE<=30.0") in fake.log
    assert ("select", ["B4", "B3", "B2"]) in fake.log                    # aliases -> EE names
    assert ("resample", "bilinear") in fake.log and ("median",) in fake.log
    [request] = fake.requests
    assert request["grid"] == {
        "dimensions": {"width": 4, "height": 4},
        "affineTransform": {"scaleX": 10.0, "shearX": 0.0, "translateX": 500000.0,
                            "shearY": 0.0, "scaleY": -10.0, "translateY": 5800040.0},
        "crsCode": "EPSG:32633"}
    assert request["fileFormat"] == "NUMPY_NDARRAY"
    assert request["bandIds"] == ["B4", "B3", "B2", "rsembed_valid"]
    used = [s for s in s2_scenes() if s["id"] in ("a", "b")]
    assert np.allclose(chip.data, expected(("B4", "B3", "B2"), used, "median"))
    assert chip.valid.all() and chip.bands == ("RED", "GREEN", "B02")
    assert chip.meta["scenes"] == ["a", "b"] and chip.meta["dates"] == ["2020-06-05", "2020-06-25"]


def test_mosaic_puts_the_latest_scene_on_top():
    fake = FakeEE({S2: s2_scenes()})
    chip = source(fake).fetch(GRID, JUNE, SensorSpec(S2, ("B04",), composite="mosaic"))
    assert ("sort", "system:time_start") in fake.log and ("mosaic",) in fake.log
    used = [s for s in s2_scenes() if s["id"] in ("a", "b")]
    assert np.allclose(chip.data, expected(("B4",), used, "mosaic"))


def test_pixels_no_scene_covers_get_the_fill_value():
    scenes = [dict(s2_scenes()[3], id="only-left")]
    chip = source(FakeEE({S2: scenes})).fetch(GRID, JUNE, SensorSpec(S2, ("B04",), fill_value=-9))
    assert chip.valid[:, :2].all() and not chip.valid[:, 2:].any()
    assert (chip.data[:, :, 2:] == -9).all()
    assert chip.meta["covered_fraction"] == 0.5


def test_empty_window_is_a_tile_failure():
    with pytest.raises(TileFailure, match="no COPERNICUS/S2_SR_HARMONIZED scene"):
        source(FakeEE({S2: s2_scenes()})).fetch(
            GRID, TemporalSpec.range("2021-01-01", "2021-02-01"), SensorSpec(S2, ("B04",)))


def s1_scenes(collection_value: float):
    def scene(id_, date, pols, orbit):
        return {"id": id_, "date": date, "bands": ("VV", "VH"),
                "properties": {"instrumentMode": "IW", "transmitterReceiverPolarisation": pols,
                               "orbitProperties_pass": orbit},
                "value": lambda band, x, y: np.full(x.shape, collection_value + (band == "VH"))}
    return [scene("asc", "2020-06-03", ["VV", "VH"], "ASCENDING"),
            scene("desc", "2020-06-04", ["VV", "VH"], "DESCENDING"),
            scene("vv-only", "2020-06-05", ["VV"], "ASCENDING")]


@pytest.mark.parametrize("linear, collection, value", [(True, "COPERNICUS/S1_GRD_FLOAT", 0.05),
                                                        (False, "COPERNICUS/S1_GRD", -13.0)])
def test_sentinel1_mode_polarisation_orbit_and_scale(linear, collection, value):
    fake = FakeEE({"COPERNICUS/S1_GRD_FLOAT": s1_scenes(0.05), "COPERNICUS/S1_GRD": s1_scenes(-13.0)})
    sensor = SensorSpec("s1", ("VV", "VH"), orbit="ASCENDING", use_float_linear=linear)
    chip = source(fake).fetch(GRID, JUNE, sensor)
    assert ("ImageCollection", collection) in fake.log
    for text in ("instrumentMode==IW", "VV in transmitterReceiverPolarisation",
                 "VH in transmitterReceiverPolarisation", "orbitProperties_pass==ASCENDING"):
        assert ("filter", text) in fake.log
    assert not any(entry[0] == "filter" and "CLOUD" in str(entry) for entry in fake.log)
    assert chip.meta["scenes"] == ["asc"]
    assert np.allclose(chip.data[0], value) and np.allclose(chip.data[1], value + 1)


def test_landsat_8_and_9_merged_and_scaled_to_reflectance_x_10000():
    def scene(id_, date):
        return {"id": id_, "date": date, "properties": {"CLOUD_COVER": 3}, "bands": ("SR_B4", "SR_B5"),
                "value": lambda band, x, y: np.full(x.shape, 10000.0)}
    fake = FakeEE({"LANDSAT/LC08/C02/T1_L2": [scene("l8", "2020-06-02")],
                   "LANDSAT/LC09/C02/T1_L2": [scene("l9", "2020-06-10")]})
    chip = source(fake).fetch(chip_grid_for(CELL, 30), JUNE, SensorSpec("landsat", ("RED", "NIR"), scale_m=30))
    assert ("merge", "LANDSAT/LC09/C02/T1_L2") in fake.log
    assert ("filter", "CLOUD_COVER<=30.0") in fake.log
    assert ("select", ["SR_B4", "SR_B5"]) in fake.log
    assert np.allclose(chip.data, (10000 * 0.0000275 - 0.2) * 10000)    # 750
    assert chip.meta["scenes"] == ["l8", "l9"]


def test_band_names_resolve_per_family():
    assert find_collection("s2").band_name("nir narrow") == "B8A"
    assert find_collection("landsat").band_name("B4") == "SR_B4"
    assert find_collection("landsat").band_name("swir 1") == "SR_B6"
    with pytest.raises(SpecError, match="bands.*no band 'B8A'"):
        find_collection("landsat").band_name("B8A")
    with pytest.raises(SpecError, match="collection"):
        find_collection("MODIS/061/MOD09GA")


def test_quota_errors_retried_with_exponential_backoff():
    fake = FakeEE({S2: s2_scenes()}, quota_failures=3)
    src = source(fake, backoff_s=0.5)
    counted = CountingSource(src)
    chip = counted.fetch(GRID, JUNE, SensorSpec(S2, ("B04",)))
    assert chip.valid.all()
    assert src.sleeps == [0.5, 1.0, 2.0]
    assert counted.stats.snapshot() == {"planned": 1, "done": 1, "failed": 0, "cached": 0, "retries": 3}


def test_quota_errors_past_the_retry_budget_fail_the_tile():
    src = source(FakeEE({S2: s2_scenes()}, quota_failures=10), retries=2, backoff_s=1, max_backoff_s=1.5)
    with pytest.raises(TileFailure, match="after 2 retries.*Too many concurrent aggregations"):
        src.fetch(GRID, JUNE, SensorSpec(S2, ("B04",)))
    assert src.sleeps == [1, 1.5]


def test_oversized_requests_split_and_stitched_exactly():
    grid = chip_grid_for(GridCell("EPSG:32633", 500000, 5800000, 370), 10)     # 37 x 37 px
    sensor = SensorSpec(S2, S2_BANDS)
    whole = source(FakeEE({S2: s2_scenes()})).fetch(grid, JUNE, sensor)
    limit = 5 * 4 * 200                       # 5 float32 bands: 200 px per request
    fake = FakeEE({S2: s2_scenes()}, max_request_bytes=limit)
    split = source(fake, max_request_bytes=limit).fetch(grid, JUNE, sensor)
    assert len(fake.requests) == len(source(fake, max_request_bytes=limit).plan_blocks(37, 37, 5)) > 1
    sizes = [r["grid"]["dimensions"]["width"] * r["grid"]["dimensions"]["height"] for r in fake.requests]
    assert max(sizes) <= 200 and sum(sizes) == 37 * 37
    assert np.array_equal(split.data, whole.data) and np.array_equal(split.valid, whole.valid)
    assert split.meta["requests"] == len(fake.requests)


def test_a_block_refused_as_too_large_is_halved_again():
    grid = chip_grid_for(GridCell("EPSG:32633", 500000, 5800000, 160), 10)     # 16 x 16 px
    sensor = SensorSpec(S2, ("B04",))
    fake = FakeEE({S2: s2_scenes()}, max_request_bytes=2 * 4 * 64)         # server allows 64 px
    chip = source(fake).fetch(grid, JUNE, sensor)                          # source thinks 48 MB
    assert chip.meta["requests"] == 4 and len(fake.requests) == 1 + 2 + 4
    assert np.array_equal(chip.data, source(FakeEE({S2: s2_scenes()})).fetch(grid, JUNE, sensor).data)


def test_concurrency_cap():
    fake = FakeEE({S2: s2_scenes()}, delay_s=0.02)
    src = source(fake, max_concurrent=2)
    cells = [chip_grid_for(GridCell("EPSG:32633", 500000 + 40 * i, 5800000, 40), 10) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda g: src.fetch(g, JUNE, SensorSpec(S2, ("B04",))), cells))
    assert fake.max_in_flight == 2


def test_missing_credentials_name_the_command_and_the_project_variable():
    fake = FakeEE({}, init_error="Please authorize access to your Earth Engine account.")
    with pytest.raises(SpecError) as err:
        source(fake).fetch(GRID, JUNE, SensorSpec(S2, ("B04",)))
    text = str(err.value)
    assert text.startswith("source:") and "earthengine authenticate" in text
    assert "RSEMBED_EE_PROJECT" in text and "EE_PROJECT" in text


def test_project_from_environment(monkeypatch):
    monkeypatch.setenv("RSEMBED_EE_PROJECT", "env-project")
    fake = FakeEE({S2: s2_scenes()})
    EarthEngineSource(ee=fake).fetch(GRID, JUNE, SensorSpec(S2, ("B04",)))
    assert fake.initialized == ["env-project"]


def test_shared_fetches_are_counted_and_done_once():
    fake = FakeEE({S2: s2_scenes()})
    counted = CountingSource(source(fake), cache_size=4)
    sensor = SensorSpec(S2, ("B04",))
    first = counted.fetch(GRID, JUNE, sensor)
    again = counted.fetch(chip_grid_for(CELL, 10), JUNE, sensor)
    assert np.array_equal(first.data, again.data) and len(fake.requests) == 1
    with pytest.raises(TileFailure):
        counted.fetch(GRID, TemporalSpec.range("2021-01-01", "2021-02-01"), sensor)
    assert counted.stats.snapshot() == {"planned": 3, "done": 1, "failed": 1, "cached": 1, "retries": 0}


def test_gee_source_string_uses_the_ee_module(monkeypatch):
    fake = FakeEE({S2: s2_scenes()})
    monkeypatch.setitem(sys.modules, "ee", fake)
    counted = make_source("gee:cli-project")
    assert counted.name == "gee"
    counted.fetch(GRID, JUNE, SensorSpec(S2, ("B04",)))
    assert fake.initialized == ["cli-project"]


def test_get_embedding_from_earth_engine(monkeypatch):
    fake = FakeEE({S2: [dict(s, bands=S2_BANDS) for s in s2_scenes()]})
    monkeypatch.setitem(sys.modules, "ee", fake)
    emb = get_embedding("mosaiks", spatial=PointBuffer(15.0, 52.3, 30), temporal=JUNE, source="gee:p",
                        sensor=SensorSpec(S2, ("B02", "B03", "B04", "B08")),
                        model_config={"num_filters": 4, "stats": "s2_l2a"})
    assert emb.data.shape == (8,) and np.isfinite(emb.data).all()
    assert emb.meta["source"] == "gee" and emb.meta["source_scenes"] == ["a", "b"]


def test_frames_are_one_fetch_per_bin_with_the_window_as_back_fill():
    fake = FakeEE({S2: s2_scenes()})
    sensor = SensorSpec(S2, ("B04", "B08"), cloudy_pct=30)
    chip = source(fake).fetch(GRID, JUNE, sensor, frames=3)     # bins of 10 days from 2020-06-01
    assert chip.data.shape == (3, 2, 4, 4)
    assert ("filterDate", "2020-06-01", "2020-06-11") in fake.log
    assert ("filterDate", "2020-06-11", "2020-06-21") in fake.log
    assert ("filterDate", "2020-06-21", "2020-07-01") in fake.log
    assert ("filterDate", "2020-06-01", "2020-07-01") in fake.log      # the back-fill: bin 1 only had "cloudy"
    scenes = {s["id"]: s for s in s2_scenes()}
    np.testing.assert_allclose(chip.data[0], expected(("B4", "B8"), [scenes["a"]], "median"))
    np.testing.assert_allclose(chip.data[1], expected(("B4", "B8"), [scenes["a"], scenes["b"]], "median"))
    b_only = expected(("B4", "B8"), [scenes["b"]], "median")
    np.testing.assert_allclose(chip.data[2][:, :, :2], b_only[:, :, :2])   # "b" covers the left half
    assert (chip.data[2][:, :, 2:] == sensor.fill_value).all()
    assert chip.valid.all()                                               # bin 0 covers every pixel
    meta = chip.meta
    assert meta["frame_backfilled"] == [False, True, False]
    assert meta["frame_dates"] == ["2020-06-05", "2020-06-16", "2020-06-25"]
    assert meta["frame_valid_fraction"] == [1.0, 1.0, 0.5] and meta["frame_scenes"] == [["a"], ["a", "b"], ["b"]]
    assert meta["scenes"] == ["a", "b"] and meta["collection"] == S2 and meta["requests"] == 3
    assert (meta["n_distinct_frames"], meta["n_backfilled_frames"]) == (2, 1)
    single = source(FakeEE({S2: s2_scenes()})).fetch(GRID, TemporalSpec.range("2020-06-21", "2020-07-01"), sensor)
    np.testing.assert_array_equal(chip.data[2], single.data)


def test_one_frame_through_the_counting_source_is_unchanged():
    sensor = SensorSpec(S2, ("B04",))
    plain = source(FakeEE({S2: s2_scenes()})).fetch(GRID, JUNE, sensor)
    counted = CountingSource(source(FakeEE({S2: s2_scenes()})), cache_size=2)
    np.testing.assert_array_equal(counted.fetch(GRID, JUNE, sensor, frames=1).data, plain.data)
    assert counted.fetch(GRID, JUNE, sensor, frames=2).data.shape == (2, 1, 4, 4)
    assert counted.stats.snapshot()["done"] == 2
