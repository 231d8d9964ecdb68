"""Tessera as published today: the three layouts (local and HTTP), detection, datasets and keys."""

from __future__ import annotations

import json
import shutil

import h3
import numpy as np
import pytest
import shapely

from rsembed_db.api import describe_model, get_embedding
from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.producers.catalog import make_producer
from rsembed_db.sources.tessera.datasets import SIDECAR, Dataset, write_sidecar
from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.specs import BBox, H3Cell, PointBuffer, TemporalSpec
from rsembed_db.tiling.plan import tile_region
from tests.conftest import run_cli
from tests.helpers.http_server import serve
from tests.products.tessera_helpers import YEAR, brute_mean, make_layouts

T = TemporalSpec.year(YEAR)
ZONES = [TileId(119, 524), TileId(120, 524)]  # 11.9-12.0 E (UTM 32) | 12.0-12.1 E (UTM 33)
WEST = [TileId(-1, 514), TileId(0, 514)]  # -0.1-0 E (UTM 30) | 0-0.1 E (UTM 31), 51.4-51.5 N
SOUTH = [TileId(119, -300), TileId(120, -300)]  # 30 S: EPSG:32732 | 32733 (negative northings in the store)
CAMBRIDGE = Dataset("v1.1", "cambridge")


def compute(config: dict, spatials) -> list:
    producer = make_producer("tessera", model_config=config)
    records = [r for group in producer.compute_many(producer.requests(spatials, T)) for r in group]
    assert all(hasattr(r, "vector") for r in records), [getattr(r, "error", None) for r in records]
    return sorted(records, key=lambda r: r.tile_id)


def spatials_across(tiles: list[TileId]) -> list:
    west = min(t.bounds[0] for t in tiles)
    east = max(t.bounds[2] for t in tiles)
    south, north = tiles[0].bounds[1], tiles[0].bounds[3]
    mid = (west + east) / 2
    cells = tile_region(shapely.box(west + 0.01, south + 0.01, east - 0.01, north - 0.01), "h3:8")
    return [*cells, BBox(mid - 0.04, south + 0.03, mid + 0.04, north - 0.03), PointBuffer(mid + 0.003, south + 0.05, 3.0)]


def in_bbox(box):
    return lambda lon, lat: (lon >= box.minlon) & (lon <= box.maxlon) & (lat >= box.minlat) & (lat <= box.maxlat)


@pytest.mark.parametrize("tiles", [ZONES, WEST, SOUTH], ids=["utm32-33", "west-of-0", "south"])
def test_three_layouts_pool_identically(tmp_path, tiles):
    data, paths = make_layouts(tmp_path, tiles)
    crs = {t.crs for t in data.values()}
    assert len(crs) == 2  # the region spans two UTM zones
    spatials = spatials_across(tiles)
    configs = {"legacy": {"dir": str(paths["legacy"])}, "zarr": {"dir": str(paths["zarr"])},
               "npy": {"dir": str(paths["mirror"]), "layout": "npy"}}  # the mirror holds npy/ and zarr/
    results = {name: compute({**config, "url": "none"}, spatials) for name, config in configs.items()}
    layouts = {name: {json.dumps(r.meta["layout"]) for r in recs} for name, recs in results.items()}
    assert layouts == {"legacy": {'"legacy"'}, "npy": {'"npy"'}, "zarr": {'"zarr"'}}
    assert {r.meta["layout"] for r in compute({"dir": str(paths["mirror"]), "url": "none"}, spatials[:1])} == {"zarr"}
    base = results["legacy"]
    assert len(base) == len(spatials) > 20
    for name in ("npy", "zarr"):
        for a, b in zip(base, results[name]):
            assert a.tile_id == b.tile_id
            np.testing.assert_array_equal(a.vector, b.vector, err_msg=f"{name} {a.tile_id}")
            assert (a.meta["pixels"], a.meta["pixels_excluded"]) == (b.meta["pixels"], b.meta["pixels_excluded"])
    box = next(s for s in spatials if isinstance(s, BBox))
    pooled = next(r for r in base if r.request.spatial == box)
    np.testing.assert_allclose(pooled.vector, brute_mean(list(data.values()), in_bbox(box)), rtol=1e-5, atol=1e-6)
    assert len(pooled.meta["tiles"]) == 2


