"""The STAC source against a loopback STAC API serving COGs written here (range requests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import from_bounds
from shapely.geometry import box, mapping

from rsembed_db.api import get_embedding
from rsembed_db.errors import TileFailure
from rsembed_db.sources.factory import make_source
from rsembed_db.sources.stac import StacImagerySource
from rsembed_db.sources.warp import warp_to_grid
from rsembed_db.specs import GridCell, SensorSpec, SpecError, TemporalSpec
from rsembed_db.specs.spatial import reproject_geometry
from rsembed_db.tiling.chip_grid import chip_grid_for
from tests.helpers.http_server import serve

CRS = "EPSG:32633"
LEFT, TOP, SIDE = 500000.0, 5810240.0, 1024           # 10 m rasters, 10.24 km square
JUNE = TemporalSpec.range("2020-06-01", "2020-07-01")
CELL = GridCell(CRS, 500100, 5805000, 100)             # 10 x 10 px at 10 m
GRID = chip_grid_for(CELL, 10)
SENSOR = SensorSpec("s2test", ("B04", "B8A"), cloudy_pct=30)


def write_cog(path: Path, data: np.ndarray, res: float) -> Path:
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint16", crs=CRS, transform=Affine(res, 0, LEFT, 0, -res, TOP), nodata=0,
                       blocksize=256, overview_resampling="average") as ds:
        ds.write(data, 1)
    return path


def scene_files(root: Path, name: str, seed: int, left_only: bool = False) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    red = rng.integers(1, 10000, (SIDE, SIDE), dtype=np.uint16)
    nir = rng.integers(1, 10000, (SIDE // 2, SIDE // 2), dtype=np.uint16)
    if left_only:                                      # valid west of x = 500150 only
        red[:, 15:] = 0
        nir[:, 8:] = 0
    return {"B04": write_cog(root / f"{name}_red.tif", red, 10.0),
            "B8A": write_cog(root / f"{name}_nir08.tif", nir, 20.0)}


def item(server_url: str, root: Path, id_: str, when: str, cloud: float, files: dict[str, Path],
         style: str) -> dict:
    footprint = reproject_geometry(box(LEFT, TOP - 10 * SIDE, LEFT + 10 * SIDE, TOP), CRS, "EPSG:4326")
    cog = "image/tiff; application=geotiff; profile=cloud-optimized"

    def href(path: Path) -> str:
        return f"{server_url}/{path.relative_to(root)}"

    if style == "earth-search":                         # asset keys are common names
        assets = {"red": {"href": href(files["B04"]), "type": cog, "roles": ["data"]},
                  "nir08": {"href": href(files["B8A"]), "type": cog, "roles": ["data"]}}
    else:                                               # asset keys are band ids, eo:bands names
        assets = {"B04": {"href": href(files["B04"]), "type": cog, "roles": ["data"],
                          "eo:bands": [{"name": "B04", "common_name": "red"}]},
                  "B8A": {"href": href(files["B8A"]), "type": cog, "roles": ["data"],
                          "eo:bands": [{"name": "B8A", "common_name": "nir08"}]}}
    assets["visual"] = {"href": href(files["B04"]), "type": cog, "roles": ["visual"],
                        "eo:bands": [{"name": "red"}, {"name": "green"}, {"name": "blue"}]}
    return {"type": "Feature", "stac_version": "1.0.0", "id": id_, "collection": "s2test",
            "bbox": list(footprint.bounds), "geometry": mapping(footprint),
            "properties": {"datetime": when, "eo:cloud_cover": cloud}, "assets": assets, "links": []}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("cogs")
    files = {"a": scene_files(root, "a", 1), "b": scene_files(root, "b", 2, left_only=True),
             "cloudy": scene_files(root, "cloudy", 3), "end": scene_files(root, "end", 4)}
    with serve(root) as server:
        server.items = [
            item(server.url, root, "a", "2020-06-05T10:00:00Z", 10, files["a"], "earth-search"),
            item(server.url, root, "b", "2020-06-25T10:00:00Z", 5, files["b"], "planetary"),
            item(server.url, root, "cloudy", "2020-06-15T10:00:00Z", 80, files["cloudy"], "earth-search"),
            item(server.url, root, "end", "2020-07-01T00:00:00Z", 0, files["end"], "earth-search"),
        ]
        server.files = files
        yield server


def direct(files: dict[str, Path], bands=("B04", "B8A"), grid=GRID) -> np.ndarray:
    """The same bands warped straight from the local files."""
    out = []
    for band in bands:
        with rasterio.open(files[band]) as ds:
            out.append(warp_to_grid(ds, [1], ds.nodata, grid)[0])
    stack = np.stack(out)
    stack[:, ~np.isfinite(stack).all(axis=0)] = np.nan
    return stack


def test_median_over_the_window_equals_the_direct_read(catalogue):
    chip = StacImagerySource(catalogue.url, "s2test").fetch(GRID, JUNE, SENSOR)
    assert chip.meta["scenes"] == ["a", "b"]           # cloudy: filtered; "end": window is half-open
    assert chip.meta["dates"] == ["2020-06-05", "2020-06-25"]
    expected = np.nanmedian(np.stack([direct(catalogue.files["a"]), direct(catalogue.files["b"])]), axis=0)
    assert np.array_equal(chip.data, expected.astype(np.float32))
    assert chip.valid.all() and chip.data.shape == (2, 10, 10)
    search = catalogue.searches[-1]
    assert search["collections"] == ["s2test"] and search["query"] == {"eo:cloud_cover": {"lte": 30.0}}
    assert search["datetime"].startswith("2020-06-01T00:00:00") and "2020-07-01T00:00:00" in search["datetime"]


def test_aligned_band_is_the_exact_window_of_the_file(catalogue):
    one_day = TemporalSpec.range("2020-06-05", "2020-06-06")
    chip = StacImagerySource(catalogue.url, "s2test").fetch(GRID, one_day, SENSOR)
    with rasterio.open(catalogue.files["a"]["B04"]) as ds:
        window = ds.read(1, window=from_bounds(*GRID.bounds, transform=ds.transform))
    assert np.array_equal(chip.data[0], window.astype(np.float32))


def test_cogs_are_read_with_range_requests_not_downloaded(catalogue):
    catalogue.log.clear()
    elsewhere = chip_grid_for(GridCell(CRS, 504000, 5801000, 100), 10)   # blocks not read before
    StacImagerySource(catalogue.url, "s2test").fetch(elsewhere, JUNE, SENSOR)
    ranges = [entry[2] for entry in catalogue.log if entry[0] == "GET"]
    assert ranges and all(r and r.startswith("bytes=") for r in ranges)
    fetched = sum(int(b) - int(a) + 1 for a, b in (r[6:].split("-") for r in ranges))
    sizes = sum(path.stat().st_size for name in ("a", "b") for path in catalogue.files[name].values())
    assert fetched < sizes / 4
    served = {path for _, path, _ in catalogue.log}
    assert not any("cloudy" in p or "end_" in p for p in served)     # filtered items are never read


def test_mosaic_takes_the_latest_item(catalogue):
    chip = StacImagerySource(catalogue.url, "s2test").fetch(
        GRID, JUNE, SensorSpec("s2test", ("B04", "B8A"), composite="mosaic"))
    a, b = direct(catalogue.files["a"]), direct(catalogue.files["b"])
    assert np.array_equal(chip.data, np.where(np.isfinite(b), b, a))


def test_no_item_in_window_is_a_tile_failure(catalogue):
    with pytest.raises(TileFailure, match="no s2test item in window"):
        StacImagerySource(catalogue.url).fetch(GRID, TemporalSpec.range("2021-01-01", "2021-02-01"), SENSOR)


def test_unknown_band_names_the_assets(catalogue):
    with pytest.raises(SpecError, match="no asset for band 'B11'"):
        StacImagerySource(catalogue.url).fetch(GRID, JUNE, SensorSpec("s2test", ("B11",)))


def test_source_string_and_embedding(catalogue):
    counted = make_source(f"stac:{catalogue.url}#s2test")
    assert counted.name == "stac" and counted.source.collection == "s2test"
    emb = get_embedding("mosaiks", spatial=CELL, temporal=JUNE, source=f"stac:{catalogue.url}#s2test",
                        model_config={"bands": ["B04", "B8A"], "num_filters": 4})
    assert emb.data.shape == (8,) and emb.meta["source"] == "stac"
    assert emb.meta["source_scenes"] == ["a", "b"]


def test_frames_search_once_composite_each_bin_and_back_fill_empty_bins(catalogue):
    catalogue.searches.clear()
    chip = StacImagerySource(catalogue.url, "s2test").fetch(GRID, JUNE, SENSOR, frames=3)
    a, b = direct(catalogue.files["a"]), direct(catalogue.files["b"])
    assert chip.data.shape == (3, 2, 10, 10)
    np.testing.assert_array_equal(chip.data[0], a)                        # 06-01..06-11: "a"
    np.testing.assert_array_equal(chip.data[1], np.nanmedian(np.stack([a, b]), axis=0).astype(np.float32))
    left = np.isfinite(b[0])
    np.testing.assert_array_equal(chip.data[2][:, left], b[:, left])      # 06-21..07-01: "b", left part
    assert (chip.data[2][:, ~left] == SENSOR.fill_value).all()
    assert chip.meta["frame_backfilled"] == [False, True, False]          # "cloudy" (06-15) is filtered
    assert chip.meta["frame_dates"] == ["2020-06-05", "2020-06-16", "2020-06-25"]
    assert chip.meta["frame_scenes"] == [["a"], ["a", "b"], ["b"]] and chip.meta["collection"] == "s2test"
    assert len(catalogue.searches) == 1 and chip.valid.all()             # one search for all bins
    single = StacImagerySource(catalogue.url, "s2test").fetch(GRID, TemporalSpec.range("2020-06-01", "2020-06-11"),
                                                             SENSOR)
    np.testing.assert_array_equal(chip.data[0], single.data)


def test_frames_through_the_source_string(catalogue):
    counted = make_source(f"stac:{catalogue.url}#s2test")
    chip = counted.fetch(GRID, JUNE, SENSOR, frames=2)
    assert chip.meta["frame_backfilled"] == [False, False] and chip.data.shape == (2, 2, 10, 10)
