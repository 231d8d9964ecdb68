"""Tessera from tiles in the published layout: dequantisation, mosaics, pooling, downloads."""

from __future__ import annotations

import json

import h3
import numpy as np
import pytest
import shapely
from rasterio.features import geometry_mask

from rsembed_db.api import get_embedding
from rsembed_db.errors import TileFailure
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.catalog import make_producer
from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.tile import TesseraTile
from rsembed_db.specs import BBox, H3Cell, OutputSpec, PointBuffer, SpecError, TemporalSpec
from rsembed_db.specs.spatial import WGS84, reproject_geometry, transformer
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region
from tests.conftest import run_cli
from tests.helpers.http_server import closed_port_url, serve
from tests.products.tessera_helpers import YEAR, brute_mean, make_tree, owned_pixels

T2024 = TemporalSpec.year(YEAR)
QUAD = [TileId(123, 524), TileId(124, 524), TileId(123, 525), TileId(124, 525)]  # 12.3-12.5 E, 52.4-52.6 N


def config(root, url="none") -> dict:
    return {"dir": str(root), "url": url}


def embed(root, spatial, **kwargs):
    return get_embedding("tessera", spatial=spatial, temporal=T2024, model_config=config(root),
                         **kwargs)


def test_dequantisation_is_int8_times_scale():
    q = np.array([[[-127, 0, 5] + [1] * 125]], dtype=np.int8)
    tile = TesseraTile(QUAD[0], q, np.array([[0.5]], np.float32), np.ones((1, 1), bool), "EPSG:32633",
                       None)
    out = tile.dequantise()
    assert out.dtype == np.float32
    assert out[0, 0, :3].tolist() == [-63.5, 0.0, 2.5]
    per_channel = TesseraTile(QUAD[0], q, np.full((1, 1, 128), 0.25, np.float32),
                              np.ones((1, 1), bool), "EPSG:32633", None)
    assert per_channel.dequantise()[0, 0, :3].tolist() == [-31.75, 0.0, 1.25]
    np.testing.assert_array_equal(tile.values(np.array([0])), tile.dequantise().reshape(1, 128))


def test_bbox_across_four_tiles_gives_the_hand_computed_mean(tmp_path):
    data = make_tree(tmp_path, QUAD)
    for k, tile in enumerate(data.values(), start=1):  # tile k holds k * 0.25 everywhere
        tile.quantised[:] = k
        tile.scales[:] = 0.25
        np.save(tmp_path / tile.tile.embedding_path(YEAR), tile.quantised)
        np.save(tmp_path / tile.tile.scales_path(YEAR), tile.scales)
    bbox = BBox(12.37, 52.47, 12.43, 52.53)  # straddles the corner shared by all four tiles
    counts = []
    for tile in data.values():
        lon, lat, owned = owned_pixels(tile)
        counts.append(int((owned & (lon >= 12.37) & (lon <= 12.43) & (lat >= 52.47) & (lat <= 52.53)).sum()))
    assert min(counts) > 100
    expected = 0.25 * sum(k * n for k, n in enumerate(counts, start=1)) / sum(counts)
    emb = embed(tmp_path, bbox)
    np.testing.assert_allclose(emb.data, np.full(128, expected), rtol=1e-6)
    assert sorted(emb.meta["tiles"]) == sorted(t.name for t in QUAD)
    assert emb.meta["pixels"] == sum(counts)


def test_bbox_across_four_tiles_random_values(tmp_path):
    data = make_tree(tmp_path, QUAD)
    emb = embed(tmp_path, BBox(12.37, 52.47, 12.43, 52.53))
    expected = brute_mean(list(data.values()),
                          lambda lon, lat: (lon >= 12.37) & (lon <= 12.43) & (lat >= 52.47) & (lat <= 52.53))
    np.testing.assert_allclose(emb.data, expected, rtol=1e-5, atol=1e-6)


def test_hexagon_pooling_equals_the_masked_mean(tmp_path):
    data = make_tree(tmp_path, QUAD[:1])[QUAD[0]]
    cell = H3Cell(h3.latlng_to_cell(52.45, 12.35, 7))
    hexagon = reproject_geometry(cell.lonlat_geometry(), WGS84, data.crs)
    mask = geometry_mask([hexagon], out_shape=data.land.shape, transform=data.transform, invert=True)
    expected = (data.quantised[mask].astype(np.float64) * data.scales[mask][:, None]).mean(axis=0)
    emb = embed(tmp_path, cell)
    np.testing.assert_allclose(emb.data, expected, rtol=1e-5, atol=1e-6)
    assert emb.meta["pixels"] == int(mask.sum())


