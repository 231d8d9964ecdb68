"""Google Satellite Embedding: Earth Engine through a fake ``ee``, COGs from disk and HTTP."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from rsembed_db.api import get_embedding
from rsembed_db.errors import TileFailure
from rsembed_db.producers.catalog import make_producer
from rsembed_db.sources.gse_cog import BANDS, NODATA, dequantise
from rsembed_db.sources.gse_earthengine import COLLECTION, GseEarthEngineSource
from rsembed_db.specs import BBox, OutputSpec, PointBuffer, SpecError, TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for
from tests.helpers.fake_ee import FakeEE
from tests.helpers.http_server import serve

T2024 = TemporalSpec.year(2024)
POINT = PointBuffer(12.5, 52.5, 600)  # UTM 33N


def band_value(band: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] that vary with position and band."""
    k = BANDS.index(band)
    return np.sin(x / 137.0 + k) * np.cos(y / 91.0 - k) * 0.9


def band_values(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(64, ...) ``band_value`` of every band."""
    return np.stack([band_value(band, x, y) for band in BANDS])


@pytest.fixture
def fake_ee(monkeypatch):
    """``install(masked=None, **FakeEE options)``: an ``ee`` whose collection is one 2024 image of
    ``band_values``, masked where ``masked(x, y)``."""
    def install(masked=None, **kwargs) -> FakeEE:
        image = {"id": "2024", "date": "2024-01-01", "properties": {}, "bands": BANDS, "value": band_value}
        if masked is not None:
            image["footprint"] = lambda x, y: ~masked(x, y)
        fake = FakeEE({COLLECTION: [image]}, **kwargs)
        monkeypatch.setitem(sys.modules, "ee", fake)
        return fake
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("RSEMBED_GSE_COGS", raising=False)
    return install


def expected_mean(spatial, masked=None) -> np.ndarray:
    grid = chip_grid_for(spatial, 10.0)
    rows, cols = np.mgrid[0:grid.height, 0:grid.width]
    x = grid.transform.c + 10.0 * (cols + 0.5)
    y = grid.transform.f - 10.0 * (rows + 0.5)
    sel = grid.roi_mask()
    if masked is not None:
        sel &= ~masked(x, y)
    return band_values(x, y)[:, sel].astype(np.float32).astype(np.float64).mean(axis=1)


def test_earth_engine_request_is_what_the_product_documents(fake_ee):
    fake = fake_ee()
    emb = get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"project": "my-project"})
    assert fake.initialized == ["my-project"]
    assert ("ImageCollection", COLLECTION) in fake.log and COLLECTION == "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
    assert ("filterDate", "2024-01-01", "2025-01-01") in fake.log
    assert ("select", [f"A{i:02d}" for i in range(64)]) in fake.log
    assert ("mosaic",) in fake.log and ("unmask", -2.0, False) in fake.log
    [region] = [entry[1] for entry in fake.log if entry[0] == "filterBounds"]
    west, south, east, north = region.coords
    assert west < 12.5 < east and south < 52.5 < north and east - west < 0.03
    (request,) = fake.requests
    grid = request["grid"]
    assert grid["crsCode"] == "EPSG:32633"
    assert grid["affineTransform"]["scaleX"] == 10.0 and grid["affineTransform"]["scaleY"] == -10.0
    chip = chip_grid_for(POINT, 10.0)
    assert grid["dimensions"] == {"width": chip.width, "height": chip.height}
    np.testing.assert_allclose(emb.data, expected_mean(POINT), rtol=1e-5, atol=1e-6)
    assert emb.meta["backend"] == "earthengine" and emb.meta["source"].startswith("Earth Engine")


def test_masked_pixels_are_nan_and_skipped(fake_ee):
    grid = chip_grid_for(POINT, 10.0)
    split_x = grid.transform.c + 700.0

    def masked(x, y):
        return x > split_x
    fake_ee(masked=masked)
    emb = get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"project": "p"},
                        output=OutputSpec.grid())
    band = emb.data.values[0]
    assert np.isnan(band[:, 70:]).all() and not np.isnan(band[:, :70]).any()
    pooled = get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"project": "p"})
    np.testing.assert_allclose(pooled.data, expected_mean(POINT, masked), rtol=1e-5, atol=1e-6)


def test_oversized_requests_are_split(fake_ee):
    fake = fake_ee()
    grid = chip_grid_for(BBox(12.45, 52.48, 12.52, 52.52), 10.0)
    whole, _ = GseEarthEngineSource("p").read(grid, T2024)
    calls = len(fake.requests)
    split, _ = GseEarthEngineSource("p", block_pixels=128).read(grid, T2024)
    blocks = fake.requests[calls:]
    assert len(blocks) == -(-grid.height // 128) * -(-grid.width // 128) > 4
    assert all(b["grid"]["dimensions"]["width"] <= 128 and b["grid"]["dimensions"]["height"] <= 128
               for b in blocks)
    np.testing.assert_array_equal(split, whole)


def test_quota_errors_are_retried_with_backoff(fake_ee):
    fake_ee(quota_failures=2)
    slept: list[float] = []
    values, _ = GseEarthEngineSource("p", sleep=slept.append).read(chip_grid_for(POINT, 10.0), T2024)
    assert slept == [2.0, 4.0] and not np.isnan(values).any()
    fake_ee(quota_failures=10)
    with pytest.raises(TileFailure, match="quota still exceeded after 2 retries"):
        GseEarthEngineSource("p", retries=2, sleep=slept.append).read(chip_grid_for(POINT, 10.0), T2024)


def test_concurrency_is_capped(fake_ee):
    fake = fake_ee(delay_s=0.02)
    producer = make_producer("gse", model_config={"project": "p", "max_concurrency": 2})
    points = [PointBuffer(12.5 + 0.01 * i, 52.5, 100) for i in range(12)]
    records = [r for group in producer.compute_many(producer.requests(points, T2024), workers=6)
               for r in group]
    assert len(records) == 12 and fake.max_in_flight == 2


def test_missing_credentials_is_one_clear_error(fake_ee, monkeypatch):
    monkeypatch.delenv("RSEMBED_EE_PROJECT", raising=False)
    fake_ee()
    with pytest.raises(SpecError, match="earthengine authenticate.*RSEMBED_EE_PROJECT"):
        get_embedding("gse", spatial=POINT, temporal=T2024)
    fake_ee(init_error="Please authorize access to your Earth Engine account")
    with pytest.raises(SpecError, match="Please authorize.*earthengine authenticate"):
        get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"project": "p"})


# -- COGs --------------------------------------------------------------------------------

def write_cog(path, data: np.ndarray, left: float, top: float) -> None:
    """A bottom-up (positive y resolution) 64-band int8 COG, as published."""
    _, height, width = data.shape
    tmp = path.with_suffix(".tmp.tif")
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(tmp, "w", driver="GTiff", height=height, width=width, count=64, dtype="int8",
                       crs="EPSG:32633", transform=Affine(10, 0, left, 0, 10, top - 10 * height),
                       nodata=NODATA, tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(data[:, ::-1, :])
        dst.descriptions = BANDS
    rasterio.shutil.copy(tmp, path, driver="COG")
    tmp.unlink()


@pytest.fixture
def cog_tree(tmp_path):
    """One 256 x 256 COG around POINT, with a no-data block; returns (root, north-up data, grid)."""
    grid = chip_grid_for(POINT, 10.0)
    left, top = grid.transform.c - 500, grid.transform.f + 500  # aligned with the chip grid
    rng = np.random.default_rng(7)
    data = rng.integers(-127, 128, size=(64, 256, 256), dtype=np.int8)
    data[:, 60:80, :] = NODATA  # a masked band of rows inside the ROI
    write_cog(tmp_path / "cogs" / "2024" / "33N" / "tile.tiff", data, left, top)
    return tmp_path / "cogs", data, (left, top)


def test_dequantisation_formula():
    raw = np.array([-127, -1, 0, 1, 64, 127, NODATA], dtype=np.int8)
    out = dequantise(raw)
    np.testing.assert_allclose(out[:6], [-(127 / 127.5) ** 2, -(1 / 127.5) ** 2, 0.0,
                                         (1 / 127.5) ** 2, (64 / 127.5) ** 2, (127 / 127.5) ** 2],
                               rtol=1e-6)
    assert np.isnan(out[6])


def test_cog_pooling_flips_bottom_up_rows_and_skips_nodata(cog_tree):
    root, data, (left, top) = cog_tree
    emb = get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"cogs": str(root)})
    grid = chip_grid_for(POINT, 10.0)
    r0, c0 = round((top - grid.transform.f) / 10), round((grid.transform.c - left) / 10)
    window = data[:, r0:r0 + grid.height, c0:c0 + grid.width]
    sel = grid.roi_mask() & (window[0] != NODATA)
    expected = dequantise(window)[:, sel].astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(emb.data, expected, rtol=1e-5, atol=1e-7)
    assert emb.meta["backend"] == "cog"


def test_cogs_over_http_equal_cogs_from_disk(cog_tree):
    root, _, _ = cog_tree
    disk = get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"cogs": str(root)},
                         output=OutputSpec.grid())
    with serve(root) as server:
        remote = get_embedding("gse", spatial=POINT, temporal=T2024,
                               model_config={"cogs": f"{server.url}/2024/33N/tile.tiff"},
                               output=OutputSpec.grid())
    assert any(r.path.endswith("tile.tiff") for r in server.log)
    np.testing.assert_array_equal(remote.data.values, disk.data.values)
    assert remote.data.attrs["crs"] == "EPSG:32633" and remote.data.attrs["transform"][4] == -10.0


def test_cog_without_coverage_or_year_fails_clearly(cog_tree):
    root, _, _ = cog_tree
    with pytest.raises(TileFailure, match="no Satellite Embedding COG for 2023"):
        get_embedding("gse", spatial=POINT, temporal=TemporalSpec.year(2023),
                      model_config={"cogs": str(root)})
    with pytest.raises(SpecError, match="gse.cogs"):
        get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"cogs": str(root / "nope")})


# -- the published COG index ------------------------------------------------------------

def indexed_tree(cog_tree, fmt: str, prefix: str = ""):
    """The COG tree with ``aef_index.<fmt>`` at its top, listing the COG (and another year's
    file that does not exist), plus a corrupt ``.tiff`` the index does not list."""
    from rsembed_db.sources.gse_synthetic import index_rows, write_index

    root, data, (left, top) = cog_tree
    bounds = (left, top - 2560.0, left + 2560.0, top)
    rows = index_rows([("2024/33N/tile.tiff", 2024, "EPSG:32633", bounds),
                       ("2023/33N/gone.tiff", 2023, "EPSG:32633", bounds),
                       ("2024/32N/far.tiff", 2024, "EPSG:32632", (500_000.0, 100_000.0, 581_920.0, 181_920.0))])
    if prefix:
        rows["path"] = [p.replace("gs://alphaearth_foundations/satellite_embedding/v1/annual", prefix)
                        for p in rows["path"]]
    write_index(root / f"aef_index.{fmt}", rows)
    (root / "2024" / "33N" / "broken.tiff").write_bytes(b"not a tiff")  # a header scan would stop here
    return root


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_cogs_are_located_through_the_published_index(cog_tree, fmt):
    root = indexed_tree(cog_tree, fmt)
    with pytest.raises(SpecError, match="cannot open .*broken.tiff"):  # without the index: every header
        get_embedding("gse", spatial=POINT, temporal=T2024,
                      model_config={"cogs": str(root), "index": "none"})
    emb = get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"cogs": str(root)})
    assert emb.meta["files"] == [str(root / "2024" / "33N" / "tile.tiff")]
    _, data, (left, top) = cog_tree
    grid = chip_grid_for(POINT, 10.0)
    r0, c0 = round((top - grid.transform.f) / 10), round((grid.transform.c - left) / 10)
    window = data[:, r0:r0 + grid.height, c0:c0 + grid.width]
    sel = grid.roi_mask() & (window[0] != NODATA)
    np.testing.assert_allclose(emb.data, dequantise(window)[:, sel].astype(np.float64).mean(axis=1), rtol=1e-5, atol=1e-7)
    with pytest.raises(TileFailure, match=r"no Satellite Embedding COG for 2022 covers the ROI \(3 file\(s\) in the index\)"):
        get_embedding("gse", spatial=POINT, temporal=TemporalSpec.year(2022), model_config={"cogs": str(root)})


def test_index_and_cogs_over_http(cog_tree):
    root = indexed_tree(cog_tree, "parquet", prefix="s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual")
    disk = get_embedding("gse", spatial=POINT, temporal=T2024, model_config={"cogs": str(root)})
    with serve(root) as server:
        remote = get_embedding("gse", spatial=POINT, temporal=T2024,
                               model_config={"cogs": server.url, "index": f"{server.url}/aef_index.parquet"})
    np.testing.assert_array_equal(remote.data, disk.data)
    assert remote.meta["files"] == [f"{server.url}/2024/33N/tile.tiff"]
    assert not any("broken" in r.path or "far.tiff" in r.path for r in server.log)


def test_index_paths_resolve_to_public_urls():
    import pyarrow as pa

    from rsembed_db.sources.gse_index import GseIndex
    from rsembed_db.sources.gse_synthetic import index_rows

    rows = index_rows([("2024/10N/abc-0000000000-0000008192.tiff", 2024, "EPSG:32610",
                        (500_000.0, 4_000_000.0, 581_920.0, 4_081_920.0))])
    index = GseIndex(pa.table(rows), None, "test")
    (hit,) = index.lookup(2024, -122.9, 36.2, -122.8, 36.3)
    assert hit.location == ("https://storage.googleapis.com/alphaearth_foundations/satellite_embedding/v1/annual/"
                            "2024/10N/abc-0000000000-0000008192.tiff")
    assert hit.crs == "EPSG:32610" and hit.bounds == (500_000.0, 4_000_000.0, 581_920.0, 4_081_920.0)
    assert index.lookup(2024, -120.0, 36.2, -119.9, 36.3) == [] and index.lookup(2023, -122.9, 36.2, -122.8, 36.3) == []
    assert GseIndex(pa.table(rows), "/data/aef", "test").lookup(2024, -122.9, 36.2, -122.8, 36.3)[0].location == \
        "/data/aef/2024/10N/abc-0000000000-0000008192.tiff"
