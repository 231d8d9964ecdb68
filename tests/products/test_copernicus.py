"""Copernicus-Embed from a GeoTIFF on the published 0.25-degree grid (and from a hub mirror)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsembed_db.api import get_embedding
from rsembed_db.errors import TileFailure
from rsembed_db.sources.copernicus_embed import HF_FILENAME, HF_REPO, HF_REVISION
from rsembed_db.sources.download import sha256_file
from rsembed_db.specs import BBox, OutputSpec, PointBuffer, SpecError, TemporalSpec

T2021 = TemporalSpec.year(2021)
# A 20 x 20 window of the published grid: pixel centres on quarter degrees, 10.0..14.75 E, 50.0..45.25 N.
TRANSFORM = Affine(0.25, 0, 9.875, 0, -0.25, 50.125)


@pytest.fixture
def embed_map(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(768, 20, 20)).astype(np.float32)
    data[:, 10:, 15:] = 0.0  # "ocean": filled with zeros, as published
    path = tmp_path / HF_FILENAME
    with rasterio.open(path, "w", driver="GTiff", height=20, width=20, count=768, dtype="float32",
                       crs="EPSG:4326", transform=TRANSFORM, tiled=True, blockxsize=16,
                       blockysize=16, compress="deflate") as dst:
        dst.write(data)
    return path, data


def embed(path, spatial, **kwargs):
    return get_embedding("copernicus", spatial=spatial, temporal=T2021,
                         model_config={"path": str(path), "endpoint": "none"}, **kwargs)


def pixel(lon: float, lat: float) -> tuple[int, int]:
    col, row = ~TRANSFORM @ (lon, lat)
    return int(row), int(col)


def test_bbox_pools_the_pixels_whose_centre_is_inside(embed_map):
    path, data = embed_map
    emb = embed(path, BBox(10.9, 45.9, 12.1, 47.1))  # centres 11.0..12.0 E, 46.0..47.0 N
    (r0, c0), (r1, c1) = pixel(11.0, 47.0), pixel(12.0, 46.0)
    expected = data[:, r0:r1 + 1, c0:c1 + 1].astype(np.float64).mean(axis=(1, 2))
    assert (r1 - r0 + 1, c1 - c0 + 1) == (5, 5)
    np.testing.assert_allclose(emb.data, expected, rtol=1e-5, atol=1e-6)
    assert emb.meta["pixels"] == 25 and "roi_smaller_than_pixel" not in emb.meta


def test_roi_smaller_than_a_pixel_takes_the_containing_pixel(embed_map):
    path, data = embed_map
    emb = embed(path, PointBuffer(11.1, 46.05, 300))
    row, col = pixel(11.1, 46.05)
    np.testing.assert_array_equal(emb.data, data[:, row, col])
    assert emb.meta["roi_smaller_than_pixel"] is True and emb.meta["pixels"] == 1


def test_grid_output_is_the_native_window(embed_map):
    path, data = embed_map
    grid = embed(path, BBox(10.9, 45.9, 12.1, 47.1), output=OutputSpec.grid()).data
    assert grid.attrs["crs"] == "EPSG:4326"
    (r0, c0) = pixel(10.9, 47.1)
    t = grid.attrs["transform"]
    assert t[0] == 0.25 and t[4] == -0.25 and (t[2], t[5]) == TRANSFORM @ (c0, r0)
    h, w = grid.shape[1:]
    np.testing.assert_array_equal(grid.values, data[:, r0:r0 + h, c0:c0 + w])


def test_ocean_and_wrong_year_fail_clearly(embed_map):
    path, _ = embed_map
    with pytest.raises(TileFailure, match="open water"):
        embed(path, BBox(13.9, 45.3, 14.6, 46.6))
    with pytest.raises(SpecError, match="covers 2021, got 2022"):
        get_embedding("copernicus", spatial=PointBuffer(11.1, 46.05, 300),
                      temporal=TemporalSpec.year(2022), model_config={"path": str(path)})


def test_missing_file_offline_says_what_to_download(tmp_path):
    with pytest.raises(SpecError, match=f"huggingface.co/datasets/{HF_REPO}.*RSEMBED_COPERNICUS_EMBED"):
        embed(tmp_path / "nowhere", PointBuffer(11.1, 46.05, 300))


def test_download_through_a_hub_mirror_is_verified(embed_map, tmp_path):
    from tests.helpers.http_server import serve

    path, data = embed_map
    hub = tmp_path / "hub" / "datasets" / HF_REPO / "resolve" / HF_REVISION
    hub.mkdir(parents=True)
    (hub / HF_FILENAME).write_bytes(path.read_bytes())
    with serve(tmp_path / "hub") as server:
        spatial = PointBuffer(11.1, 46.05, 300)
        emb = get_embedding("copernicus", spatial=spatial, temporal=T2021, model_config={
            "path": str(tmp_path / "cache"), "endpoint": server.url, "sha256": sha256_file(path)})
        np.testing.assert_array_equal(emb.data, data[:, pixel(11.1, 46.05)[0], pixel(11.1, 46.05)[1]])
        assert (tmp_path / "cache" / HF_FILENAME).is_file()
        with pytest.raises(SpecError, match="SHA-256 mismatch"):
            get_embedding("copernicus", spatial=spatial, temporal=T2021, model_config={
                "path": str(tmp_path / "cache2"), "endpoint": server.url, "sha256": "0" * 64})


def test_roi_across_blocks_pools_both(tmp_path):
    # 48 x 48 pixels: the raster is read in 40-pixel blocks, so this bbox spans four.
    rng = np.random.default_rng(5)
    data = rng.normal(size=(768, 48, 48)).astype(np.float32)
    path = tmp_path / HF_FILENAME
    with rasterio.open(path, "w", driver="GTiff", height=48, width=48, count=768, dtype="float32",
                       crs="EPSG:4326", transform=TRANSFORM) as dst:
        dst.write(data)
    emb = embed(path, BBox(19.4, 39.4, 20.6, 40.6))  # centres 19.5..20.5 E, 39.5..40.5 N
    (r0, c0), (r1, c1) = pixel(19.5, 40.5), pixel(20.5, 39.5)
    assert r0 < 40 <= r1 and c0 < 40 <= c1
    expected = data[:, r0:r1 + 1, c0:c1 + 1].astype(np.float64).mean(axis=(1, 2))
    np.testing.assert_allclose(emb.data, expected, rtol=1e-5, atol=1e-6)
    assert len(emb.meta["tiles"]) == 4