def test_tiles_in_two_utm_zones_mosaic(tmp_path):
    west, east = TileId(119, 524), TileId(120, 524)  # 11.9-12.0 E (zone 32), 12.0-12.1 E (zone 33)
    data = make_tree(tmp_path, [west, east])
    assert data[west].crs == "EPSG:32632" and data[east].crs == "EPSG:32633"
    bbox = BBox(11.96, 52.43, 12.04, 52.47)
    emb = embed(tmp_path, bbox)
    expected = brute_mean(list(data.values()),
                          lambda lon, lat: (lon >= 11.96) & (lon <= 12.04) & (lat >= 52.43) & (lat <= 52.47))
    np.testing.assert_allclose(emb.data, expected, rtol=1e-5, atol=1e-6)

    for value, tile in ((2, data[west]), (4, data[east])):  # constant tiles: 1.0 west, 2.0 east
        tile.quantised[:] = value
        np.save(tmp_path / tile.tile.embedding_path(YEAR), tile.quantised)
        np.save(tmp_path / tile.tile.scales_path(YEAR), np.full_like(tile.scales, 0.5))
    grid = embed(tmp_path, bbox, output=OutputSpec.grid()).data
    assert grid.attrs["crs"] == "EPSG:32633" and grid.shape[0] == 128
    assert grid.attrs["transform"][4] < 0  # north-up
    band = grid.values[0]
    lon, _ = _grid_lonlat(grid)
    inner = ~np.isnan(band)
    assert inner.mean() > 0.95  # the bbox is covered, across the zone boundary
    assert set(np.unique(band[inner]).tolist()) == {1.0, 2.0}
    assert (band[inner & (lon < 11.999)] == 1.0).all() and (band[inner & (lon > 12.001)] == 2.0).all()


def _grid_lonlat(grid):
    xs, ys = np.meshgrid(grid.x.values, grid.y.values)
    return transformer(grid.attrs["crs"], WGS84).transform(xs, ys)


def test_open_water_roi_fails_with_a_clear_reason(tmp_path):
    make_tree(tmp_path, QUAD[:1], land=lambda lon, lat: lat < 52.45)  # north half is water
    with pytest.raises(TileFailure, match=r"no valid pixel among the \d+ inside the ROI \(open water"):
        embed(tmp_path, PointBuffer(12.35, 52.48, 500))
    assert embed(tmp_path, PointBuffer(12.35, 52.42, 500)).meta["pixels"] > 0


def test_unpublished_tile_fails_with_the_registry_reason(tmp_path):
    make_tree(tmp_path, QUAD[:1])  # the registry lists only this tile
    with pytest.raises(TileFailure, match="grid_12.45_52.45 for 2024: not in the registry"):
        embed(tmp_path, PointBuffer(12.45, 52.45, 300))


def test_missing_tiles_offline_raise_one_clear_error(tmp_path):
    with pytest.raises(SpecError, match="geotessera download .*--output") as err:
        embed(tmp_path / "empty", PointBuffer(12.35, 52.45, 300))
    assert "grid_12.35_52.45/grid_12.35_52.45.npy" in str(err.value)
    with pytest.raises(SpecError, match="cannot reach"):
        get_embedding("tessera", spatial=PointBuffer(12.35, 52.45, 300), temporal=T2024,
                      model_config=config(tmp_path / "empty2", closed_port_url()))


def test_download_from_a_mirror_matches_local_reads(tmp_path):
    source, mirror_copy = tmp_path / "published", tmp_path / "local"
    make_tree(source, QUAD[:2])
    spatial = BBox(12.38, 52.42, 12.42, 52.46)
    local = embed(source, spatial)
    with serve(source) as server:
        fetched = get_embedding("tessera", spatial=spatial, temporal=T2024,
                                model_config=config(mirror_copy, server.url))
        tile_requests = [r.path for r in server.log if r.path.endswith((".npy", ".tiff"))]
        assert len(tile_requests) == 6  # two tiles: .npy, _scales.npy, landmask each
        again = get_embedding("tessera", spatial=spatial, temporal=T2024,
                              model_config=config(mirror_copy, server.url))
        assert len([r.path for r in server.log if r.path.endswith((".npy", ".tiff"))]) == 6  # now local
    np.testing.assert_array_equal(fetched.data, local.data)
    np.testing.assert_array_equal(again.data, local.data)
    assert (mirror_copy / QUAD[0].embedding_path(YEAR)).is_file()


