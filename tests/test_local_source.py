"""LocalImagerySource against the bundled Havelland scene and small GeoTIFFs written here."""

from __future__ import annotations

import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.transform import rowcol
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window, from_bounds

from rsembed_db.errors import TileFailure
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.local import LocalImagerySource
from rsembed_db.sources.scene_dates import date_from_name
from rsembed_db.specs import GridCell, PointBuffer, SensorSpec, SpecError, TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for

HAVELLAND = Path(__file__).resolve().parents[1] / "examples/data/havelland_s2l1c_20170216_13band_10m.tif"
Y2017 = TemporalSpec.year(2017)
RGBN = SensorSpec("s2", ("B04", "B02", "NIR"))

# Small scenes: 4 x 4 px at 10 m in EPSG:32633, exactly one 40 m GridCell.
LEFT, TOP = 500000.0, 5800040.0
SMALL_CELL = GridCell("EPSG:32633", LEFT, TOP - 40, 40)
BASE = np.arange(16, dtype=np.uint16).reshape(4, 4)


def write_tif(path: Path, data: np.ndarray, *, descriptions=("B02", "B03"), nodata=None,
              tags=None, left=LEFT, top=TOP) -> Path:
    """Write a (C, H, W) GeoTIFF at 10 m in EPSG:32633."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs="EPSG:32633", nodata=nodata,
                       transform=Affine(10, 0, left, 0, -10, top)) as ds:
        ds.write(data)
        for i, name in enumerate(descriptions or (), start=1):
            ds.set_band_description(i, name)
        if tags:
            ds.update_tags(**tags)
    return path


def small_scene(path: Path, **kwargs) -> Path:
    return write_tif(path, np.stack([BASE + 1, BASE + 101]), **kwargs)


@pytest.fixture(scope="module")
def havelland():
    with rasterio.open(HAVELLAND) as ds:
        yield ds


@pytest.fixture(scope="module")
def source():
    src = LocalImagerySource(HAVELLAND)
    yield src
    src.close()


def direct_read(ds, bands, grid) -> np.ndarray:
    window = from_bounds(*grid.bounds, transform=ds.transform)
    return ds.read(list(bands), window=window).astype(np.float32)


# (a) band order and exact values on a grid aligned with the scene
def test_band_order_matches_direct_read(source, havelland):
    grid = chip_grid_for(GridCell("EPSG:32633", 335000, 5816000, 1280), 10)
    chip = source.fetch(grid, Y2017, RGBN)
    assert chip.data.shape == (3, 128, 128) and chip.data.dtype == np.float32
    assert chip.bands == ("B04", "B02", "NIR")
    expected = direct_read(havelland, (4, 2, 8), grid)
    for plane, want in zip(chip.data, expected):
        assert np.array_equal(plane, want)
    assert chip.valid.all()
    assert chip.meta == {
        "source": "local", "scenes": [str(HAVELLAND)], "dates": ["2017-02-16"],
        "composite": "median", "covered_fraction": 1.0, "input_time": "2017-07-02",
    }


# (b) the pixel under a lon/lat point
def test_pixel_at_lonlat(source, havelland):
    lon, lat = 12.6092, 52.4898
    grid = chip_grid_for(PointBuffer(lon, lat, 500), 10)
    assert grid.crs == "EPSG:32633"
    chip = source.fetch(grid, Y2017, SensorSpec("s2", ("B04", "B03", "B02")))
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(lon, lat)
    row, col = havelland.index(x, y)
    want = havelland.read([4, 3, 2], window=Window(col, row, 1, 1))[:, 0, 0]
    chip_row, chip_col = rowcol(grid.transform, x, y)
    assert np.array_equal(chip.data[:, chip_row, chip_col], want.astype(np.float32))


# (c) reprojection into other CRSs equals rasterio's own warp of the full array
@pytest.mark.parametrize("cell", [
    GridCell("EPSG:32632", 744000, 5820000, 1280),   # inside the scene
    GridCell("EPSG:32632", 736000, 5822000, 1280),   # across its western edge
    GridCell("EPSG:3035", 4497600, 3267000, 1280),
])
def test_reprojection_matches_rasterio(source, havelland, cell):
    grid = chip_grid_for(cell, 10)
    chip = source.fetch(grid, Y2017, SensorSpec("s2", ("B04", "B02", "NIR"), fill_value=-1.0))
    want = np.full(chip.data.shape, np.nan, dtype=np.float32)
    reproject(havelland.read([4, 2, 8]), want, src_transform=havelland.transform, src_crs=havelland.crs,
              dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
              resampling=Resampling.bilinear)
    covered = np.isfinite(want).all(axis=0)
    assert np.array_equal(chip.valid, covered)
    assert np.allclose(chip.data[:, covered], want[:, covered], rtol=0, atol=1e-3)
    assert (chip.data[:, ~covered] == -1.0).all()
    assert chip.meta["covered_fraction"] == pytest.approx(covered.mean())


# (d) the window is half-open [start, end)
def test_window_boundary(source):
    grid = chip_grid_for(GridCell("EPSG:32633", 335000, 5816000, 640), 10)
    assert source.fetch(grid, TemporalSpec.range("2017-02-16", "2017-02-17"), RGBN).meta["dates"] == ["2017-02-16"]
    for start, end in (("2017-02-01", "2017-02-16"), ("2017-02-17", "2017-03-01")):
        with pytest.raises(TileFailure, match=re.escape(
                f"no scene is dated in window {start}..{end}; the 1 scene(s) scanned are dated 2017-02-16")):
            source.fetch(grid, TemporalSpec.range(start, end), RGBN)


# (e) tiles outside and partly inside the scene
def test_tile_outside_scene(source):
    grid = chip_grid_for(GridCell("EPSG:32633", 400000, 5818000, 1280), 10)
    with pytest.raises(TileFailure, match=re.escape(
            "the tile lies outside the footprint of every scene in window 2017-01-01..2018-01-01")):
        source.fetch(grid, Y2017, RGBN)


def test_tile_partly_covered(source, havelland):
    # The scene ends at x = 345360: 36 of the 128 columns lie inside it.
    grid = chip_grid_for(GridCell("EPSG:32633", 345000, 5816000, 1280), 10)
    chip = source.fetch(grid, Y2017, SensorSpec("s2", ("B04", "B02", "NIR"), fill_value=-1.0))
    assert chip.meta["covered_fraction"] == 36 * 128 / (128 * 128)
    assert chip.valid[:, :36].all() and not chip.valid[:, 36:].any()
    assert np.array_equal(chip.data[:, :, :36], direct_read(havelland, (4, 2, 8), grid))
    assert (chip.data[:, :, 36:] == -1.0).all()


def test_tile_on_nodata_only_fails(tmp_path):
    data = np.zeros((2, 4, 4), dtype=np.uint16)
    src = LocalImagerySource(write_tif(tmp_path / "empty_20200101.tif", data, nodata=0))
    with pytest.raises(TileFailure, match="tile lies outside all imagery"):
        src.fetch(chip_grid_for(SMALL_CELL, 10), TemporalSpec.year(2020), SensorSpec("s2", ("B02",)))


# (f) median and mosaic composites with nodata
@pytest.fixture()
def three_scenes(tmp_path):
    """Jan, Jun, Oct 2020 scenes (nodata 0) plus a 2021 scene outside the window."""
    b_gap = np.zeros((4, 4), bool)
    b_gap[:2, :2] = True   # June lacks the top-left 2 x 2
    c_gap = np.zeros((4, 4), bool)
    c_gap[3, :] = True     # October lacks the bottom row
    a_gap = np.zeros((4, 4), bool)
    a_gap[3, 3] = True     # nobody has the bottom-right pixel
    scenes = {"s_20200110.tif": (10, 20, a_gap), "s_20200615.tif": (40, 80, b_gap | a_gap),
              "s_20201020.tif": (20, 50, c_gap), "s_20210101.tif": (900, 900, a_gap)}
    for name, (v1, v2, gap) in scenes.items():
        data = np.stack([BASE + v1, BASE + v2]).astype(np.uint16)
        data[:, gap] = 0
        write_tif(tmp_path / name, data, nodata=0)
    return tmp_path, b_gap & ~a_gap, c_gap & ~a_gap, a_gap


def test_median_composite(three_scenes):
    folder, b_gap, c_gap, none = three_scenes
    sensor = SensorSpec("s2", ("B02", "B03"), fill_value=-5.0, composite="median")
    chip = LocalImagerySource(folder).fetch(chip_grid_for(SMALL_CELL, 10), TemporalSpec.year(2020), sensor)
    base = BASE.astype(np.float32)
    want1 = np.select([none, b_gap, c_gap], [-5.0, 15 + base, 25 + base], 20 + base)
    want2 = np.select([none, b_gap, c_gap], [-5.0, 35 + base, 50 + base], 50 + base)
    assert np.array_equal(chip.data, np.stack([want1, want2]).astype(np.float32))
    assert np.array_equal(chip.valid, ~none)
    assert chip.meta["dates"] == ["2020-01-10", "2020-06-15", "2020-10-20"]
    assert chip.meta["scenes"] == [str(folder / n) for n in ("s_20200110.tif", "s_20200615.tif", "s_20201020.tif")]
    assert chip.meta["covered_fraction"] == 15 / 16
    assert chip.meta["composite"] == "median" and chip.meta["input_time"] == "2020-07-02"


def test_mosaic_composite(three_scenes):
    folder, _, c_gap, none = three_scenes
    sensor = SensorSpec("s2", ("B02", "B03"), fill_value=-5.0, composite="mosaic")
    chip = LocalImagerySource(folder).fetch(chip_grid_for(SMALL_CELL, 10), TemporalSpec.year(2020), sensor)
    base = BASE.astype(np.float32)
    # October on top; its missing bottom row comes from June; nothing at the corner.
    want1 = np.select([none, c_gap], [-5.0, 40 + base], 20 + base)
    want2 = np.select([none, c_gap], [-5.0, 80 + base], 50 + base)
    assert np.array_equal(chip.data, np.stack([want1, want2]).astype(np.float32))
    assert np.array_equal(chip.valid, ~none)
    assert chip.meta["composite"] == "mosaic"


# (g) acquisition dates
def scene_date(path: Path, **kwargs) -> dt.date:
    return LocalImagerySource(path, **kwargs).scenes[0].date


@pytest.mark.parametrize("tag, value", [
    ("ACQUISITION_DATE", "2019-05-04"),
    ("DATE_ACQUIRED", "2019-05-04"),
    ("SENSING_TIME", "2019-05-04T10:20:30.123Z"),
])
def test_date_from_tag_beats_file_name(tmp_path, tag, value):
    path = small_scene(tmp_path / "scene_20200101.tif", tags={tag: value})
    assert scene_date(path) == dt.date(2019, 5, 4)


def test_tiff_write_time_is_the_last_resort(tmp_path):
    tags = {"TIFFTAG_DATETIME": "2019:05:04 10:20:30"}
    assert scene_date(small_scene(tmp_path / "scene_20200101.tif", tags=tags)) == dt.date(2020, 1, 1)
    assert scene_date(small_scene(tmp_path / "scene.tif", tags=tags)) == dt.date(2019, 5, 4)


def test_tag_order(tmp_path):
    tags = {"TIFFTAG_DATETIME": "2021:01:01 00:00:00", "SENSING_TIME": "2019-05-04T10:00:00Z"}
    assert scene_date(small_scene(tmp_path / "scene.tif", tags=tags)) == dt.date(2019, 5, 4)


def test_date_argument_beats_tags(tmp_path):
    path = small_scene(tmp_path / "scene_20200101.tif", tags={"ACQUISITION_DATE": "2019-05-04"})
    assert scene_date(path, date="2018-03-01") == dt.date(2018, 3, 1)
    assert scene_date(path, date=dt.date(2018, 3, 2)) == dt.date(2018, 3, 2)


@pytest.mark.parametrize("name, day", [
    ("S2A_MSIL1C_20190504T101031_N0207_R022.tif", dt.date(2019, 5, 4)),
    ("landsat_2019-05-04.tif", dt.date(2019, 5, 4)),
    ("tile_99991399_20190504.tif", dt.date(2019, 5, 4)),   # first 8 digits are no date
    ("x20200101_2019-05-04.tif", dt.date(2020, 1, 1)),
    ("scene_123.tif", None),
])
def test_date_from_file_name(name, day):
    assert date_from_name(name) == day


def test_date_from_file_name_on_disk(tmp_path):
    assert scene_date(small_scene(tmp_path / "s2_20190504.tif")) == dt.date(2019, 5, 4)


def test_custom_date_pattern(tmp_path):
    path = small_scene(tmp_path / "x20200101_2019-05-04.tif")
    assert scene_date(path, date_pattern=r"_(?P<date>\d{4}-\d{2}-\d{2})") == dt.date(2019, 5, 4)
    with pytest.raises(SpecError) as err:
        LocalImagerySource(path, date_pattern=r"_(\d{4})")
    assert err.value.field == "date_pattern"


def test_missing_date(tmp_path):
    path = small_scene(tmp_path / "scene.tif")
    src = LocalImagerySource(path)   # scanning is lazy
    with pytest.raises(SpecError) as err:
        src.scenes
    assert err.value.field == "imagery"
    assert str(path) in str(err.value) and "--imagery-date" in str(err.value)


def test_bad_date_argument(tmp_path):
    with pytest.raises(SpecError) as err:
        LocalImagerySource(tmp_path, date="16.02.2017")
    assert err.value.field == "date"


# (h) band names
@pytest.mark.parametrize("name, canonical", [
    ("B2", "B02"), ("b02", "B02"), ("B02", "B02"), ("B8A", "B8A"), ("b8a", "B8A"), ("B08A", "B8A"),
    ("B10", "B10"), ("blue", "B02"), ("NIR", "B08"), ("nir_narrow", "B8A"), ("red edge 1", "B05"),
    ("SWIR-2", "B12"), ("water_vapour", "B09"), ("coastal", "B01"), ("VV", "VV"),
])
def test_normalise_band(name, canonical):
    assert normalise_band(name) == canonical


def test_aliases_select_the_same_planes(source):
    grid = chip_grid_for(GridCell("EPSG:32633", 335000, 5816000, 320), 10)
    by_alias = source.fetch(grid, Y2017, SensorSpec("s2", ("RED", "green", "Blue", "nir_narrow")))
    by_name = source.fetch(grid, Y2017, SensorSpec("s2", ("B4", "b03", "B02", "B8A")))
    assert np.array_equal(by_alias.data, by_name.data)
    assert by_alias.bands == ("RED", "green", "Blue", "nir_narrow")


# (i) unknown bands and unnamed bands
def test_unknown_band_names_the_available_ones(source):
    grid = chip_grid_for(GridCell("EPSG:32633", 335000, 5816000, 320), 10)
    with pytest.raises(SpecError) as err:
        source.fetch(grid, Y2017, SensorSpec("s2", ("B04", "B13")))
    assert err.value.field == "bands"
    assert err.value.allowed == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                 "B09", "B10", "B11", "B12")
    assert "'B13'" in str(err.value) and str(HAVELLAND) in str(err.value)


def test_bands_without_descriptions(tmp_path):
    src = LocalImagerySource(small_scene(tmp_path / "s_20200101.tif", descriptions=None))
    with pytest.raises(SpecError, match="no band descriptions") as err:
        src.fetch(chip_grid_for(SMALL_CELL, 10), TemporalSpec.year(2020), SensorSpec("s2", ("B02",)))
    assert err.value.field == "bands"


# discovery and bad inputs
def test_folder_scan_is_recursive_and_filtered(tmp_path):
    (tmp_path / "sub").mkdir()
    small_scene(tmp_path / "sub" / "a_20200101.tif")
    small_scene(tmp_path / "b_20200202.TIFF")
    (tmp_path / "notes.txt").write_text("not a raster")
    scenes = LocalImagerySource(tmp_path).scenes
    assert sorted(s.path.name for s in scenes) == ["a_20200101.tif", "b_20200202.TIFF"]
    scene = next(s for s in scenes if s.path.name == "a_20200101.tif")
    assert scene.bands == ("B02", "B03") and scene.dtype == "uint16" and scene.nodata is None
    assert scene.bounds == (LEFT, TOP - 40, LEFT + 40, TOP)


def test_several_paths(tmp_path):
    a = small_scene(tmp_path / "a_20200101.tif")
    b = small_scene(tmp_path / "b_20200202.tif")
    assert [s.path for s in LocalImagerySource([a, str(b), a]).scenes] == [a, b]


def not_a_tiff(folder: Path) -> Path:
    path = folder / "bad_20200101.tif"
    path.write_bytes(b"not a tiff")
    return path


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder / "missing.tif", "no such file or folder"),
    (lambda folder: folder, "no rasters"),
    (not_a_tiff, "cannot read"),
])
def test_bad_imagery_paths(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(SpecError, match=message) as err:
        LocalImagerySource(path).scenes
    assert err.value.field == "imagery" and str(path) in str(err.value)


def test_internal_mask_is_respected(tmp_path):
    path = tmp_path / "m_20200101.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        small_scene(path)
        with rasterio.open(path, "r+") as ds:
            mask = np.full((4, 4), 255, np.uint8)
            mask[0] = 0
            ds.write_mask(mask)
    chip = LocalImagerySource(path).fetch(chip_grid_for(SMALL_CELL, 10), TemporalSpec.year(2020),
                                          SensorSpec("s2", ("B03",)))
    assert np.array_equal(chip.valid, mask > 0)
    assert np.array_equal(chip.data[0], np.where(mask > 0, BASE + 101, 0).astype(np.float32))


# concurrency: per-thread handles give the same chips as a single thread. rasterio's
# internal, thread-unsafe suppression of a NotGeoreferencedWarning on its in-memory
# destination can leak that (harmless) warning when warps run in parallel.
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_concurrent_fetches(source):
    grids = [chip_grid_for(GridCell("EPSG:32632", 744000 + 320 * i, 5820000, 640), 10) for i in range(8)]
    serial = [source.fetch(g, Y2017, RGBN).data for g in grids]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda g: source.fetch(g, Y2017, RGBN).data, grids * 3))
    for i, data in enumerate(parallel):
        assert np.array_equal(data, serial[i % len(grids)])


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (3, 2), (16, 4)])
def test_ingest_fetch_threads_follow_the_source(source, tmp_path, monkeypatch, cores, threads):
    """Local rasters are read and warped on this process's cores: an ingest that does not
    say fetches on one thread per core beyond the model's, 1 to 4; other sources (network
    bound) on 4, counted sources as the source they wrap."""
    from rsembed_db.ingest import engine
    from rsembed_db.producers.catalog import make_producer
    from rsembed_db.sources.base import REMOTE_FETCH_THREADS, fetch_threads
    from rsembed_db.sources.counting import CountingSource
    from rsembed_db.store import EmbeddingStore

    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)))
    assert source.fetch_threads == threads == fetch_threads(CountingSource(source))
    assert fetch_threads(type("Remote", (), {"name": "stac"})()) == REMOTE_FETCH_THREADS
    producer = make_producer("mosaiks", [str(HAVELLAND)])
    assert producer.default_workers == threads
    pools = []
    real = engine.ThreadPoolExecutor
    def pool(**kw):
        if kw["thread_name_prefix"] == "fetch":
            pools.append(kw["max_workers"])
        return real(**kw)
    monkeypatch.setattr(engine, "ThreadPoolExecutor", pool)
    request = producer.request(PointBuffer(12.6, 52.49, 300), TemporalSpec.year(2017))  # inside the scene
    summary = engine.run_ingest(EmbeddingStore(tmp_path / "db"), producer, [request])
    assert summary.computed == 1 and pools == [threads]
    engine.run_ingest(EmbeddingStore(tmp_path / "db2"), producer, [request], engine.IngestOptions(workers=3))
    assert pools == [threads, 3]