def test_three_layouts_over_http_equal_local_reads(tmp_path):
    data, paths = make_layouts(tmp_path, ZONES[:1])
    spatials = spatials_across(ZONES[:1])
    local = compute({"dir": str(paths["legacy"]), "url": "none"}, spatials)
    with serve(tmp_path) as server:
        legacy = compute({"dir": str(tmp_path / "dl-legacy"), "url": f"{server.url}/legacy"}, spatials)
        npy = compute({"dir": str(tmp_path / "dl-npy"), "url": f"{server.url}/mirror"}, spatials)
        store = compute({"dir": str(tmp_path / "nothing"), "url": f"{server.url}/mirror", "layout": "zarr"}, spatials)
        direct = compute({"dir": str(tmp_path / "nothing"), "url": f"{server.url}/mirror/zarr/v1"}, spatials)
        log = list(server.log)
    for records in (legacy, npy, store, direct):
        for a, b in zip(local, records):
            np.testing.assert_array_equal(a.vector, b.vector)
    assert {r.meta["layout"] for r in npy} == {"npy"} and {r.meta["layout"] for r in direct} == {"zarr"}
    # NPY downloads land in the geotessera download layout, with its sidecar.
    tile = ZONES[0]
    assert (tmp_path / "dl-npy" / tile.embedding_path(YEAR)).is_file()
    assert (tmp_path / "dl-npy" / tile.landmask_path()).is_file()
    assert json.loads((tmp_path / "dl-npy" / SIDECAR).read_text())["dataset_variant"] == "vultr"
    # The store is read with range requests, never copied.
    assert not (tmp_path / "nothing").exists()
    shard_reads = [r for r in log if "/zarr/v1/utm" in r.path and ("/embeddings/c/" in r.path or "/scales/c/" in r.path)]
    assert shard_reads and all(r.range for r in shard_reads)


def test_zarr_reads_only_the_windows_a_region_needs(tmp_path):
    _, paths = make_layouts(tmp_path, [TileId(123, 524), TileId(124, 524), TileId(123, 525)])
    store_bytes = sum(p.stat().st_size for p in paths["zarr"].rglob("*") if p.is_file())
    with serve(paths["zarr"]) as server:
        producer = make_producer("tessera", model_config={"dir": str(tmp_path / "x"), "url": server.url})
        cell = H3Cell(h3.latlng_to_cell(52.45, 12.35, 8))  # inside the first tile only
        (record,) = [r for g in producer.compute_many(producer.requests([cell], T)) for r in g]
        sent = sum(int(r.range.split("-")[1]) - int(r.range.split("=")[1].split("-")[0]) + 1
                   for r in server.log if r.range and not r.range.startswith("bytes=-"))
    assert record.meta["pixels"] > 0 and producer.tiles.reads == 1
    assert producer.tiles.bytes_read < store_bytes / 2
    assert sent <= producer.tiles.bytes_read


