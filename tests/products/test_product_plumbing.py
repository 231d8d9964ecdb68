"""Shared product machinery: rasterisation, bulk keys, registration, failures and retries."""

from __future__ import annotations

import hashlib
import json

import h3
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import geometry_mask

from rsembed_db.api import describe_model, list_models
from rsembed_db.ingest.engine import run_ingest
from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.records import EmbeddingRecord
from rsembed_db.sources.tessera.layout import REGISTRY_FILE, TileId
from rsembed_db.specs import BBox, GridCell, H3Cell, PointBuffer, SpecError, TemporalSpec
from rsembed_db.specs.canonical import sha256_key
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.scanline import polygon_mask, polygon_pixel_groups
from tests.conftest import run_cli
from tests.helpers.http_server import serve
from tests.products.tessera_helpers import make_tree

T2024 = TemporalSpec.year(2024)


def test_scanline_matches_gdal_rasterisation():
    rng = np.random.default_rng(1)
    transform, shape = Affine(10, 0, 1000.3, 0, -10, 5000.7), (120, 150)
    geoms = []
    for i in range(40):
        x, y = rng.uniform(1000, 2500), rng.uniform(3800, 5000)
        geom = shapely.Point(x, y).buffer(rng.uniform(5, 300), quad_segs=int(rng.integers(1, 8)))
        if i % 5 == 0:
            geom = geom.difference(shapely.Point(x, y).buffer(rng.uniform(1, 4)))  # a hole
        if i % 7 == 0:
            geom = shapely.MultiPolygon([geom, shapely.box(x + 400, y, x + 450, y + 80)])
        geoms.append(geom)
    flat, offsets = polygon_pixel_groups(np.array(geoms), transform, shape)
    assert offsets[0] == 0 and offsets[-1] == len(flat) and (np.diff(offsets) >= 0).all()
    for i, geom in enumerate(geoms):
        mine = np.zeros(shape[0] * shape[1], bool)
        mine[flat[offsets[i]:offsets[i + 1]]] = True
        ref = geometry_mask([geom], out_shape=shape, transform=transform, invert=True).ravel()
        np.testing.assert_array_equal(mine, ref)
        assert (np.diff(flat[offsets[i]:offsets[i + 1]]) > 0).all()  # by row, then column
    union = geometry_mask(geoms, out_shape=shape, transform=transform, invert=True)
    np.testing.assert_array_equal(polygon_mask(np.array(geoms), transform, shape), union)


def test_scanline_partitions_a_tiling():
    cells = h3.h3shape_to_cells(h3.LatLngPoly([(52.0, 12.0), (52.0, 12.05), (52.05, 12.05), (52.05, 12.0)]), 9)
    polys = np.array([H3Cell(c).lonlat_geometry() for c in cells])
    transform = Affine(0.0001, 0, 11.99, 0, -0.0001, 52.06)
    flat, _ = polygon_pixel_groups(polys, transform, (800, 800))
    assert len(flat) == len(np.unique(flat)) > 100_000  # no pixel in two hexagons


def test_bulk_keys_equal_request_keys():
    producer = make_producer("tessera")
    specs = [H3Cell(h3.latlng_to_cell(52.5, 12.5, 9)), BBox(12.1, 52.1, 12.2, 52.2),
             PointBuffer(12.5, 52.5, 123.4), GridCell("EPSG:32633", 1000.0, 2000.0, 100.0)]
    for request in producer.requests(specs, T2024):
        assert request.key == sha256_key(request.canonical())
        assert request.model_config == {"version": "v1"}


def test_keys_are_the_sha256_of_plain_sorted_json():
    # No floats in this request, so its canonical JSON is plain sorted JSON: the fast paths
    # (bulk keys, the all-string shortcut) must hash exactly that.
    producer = make_producer("tessera")
    cell = H3Cell("8928308280fffff")
    (bulk,) = producer.requests([cell], T2024)
    text = json.dumps(producer.request(cell, T2024).canonical(), sort_keys=True, separators=(",", ":"))
    assert bulk.key == hashlib.sha256(text.encode()).hexdigest()


def test_products_are_listed_and_described():
    assert {"tessera", "gse", "copernicus"} <= set(list_models())
    facts = {name: describe_model(name) for name in ("tessera", "gse", "copernicus")}
    assert [(d.dim, d.kind) for d in facts.values()] == [(128, "precomputed"), (64, "precomputed"),
                                                         (768, "precomputed")]
    assert facts["tessera"].years == tuple(range(2017, 2026)) and facts["copernicus"].years == (2021,)
    assert all(d.licence.startswith("CC-BY-4.0") and d.source for d in facts.values())
    assert facts["gse"].scale_m == 10 and facts["copernicus"].config["resolution_deg"] == 0.25
    out = json.loads(run_cli("describe", "tessera").stdout)
    assert out["dim"] == 128 and out["years"][0] == 2017


def test_unknown_product_option_is_refused():
    with pytest.raises(SpecError, match="tessera.folder.*allowed: dir, layout, url, variant, verify_local, version"):
        make_producer("tessera", model_config={"folder": "/x"})


def test_failed_tiles_are_recorded_and_retried(tmp_path):
    source, local = tmp_path / "published", tmp_path / "local"
    make_tree(source, [TileId(123, 524), TileId(124, 524)], wrong_hash=(TileId(124, 524),))
    cells = [H3Cell(h3.latlng_to_cell(52.45, 12.35, 8)), H3Cell(h3.latlng_to_cell(52.45, 12.45, 8))]
    store = EmbeddingStore(tmp_path / "db")
    with serve(source) as server:
        producer = make_producer("tessera", model_config={"dir": str(local), "url": server.url})
        first = run_ingest(store, producer, producer.requests(cells, T2024))
        assert (first.computed, first.failed) == (1, 1)
        (failure,) = store.failures("tessera")
        assert failure["tile_id"] == cells[1].hex and "SHA-256 mismatch" in failure["error"]
        make_tree(source, [TileId(123, 524), TileId(124, 524)])  # the mirror is fixed
        (local / REGISTRY_FILE).unlink()
        producer = make_producer("tessera", model_config={"dir": str(local), "url": server.url})
        second = run_ingest(store, producer, producer.requests(cells, T2024))
    assert (second.already_stored, second.computed, second.failed) == (1, 1, 0)
    assert store.failures("tessera") == []


def test_existing_keys_scan_path_matches_the_query_path(tmp_path, monkeypatch):
    from rsembed_db.store import lance_store

    producer = make_producer("tessera")
    cells = [H3Cell(c) for c in sorted(h3.grid_disk(h3.latlng_to_cell(52.5, 12.5, 9), 14))]
    requests = producer.requests(cells, T2024)
    store = EmbeddingStore(tmp_path / "db")
    stored = requests[: len(requests) // 2]
    store.write("tessera", [EmbeddingRecord(r, r.spatial.hex, np.zeros(128, np.float32)) for r in stored], 128)
    keys = [r.key for r in requests]
    assert len(keys) > lance_store.KEY_CHUNK
    scanned = store.existing_keys("tessera", keys)
    assert scanned == {r.key for r in stored}
    assert store.existing_keys("tessera", keys, need_grid=True) == set()
    monkeypatch.setattr(lance_store, "SCAN_RATIO", 0)  # force the IN (...) queries
    assert store.existing_keys("tessera", keys) == scanned
