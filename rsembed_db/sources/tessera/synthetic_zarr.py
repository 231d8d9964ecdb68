"""Write a Tessera per-UTM-zone Zarr v3 store from tiles, as geotessera 0.11 builds them (tests, benchmarks).

The store (geotessera ``zarr.py``: ``init_store``, ``_create_zone_group``, zarr-fill):

- root group: ``geoemb:*`` attributes, inline consolidated metadata;
- one group ``utm{NN}`` per zone on the zone's northern CRS (``proj:code`` EPSG:326NN,
  southern northings negative), ``spatial:transform`` ``[px, 0, x0, 0, -px, y0]``,
  ``spatial:shape`` ``[H, W]`` (multiples of the shard size);
- ``embeddings`` int8 (T, 128, H, W), inner chunks (1, 128, 32, 32) in shards of
  (1, 128, 4096, 4096), fill 0; ``scales`` float32 (T, H, W), chunks (1, 32, 32) in
  (1, 4096, 4096) shards, fill +inf (never written); both Blosc zstd level 3 with Zarr's
  default shuffle; coordinate arrays ``x``, ``y`` (pixel centres), ``time`` (years), ``band``;
- tiles placed at ``floor`` offsets; scales NaN where the landmask is 0 or the scale fails
  the validity rule; empty inner chunks (all fill) are not written.

Shard and inner-chunk sizes are parameters so tests can write small stores, and so is the
Blosc compressor (readers decode any).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import blosc

from rsembed_db.sources.tessera.layout import DIM
from rsembed_db.sources.tessera.synthetic import SyntheticTile, canonical
from rsembed_db.sources.tessera.tile import valid_scales

SHARD = 4096
INNER = 32
_BLOSC = {"cname": "zstd", "clevel": 3, "blocksize": 0}
_SHUFFLES = {"noshuffle": blosc.NOSHUFFLE, "shuffle": blosc.SHUFFLE, "bitshuffle": blosc.BITSHUFFLE}


def write_zarr_store(root: str | Path, tiles: Iterable[SyntheticTile], shard: int = SHARD,
                     inner: int = INNER, years: list[int] | None = None, cname: str = "zstd") -> None:
    """A store at ``root`` holding ``tiles`` (any years and zones)."""
    root = Path(root)
    codec = {**_BLOSC, "cname": cname}
    tiles = list(tiles)
    years = sorted(years or {t.year for t in tiles})
    zones: dict[str, list[SyntheticTile]] = {}
    for tile in tiles:
        zones.setdefault(canonical(tile.crs, tile.transform)[0], []).append(tile)
    nodes: dict[str, dict] = {}
    for crs, members in sorted(zones.items()):
        zone = int(crs.split(":")[1]) - 32600
        nodes.update(_write_zone(root, f"utm{zone:02d}", crs, members, years, shard, inner, codec))
    attrs = {"geoemb:type": "pixel", "geoemb:dimensions": DIM, "geoemb:model": "https://geotessera.org/model/1.0",
             "geoemb:data_type": "int8", "geoemb:gsd": 10.0, "geoemb:spatial_layout": "utm_zones",
             "geoemb:build_version": "rsembed-db synthetic",
             "geoemb:quantization": {"method": "per_pixel_scale", "original_dtype": "float32",
                                     "quantized_dtype": "int8",
                                     "scale": {"type": "array", "array_name": "scales", "nodata": "+inf"}}}
    meta = _group(attrs)
    meta["consolidated_metadata"] = {"kind": "inline", "must_understand": False, "metadata": nodes}
    _write_json(root / "zarr.json", meta)


def _write_zone(root: Path, name: str, crs: str, tiles: list[SyntheticTile], years: list[int],
                shard: int, inner: int, codec: dict) -> dict[str, dict]:
    pixel = tiles[0].transform.a
    grids = [canonical(t.crs, t.transform)[1] for t in tiles]
    left = min(g.c for g in grids)
    top = max(g.f for g in grids)
    right = max(g.c + pixel * t.quantised.shape[1] for g, t in zip(grids, tiles))
    bottom = min(g.f - pixel * t.quantised.shape[0] for g, t in zip(grids, tiles))
    width = math.ceil(round((right - left) / pixel) / shard) * shard
    height = math.ceil(round((top - bottom) / pixel) / shard) * shard
    placed = [(t, math.floor((top - g.f) / pixel), math.floor((g.c - left) / pixel)) for t, g in zip(tiles, grids)]
    T = len(years)
    group = _group({"proj:code": crs, "spatial:dimensions": ["y", "x"],
                    "spatial:transform": [pixel, 0.0, left, 0.0, -pixel, top], "spatial:shape": [height, width],
                    "spatial:bbox": [left, top - height * pixel, left + width * pixel, top],
                    "spatial:registration": "pixel"})
    nodes = {name: group}
    _write_json(root / name / "zarr.json", group)
    arrays = {
        "embeddings": _array((T, DIM, height, width), "int8", 0, (1, DIM, shard, shard), (1, DIM, inner, inner),
                             ["time", "band", "y", "x"], codec),
        "scales": _array((T, height, width), "float32", "Infinity", (1, shard, shard), (1, inner, inner),
                         ["time", "y", "x"], codec),
    }
    coords: dict[str, np.ndarray] = {"x": left + (np.arange(width) + 0.5) * pixel, "y": top - (np.arange(height) + 0.5) * pixel,
              "time": np.array(years, np.int32), "band": np.arange(DIM, dtype=np.int32)}
    for key, values in coords.items():
        arrays[key] = _array(values.shape, values.dtype.name, 0, values.shape, None, [key], codec)
        _write_file(root / name / key / "c" / "0", _encode(values, codec))
    for key, meta in arrays.items():
        nodes[f"{name}/{key}"] = meta
        _write_json(root / name / key / "zarr.json", meta)
    for t, year in enumerate(years):
        here = [p for p in placed if p[0].year == year]
        for sr in range(height // shard):
            for sc in range(width // shard):
                _write_shards(root / name, t, sr, sc, shard, inner, here, codec)
    return nodes


def _write_shards(zone_dir: Path, t: int, sr: int, sc: int, shard: int, inner: int, placed, codec: dict) -> None:
    """The embeddings and scales shards at shard (sr, sc) of time step ``t``, band row by band row."""
    r0, c0 = sr * shard, sc * shard
    hits = [(tile, r - r0, c - c0) for tile, r, c in placed
            if r < r0 + shard and r + tile.quantised.shape[0] > r0 and c < c0 + shard and c + tile.quantised.shape[1] > c0]
    if not hits:
        return
    n = shard // inner
    emb_chunks: list[bytes | None] = []
    scale_chunks: list[bytes | None] = []
    for band_row in range(n):
        top = band_row * inner
        values = np.zeros((DIM, inner, shard), np.int8)
        scales = np.full((inner, shard), np.inf, np.float32)
        for tile, dr, dc in hits:  # tiles written in order: a later tile wins where they overlap
            h, w = tile.quantised.shape[:2]
            a, b = max(top, dr), min(top + inner, dr + h)
            x0, x1 = max(0, dc), min(shard, dc + w)
            if a >= b or x0 >= x1:
                continue
            rows, cols = slice(a - dr, b - dr), slice(x0 - dc, x1 - dc)
            s = tile.scales[rows, cols].astype(np.float32).copy()
            s[~(tile.land[rows, cols] & valid_scales(s))] = np.nan
            values[:, a - top:b - top, x0:x1] = tile.quantised[rows, cols].transpose(2, 0, 1)
            scales[a - top:b - top, x0:x1] = s
        for k in range(n):
            cols = slice(k * inner, (k + 1) * inner)
            emb, sca = values[:, :, cols], scales[:, cols]
            emb_chunks.append(_encode(emb[None], codec) if emb.any() else None)
            scale_chunks.append(None if np.isposinf(sca).all() else _encode(sca[None], codec))
    key = f"c/{t}/0/{sr}/{sc}"
    _write_shard(zone_dir / "embeddings" / key, emb_chunks)
    _write_shard(zone_dir / "scales" / f"c/{t}/{sr}/{sc}", scale_chunks)


def _write_shard(path: Path, chunks: list[bytes | None]) -> None:
    """Encoded inner chunks (C order) followed by the index: (offset, size) uint64 pairs + crc32c."""
    if all(c is None for c in chunks):
        return
    index = np.full((len(chunks), 2), 2**64 - 1, dtype="<u8")
    body, offset = [], 0
    for i, chunk in enumerate(chunks):
        if chunk is not None:
            index[i] = (offset, len(chunk))
            body.append(chunk)
            offset += len(chunk)
    raw = index.tobytes()
    _write_file(path, b"".join(body) + raw + google_crc32c.value(raw).to_bytes(4, "little"))


def _encode(values: np.ndarray, codec: dict) -> bytes:
    data = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    shuffle = _SHUFFLES[_shuffle_name(values.dtype)]
    return blosc.compress(data.tobytes(), codec["cname"].encode(), codec["clevel"], shuffle, blocksize=0,
                          typesize=data.dtype.itemsize)


def _shuffle_name(dtype: np.dtype) -> str:
    return "bitshuffle" if dtype.itemsize == 1 else "shuffle"  # zarr-python's BloscCodec default


def _blosc(dtype: np.dtype, codec: dict) -> dict:
    return {"name": "blosc", "configuration": {"typesize": dtype.itemsize, **codec,
                                               "shuffle": _shuffle_name(dtype)}}


def _array(shape, data_type: str, fill, chunk, inner, dims: list[str], codec: dict) -> dict:
    dtype = np.dtype(data_type)
    endian = {"name": "bytes", "configuration": {"endian": "little"}} if dtype.itemsize > 1 else {"name": "bytes"}
    codecs = [endian, _blosc(dtype, codec)]
    if inner is not None:
        codecs = [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": list(inner), "codecs": codecs,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            "index_location": "end"}}]
    return {"shape": list(shape), "data_type": data_type,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill, "codecs": codecs, "attributes": {}, "dimension_names": dims,
            "zarr_format": 3, "node_type": "array", "storage_transformers": []}


def _group(attrs: dict) -> dict:
    return {"attributes": attrs, "zarr_format": 3, "node_type": "group"}


def _write_json(path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=2))


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