def test_zarr_store_is_what_zarr_python_reads_and_writes(tmp_path):
    import zarr  # zarr-python (the test extra) is the reference implementation here
    from zarr.codecs import BloscCodec

    from rsembed_db.sources.tessera.zarr_tiles import ZarrTiles

    data, paths = make_layouts(tmp_path, ZONES)
    ours = zarr.open_group(str(paths["zarr"]), mode="r")
    assert sorted(ours.group_keys()) == ["utm32", "utm33"]
    # The same store written by zarr-python the way geotessera builds it.
    theirs = zarr.open_group(str(tmp_path / "zp"), mode="w-", zarr_format=3)
    theirs.attrs.update(ours.attrs.asdict())
    for zone in ("utm32", "utm33"):
        src, dst = ours[zone], theirs.create_group(zone)
        dst.attrs.update(src.attrs.asdict())
        for name in ("embeddings", "scales", "x", "y", "time", "band"):
            a = src[name]
            sharded = name in ("embeddings", "scales")
            out = dst.create_array(name, shape=a.shape, dtype=a.dtype, fill_value=a.fill_value,
                                   chunks=a.chunks if sharded else a.shape, shards=a.shards if sharded else None,
                                   compressors=BloscCodec(cname="zstd", clevel=3),
                                   dimension_names=a.metadata.dimension_names)
            out[...] = a[...]
    zarr.consolidate_metadata(str(tmp_path / "zp"))
    mine, reference = ZarrTiles(str(paths["zarr"])), ZarrTiles(str(tmp_path / "zp"))
    for tile in ZONES:
        a, b = mine.read(tile, YEAR), reference.read(tile, YEAR)
        np.testing.assert_array_equal(a.quantised, b.quantised)
        np.testing.assert_array_equal(a.scales, b.scales)
        assert a.transform == b.transform and a.crs == b.crs
        src = data[tile]  # the tile's own pixels, where the store holds them (same ground pixels)
        r, c = round((src.transform.f - a.transform.f) / a.transform.e), round((src.transform.c - a.transform.c) / 50)
        h, w = src.land.shape
        np.testing.assert_array_equal(a.quantised[r:r + h, c:c + w][1:-1, 1:-1], src.quantised[1:-1, 1:-1])


def test_geotessera_download_dir_is_read_in_place_and_its_dataset_checked(tmp_path):
    data, paths = make_layouts(tmp_path, ZONES[:1])
    cache = paths["legacy"]
    for name in ("registry.parquet", "landmasks.parquet"):
        (cache / name).unlink()  # a geotessera download dir has no registries, only the sidecar
    write_sidecar(cache, CAMBRIDGE, format="npy", year=YEAR)
    point = PointBuffer(11.95, 52.45, 300)
    with pytest.raises(SpecError, match=r"tessera\.version: .* holds TESSERA v1\.1 cambridge embeddings .*"
                                        r"asks for v1 vultr.*--config version=v1\.1 --config variant=cambridge"):
        get_embedding("tessera", spatial=point, temporal=T, model_config={"dir": str(cache), "url": "none"})
    with pytest.raises(SpecError, match=r"tessera\.variant: .* holds TESSERA v1\.1 cambridge"):
        get_embedding("tessera", spatial=point, temporal=T,
                      model_config={"dir": str(cache), "url": "none", "version": "1.1", "variant": "dclimate"})
    emb = get_embedding("tessera", spatial=point, temporal=T,
                        model_config={"dir": str(cache), "url": "none", "version": "v1.1", "variant": "cambridge"})
    assert (emb.meta["version"], emb.meta["variant"]) == ("v1.1", "cambridge")
    assert emb.meta["pixels"] > 0
    # An older 0.8-0.10 download dir names the variant in the embeddings directory.
    shutil.move(cache / "global_0.1_degree_representation", cache / "global_0.1_degree_representation.cambridge")
    again = get_embedding("tessera", spatial=point, temporal=T,
                          model_config={"dir": str(cache), "url": "none", "version": "1.1", "variant": "cambridge"})
    np.testing.assert_array_equal(again.data, emb.data)


def test_manifest_and_store_of_another_dataset_are_refused(tmp_path):
    _, paths = make_layouts(tmp_path, ZONES[:1], dataset=CAMBRIDGE)
    mirror = paths["mirror"]
    (mirror / "npy" / "v1").mkdir(parents=True)
    shutil.copy(mirror / "npy" / "v1.1-cam" / "manifest.parquet", mirror / "npy" / "v1" / "manifest.parquet")
    point = PointBuffer(11.95, 52.45, 300)
    with serve(mirror) as server:
        with pytest.raises(SpecError, match=r"tessera\.version: .*manifest\.parquet holds TESSERA v1\.1 cambridge"):
            get_embedding("tessera", spatial=point, temporal=T,
                          model_config={"dir": str(tmp_path / "dl"), "url": server.url, "layout": "npy"})
        good = get_embedding("tessera", spatial=point, temporal=T,
                             model_config={"dir": str(tmp_path / "dl2"), "url": server.url, "version": "v1.1",
                                           "variant": "cambridge"})
    assert good.meta["layout"] == "npy"
    with pytest.raises(SpecError, match=r"tessera\.version: .*zarr/v1\.1 holds TESSERA v1\.1 cambridge"):
        get_embedding("tessera", spatial=point, temporal=T, model_config={"dir": str(paths["zarr"]), "url": "none"})