def test_hash_mismatch_is_refused(tmp_path):
    source, local = tmp_path / "published", tmp_path / "local"
    make_tree(source, QUAD[:2], wrong_hash=(QUAD[1],))
    cells = [H3Cell(h3.latlng_to_cell(52.45, 12.35, 8)), H3Cell(h3.latlng_to_cell(52.45, 12.45, 8))]
    with serve(source) as server:
        producer = make_producer("tessera", model_config=config(local, server.url))
        records = producer.finish([producer.prepare(r) for r in producer.requests(cells, T2024)])
    good, bad = records
    assert good.vector.shape == (128,)
    assert "SHA-256 mismatch" in bad.error and "was not kept" in bad.error
    assert not (local / QUAD[1].embedding_path(YEAR)).exists()


def test_h3_ingest_reads_each_tile_once(tmp_path):
    data = make_tree(tmp_path / "tiles", QUAD)
    region = shapely.box(12.31, 52.41, 12.49, 52.59)
    spatials = tile_region(region, "h3:8")
    producer = make_producer("tessera", model_config=config(tmp_path / "tiles"))
    requests = producer.requests(spatials, T2024)
    store = EmbeddingStore(tmp_path / "db")
    summary = run_ingest(store, producer, requests, IngestOptions(workers=2))
    assert summary.computed == len(spatials) > 300 and summary.failed == 0
    assert producer.tiles.reads == 4
    rows = store.table("tessera").to_lance().to_table().to_pylist()
    assert len(rows) == len(spatials)
    sample = {r["tile_id"]: r for r in rows[:: max(len(rows) // 5, 1)]}
    for hex_id, row in sample.items():
        cell = H3Cell(hex_id)
        hexagon = cell.lonlat_geometry()
        expected = brute_mean(list(data.values()),
                              lambda lon, lat, g=hexagon: shapely.contains_xy(g, lon, lat))
        # tessera tables store float16 by default: within one float16 step of the exact mean
        np.testing.assert_allclose(row["vector"], expected.astype(np.float16), rtol=2 ** -10, atol=1e-7)
        assert json.loads(row["meta"])["year"] == YEAR
    rerun = run_ingest(store, producer, requests)
    assert rerun.already_stored == len(spatials) and producer.tiles.reads == 4


def test_cli_ingest_tessera(tmp_path, db):
    make_tree(tmp_path / "tiles", QUAD[:1])
    region = tmp_path / "region.geojson"
    region.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[12.31, 52.41], [12.39, 52.41], [12.39, 52.49], [12.31, 52.49], [12.31, 52.41]]]}))
    out = run_cli("ingest", str(region), "--model", "tessera", "--year", "2024", "--tiles", "h3:8",
                  "--config", f"dir={tmp_path / 'tiles'}", "--config", "url=none", db=db)
    cells = len(tile_region(shapely.box(12.31, 52.41, 12.39, 52.49), "h3:8"))
    computed = next(line for line in out.stdout.splitlines() if line.strip().startswith("computed"))
    assert computed.split()[-1] == str(cells)
    assert EmbeddingStore(db).table("tessera").count_rows() == cells


def test_tessera_years_must_be_published(tmp_path):
    with pytest.raises(SpecError, match="covers 2017..2025, got 2016"):
        get_embedding("tessera", spatial=PointBuffer(12.35, 52.45, 300),
                      temporal=TemporalSpec.year(2016), model_config=config(tmp_path))


def test_oversized_grid_output_fails_that_roi_only(tmp_path):
    make_tree(tmp_path, QUAD)
    # the product's own guard on grid size, behind the API's ROI pixel cap (lifted here)
    with pytest.raises(TileFailure, match="grid output of this ROI would hold"):
        embed(tmp_path, BBox(12.3, 52.4, 12.5, 52.6), output=OutputSpec.grid(), max_roi_pixels=None)
    assert embed(tmp_path, BBox(12.3, 52.4, 12.5, 52.6), max_roi_pixels=None).meta["pixels"] > 10_000