def test_size_mismatch_from_the_manifest_is_refused(tmp_path):
    from rsembed_db.sources.tessera.datasets import DEFAULT
    from rsembed_db.sources.tessera.synthetic import write_manifest

    _, paths = make_layouts(tmp_path, ZONES[:1])
    write_manifest(paths["mirror"], DEFAULT, [(ZONES[0], YEAR)], wrong_size=ZONES[:1])
    with serve(paths["mirror"]) as server:
        producer = make_producer("tessera", model_config={"dir": str(tmp_path / "dl"), "url": server.url})
        (record,) = [r for g in producer.compute_many(producer.requests([PointBuffer(11.95, 52.45, 300)], T))
                     for r in g]
    assert "size mismatch" in record.error and "the manifest says" in record.error
    assert not (tmp_path / "dl" / ZONES[0].embedding_path(YEAR)).exists()


def test_dataset_in_keys_and_description():
    default = make_producer("tessera")
    explicit = make_producer("tessera", model_config={"version": "1.0", "variant": "vultr"})
    cam = make_producer("tessera", model_config={"version": "v1.1", "variant": "cambridge"})
    cell, box = H3Cell("8928308280fffff"), BBox(12.1, 52.1, 12.2, 52.2)
    # The keys of the default dataset are the ones stored before versions and variants existed.
    assert [r.key for r in default.requests([cell, box], T)] == [
        "07026712c86f1b1274d0451319fa00e9450e2208158c8539ae0d9c3d3fb2a2dc",
        "dd778e0ed8fda60b38a9641d1a31dcd188a87d6802c15219e62d7dd93107635e"]
    assert [r.key for r in explicit.requests([cell, box], T)] == [r.key for r in default.requests([cell, box], T)]
    assert cam.key_config == {"version": "v1.1", "variant": "cambridge"}
    assert {r.key for r in cam.requests([cell], T)}.isdisjoint({r.key for r in default.requests([cell], T)})
    v2 = make_producer("tessera", model_config={"version": "2.0"})
    assert v2.key_config == {"version": "v2", "variant": "2B-L~beta1"}
    with pytest.raises(SpecError, match=r"tessera\.variant: TESSERA v1\.1 has no variant 'vultr'.*cambridge, dclimate"):
        make_producer("tessera", model_config={"version": "v1.1", "variant": "vultr"})
    with pytest.raises(SpecError, match=r"tessera\.version: unknown TESSERA dataset version 'v3'"):
        make_producer("tessera", model_config={"version": "v3"})
    assert describe_model("tessera").config["variant"] == "vultr"
    out = json.loads(run_cli("describe", "tessera", "--config", "version=1.1", "--config", "variant=cambridge").stdout)
    assert (out["config"]["version"], out["config"]["variant"]) == ("v1.1", "cambridge")
    assert out["config"]["key"] == {"version": "v1.1", "variant": "cambridge"}


def test_verify_local_checks_sizes_against_the_manifest(tmp_path):
    from rsembed_db.sources.tessera.datasets import DEFAULT
    from rsembed_db.sources.tessera.synthetic import write_manifest

    _, paths = make_layouts(tmp_path, ZONES[:1])
    config = {"dir": str(paths["mirror"]), "url": "none", "layout": "npy", "verify_local": "true"}
    point = PointBuffer(11.95, 52.45, 300)
    assert get_embedding("tessera", spatial=point, temporal=T, model_config=config).meta["pixels"] > 0
    write_manifest(paths["mirror"], DEFAULT, [(ZONES[0], YEAR)], wrong_size=ZONES[:1])
    with pytest.raises(TileFailure, match=r"size of .*grid_11\.95_52\.45\.npy \(\d+ bytes\) does not match the manifest"):
        get_embedding("tessera", spatial=point, temporal=T, model_config=config)
