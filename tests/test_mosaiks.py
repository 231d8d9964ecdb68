"""MOSAIKS embedder on chips cut from the bundled real Sentinel-2 scene."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h3
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box

from rsembed_db.models.base import InputPrep
from rsembed_db.models.exact_conv import ExactCorrelation
from rsembed_db.models.mosaiks import MosaiksEmbedder
from rsembed_db.models.pooling import pool, to_dataarray
from rsembed_db.producers.catalog import get_embedder, list_models
from rsembed_db.sources.base import Chip
from rsembed_db.specs import GridCell, H3Cell, SpecError
from rsembed_db.tiling.chip_grid import ChipGrid, chip_grid_for

SCENE = Path(__file__).resolve().parents[1] / "examples/data/havelland_s2l1c_20170216_13band_10m.tif"
H3_CELL = h3.latlng_to_cell(52.49, 12.60, 8)  # a res-8 hexagon inside the scene
SQUARE = GridCell("EPSG:32633", 336000, 5818000, 640)  # 64 x 64 px

# SSL4EO-S12 Level-1C statistics (DN), typed in independently of the model's table.
L1C = {"B02": (1390.78157673, 850.34818441), "B03": (1314.8729939, 875.06484736),
       "B04": (1363.52445545, 1138.84957046), "B08": (2299.90463006, 1248.42891965)}


def read_chip(grid: ChipGrid) -> Chip:
    """All 13 bands of the scene on ``grid`` (which must be aligned to the scene's pixels)."""
    with rasterio.open(SCENE) as ds:
        col = (grid.transform.c - ds.transform.c) / ds.transform.a
        row = (grid.transform.f - ds.transform.f) / ds.transform.e
        assert col.is_integer() and row.is_integer() and str(ds.crs) == grid.crs
        data = ds.read(window=Window(int(col), int(row), grid.width, grid.height)).astype(np.float32)
        bands = tuple(ds.descriptions)
    return Chip(data, (data != 0).all(axis=0), bands, grid)


@pytest.fixture(scope="module")
def hex_chip() -> Chip:
    return read_chip(chip_grid_for(H3Cell(H3_CELL), 10))


@pytest.fixture(scope="module")
def square_chip() -> Chip:
    return read_chip(chip_grid_for(SQUARE, 10))


@pytest.fixture(scope="module")
def model() -> MosaiksEmbedder:
    return MosaiksEmbedder(num_filters=32)


def test_registered_with_resolved_json_config() -> None:
    assert "mosaiks" in list_models()
    emb = get_embedder("mosaiks")
    assert isinstance(emb, MosaiksEmbedder)
    assert json.loads(json.dumps(emb.config)) == {
        "bands": ["B02", "B03", "B04", "B08"], "num_filters": 128, "kernel_size": 3,
        "seed": 0, "bias": 0.0, "scale_m": 10.0, "stats": "s2_l1c", "method": "gaussian-rcf/1"}
    # A stored config recreates the same embedder; another method version is refused.
    assert MosaiksEmbedder(**emb.config).config == emb.config
    with pytest.raises(SpecError, match="method"):
        MosaiksEmbedder(method="gaussian-rcf/0")


def test_describe_and_default_sensor() -> None:
    emb = MosaiksEmbedder(seed=7, scale_m=20)
    desc = emb.describe()
    assert (desc.name, desc.dim, desc.kind) == ("mosaiks", 256, "on_the_fly")
    assert (desc.patch_size, desc.image_size) == (1, None)
    assert desc.bands == ("B02", "B03", "B04", "B08") and desc.scale_m == 20.0
    norm = desc.normalisation
    assert norm["scale"] == 1e-4 and "SSL4EO-S12" in norm["source"]
    np.testing.assert_allclose(norm["mean"], [L1C[b][0] * 1e-4 for b in desc.bands], rtol=1e-12)
    np.testing.assert_allclose(norm["std"], [L1C[b][1] * 1e-4 for b in desc.bands], rtol=1e-12)
    assert "seed=7" in desc.weights and desc.licence.startswith("MIT")
    assert desc.config == emb.config
    json.dumps(desc.to_dict())
    sensor = emb.default_sensor()
    assert (sensor.collection, sensor.bands, sensor.scale_m, sensor.composite) == (
        "local", desc.bands, 20.0, "median")


def test_filters_zero_mean_unit_norm_and_seeded() -> None:
    w = MosaiksEmbedder(num_filters=16, kernel_size=5).filters
    assert w.shape == (16, 4, 5, 5)
    np.testing.assert_allclose(w.reshape(16, -1).sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(w.reshape(16, -1), axis=1), 1, rtol=1e-12)
    assert np.array_equal(w, MosaiksEmbedder(num_filters=16, kernel_size=5).filters)
    assert not np.allclose(w, MosaiksEmbedder(num_filters=16, kernel_size=5, seed=1).filters)


def test_grid_shape_and_georeferencing(model: MosaiksEmbedder, hex_chip: Chip) -> None:
    (fm,) = model.embed([hex_chip])
    grid = hex_chip.grid
    assert fm.values.shape == (2 * 32, grid.height, grid.width) and fm.values.dtype == np.float32
    assert fm.valid.shape == (grid.height, grid.width)
    assert fm.transform == grid.transform and fm.crs == grid.crs == "EPSG:32633"
    da = to_dataarray(fm)
    assert da.shape == fm.values.shape and da.attrs["crs"] == "EPSG:32633"
    assert da.attrs["transform"] == tuple(grid.transform)[:6]
    left, bottom, right, top = grid.bounds
    assert da.x.values[0] == left + 5 and da.x.values[-1] == right - 5
    assert da.y.values[0] == top - 5 and da.y.values[-1] == bottom + 5


def test_dim_is_twice_num_filters(square_chip: Chip) -> None:
    emb = MosaiksEmbedder(num_filters=5)
    assert emb.dim == 10
    assert emb.embed([square_chip])[0].values.shape[0] == 10


def test_same_input_same_bits(model: MosaiksEmbedder, hex_chip: Chip) -> None:
    a, b = model.embed([hex_chip])[0], MosaiksEmbedder(num_filters=32).embed([hex_chip])[0]
    assert a.values.tobytes() == b.values.tobytes()
    assert pool(a, hex_chip.grid).tobytes() == pool(b, hex_chip.grid).tobytes()


_SUBPROCESS = """
import hashlib, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads({threads})
from test_mosaiks import H3_CELL, read_chip
from rsembed_db.models.mosaiks import MosaiksEmbedder
from rsembed_db.models.pooling import pool
from rsembed_db.specs import H3Cell
from rsembed_db.tiling.chip_grid import chip_grid_for
chip = read_chip(chip_grid_for(H3Cell(H3_CELL), 10))
fm = MosaiksEmbedder().embed([chip])[0]
digest = hashlib.sha256(fm.values.tobytes() + pool(fm, chip.grid).tobytes()).hexdigest()
print(torch.get_num_threads(), digest)
"""


def test_bit_identical_across_processes_and_thread_counts(hex_chip: Chip) -> None:
    fm = MosaiksEmbedder().embed([hex_chip])[0]
    expected = hashlib.sha256(fm.values.tobytes() + pool(fm, hex_chip.grid).tobytes()).hexdigest()
    for threads in (1, 2):
        script = _SUBPROCESS.format(tests=str(Path(__file__).parent), threads=threads)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        assert out.stdout.split() == [str(threads), expected]


def test_pooled_path_equals_pooling_the_map(model: MosaiksEmbedder, hex_chip: Chip, square_chip: Chip) -> None:
    """Ingest's pooled-only path (ROI cells only, whole batch) gives the bits of pooling ``embed``'s maps."""
    chips = [hex_chip, square_chip, hex_chip]
    poolings = ["mean", "mean", "max"]
    pooled = model.embed_pooled(chips, [InputPrep()] * 3, poolings)
    for chip, how, result in zip(chips, poolings, pooled):
        assert result.failure is None and result.vector is not None
        assert result.vector.tobytes() == pool(model.embed([chip])[0], chip.grid, how).tobytes()


def test_exact_correlation_independent_of_threads_and_chunking(hex_chip: Chip) -> None:
    """The GEMM convolution gives the same bits on 1 or 2 intra-op threads and for any pixel subset."""
    model = MosaiksEmbedder(num_filters=16)
    x, _ = model.normalised(hex_chip)
    pad = model.config["kernel_size"] // 2
    padded = np.pad(x, [(0, 0), (pad, pad), (pad, pad)], mode="reflect")
    correlation = ExactCorrelation(model.filters)
    pixels = x.shape[1] * x.shape[2]
    outputs = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = torch.empty((32, pixels), dtype=torch.float32)
            correlation.relu_pair(padded, 0.0, out)
            outputs.append(out.numpy().tobytes())
    finally:
        torch.set_num_threads(previous)
    assert outputs[0] == outputs[1]
    full = np.frombuffer(outputs[0], np.float32).reshape(32, pixels)
    some = np.random.default_rng(0).choice(pixels, 777, replace=False)
    assert correlation.relu_pair_at(padded, some, 0.0).tobytes() == np.ascontiguousarray(full[:, some]).tobytes()


def test_different_seed_different_vector(square_chip: Chip) -> None:
    a = pool(MosaiksEmbedder(seed=0).embed([square_chip])[0], square_chip.grid)
    b = pool(MosaiksEmbedder(seed=1).embed([square_chip])[0], square_chip.grid)
    assert a.shape == b.shape == (256,) and not np.allclose(a, b)


def test_hexagon_pooling_matches_masked_grid(model: MosaiksEmbedder, hex_chip: Chip) -> None:
    (fm,) = model.embed([hex_chip])
    mask = hex_chip.grid.roi_mask() & fm.valid
    assert 0 < mask.sum() < mask.size * 0.9  # a hexagon, not its bounding box
    inside = fm.values[:, mask].astype(np.float64)
    np.testing.assert_allclose(pool(fm, hex_chip.grid, "mean"), inside.mean(axis=1), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pool(fm, hex_chip.grid, "max"), inside.max(axis=1).astype(np.float32))
    everything = fm.values.reshape(fm.values.shape[0], -1).mean(axis=1)
    assert not np.allclose(pool(fm, hex_chip.grid, "mean"), everything, rtol=0, atol=1e-6)


def _with_invalid_rows(chip: Chip, rows: int, fill: float) -> Chip:
    data, valid = chip.data.copy(), chip.valid.copy()
    data[:, :rows], valid[:rows] = fill, False
    return Chip(data, valid, chip.bands, chip.grid)


def test_invalid_pixels_excluded_and_do_not_leak(model: MosaiksEmbedder, hex_chip: Chip) -> None:
    full = model.embed([hex_chip])[0]
    masked = model.embed([_with_invalid_rows(hex_chip, 30, 0.0)])[0]
    garbage = model.embed([_with_invalid_rows(hex_chip, 30, 65535.0)])[0]
    # Rows < 30 are invalid input; row 30 sees row 29 through its 3 x 3 neighbourhood.
    expected_valid = full.valid.copy()
    expected_valid[:31] = False
    np.testing.assert_array_equal(masked.valid, expected_valid)
    assert not masked.values[:, ~masked.valid].any()
    # Fill values never reach valid features, whatever they are.
    np.testing.assert_array_equal(masked.values, garbage.values)
    np.testing.assert_array_equal(masked.values[:, masked.valid], full.values[:, masked.valid])
    cells = hex_chip.grid.roi_mask() & expected_valid
    expected = masked.values[:, cells].astype(np.float64).mean(axis=1)
    pooled = pool(masked, hex_chip.grid)
    np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-6)
    assert not np.allclose(pooled, pool(full, hex_chip.grid), rtol=0, atol=1e-6)


def test_non_finite_input_is_invalid(model: MosaiksEmbedder, square_chip: Chip) -> None:
    data = square_chip.data.copy()
    data[1, 10, 10] = np.nan  # B02
    fm = model.embed([Chip(data, square_chip.valid, square_chip.bands, square_chip.grid)])[0]
    assert not fm.valid[9:12, 9:12].any() and fm.valid[8, 8] and fm.valid[12, 12]
    assert np.isfinite(fm.values).all()


def _hand_z(dn: np.ndarray, bands: tuple[str, ...], weights: np.ndarray, y: int, x: int) -> float:
    """z at (y, x) by the textbook formula: reflect padding, standardised reflectance."""
    c_count, k = weights.shape[0], weights.shape[-1]
    h, w = dn.shape[1:]
    reflect = lambda i, n: -i if i < 0 else 2 * (n - 1) - i if i >= n else i  # noqa: E731
    total = 0.0
    for c in range(c_count):
        mean, std = L1C[("B02", "B03", "B04", "B08")[c]]
        plane = dn[bands.index(("B02", "B03", "B04", "B08")[c])]
        for i in range(k):
            for j in range(k):
                v = float(plane[reflect(y + i - k // 2, h), reflect(x + j - k // 2, w)])
                total += weights[c, i, j] * (v * 1e-4 - mean * 1e-4) / (std * 1e-4)
    return total


@pytest.mark.parametrize("bias", [0.0, 0.05])
def test_normalisation_and_response_by_hand(bias: float) -> None:
    rng = np.random.default_rng(42)
    bands = ("B08", "B01", "B04", "B03", "B02")  # shuffled, with an extra band
    dn = rng.integers(300, 4000, size=(5, 5, 6)).astype(np.float32)
    t = Affine(10, 0, 336000, 0, -10, 5818000)
    grid = ChipGrid("EPSG:32633", t, 6, 5, box(336000, 5817950, 336060, 5818000))
    emb = MosaiksEmbedder(num_filters=3, bias=bias)
    (fm,) = emb.embed([Chip(dn, np.ones((5, 6), bool), bands, grid)])
    weights = emb.filters
    for f in range(3):
        for y, x in [(2, 3), (0, 0), (4, 5)]:  # interior and two reflected corners
            z = _hand_z(dn, bands, weights[f], y, x)
            assert fm.values[f, y, x] == pytest.approx(max(z - bias, 0.0), rel=1e-6, abs=1e-7)
            assert fm.values[3 + f, y, x] == pytest.approx(max(-z - bias, 0.0), rel=1e-6, abs=1e-7)


def test_batch_of_mixed_shapes_equals_one_by_one(model: MosaiksEmbedder, hex_chip: Chip,
                                                 square_chip: Chip) -> None:
    other_square = read_chip(chip_grid_for(GridCell("EPSG:32633", 340000, 5816000, 640), 10))
    chips = [square_chip, hex_chip, other_square]
    batched = model.embed(chips)
    for chip, fm in zip(chips, batched, strict=True):
        (alone,) = model.embed([chip])
        assert fm.values.tobytes() == alone.values.tobytes()
        np.testing.assert_array_equal(fm.valid, alone.valid)
        assert fm.transform == chip.grid.transform


def test_chip_without_a_model_band_is_rejected(model: MosaiksEmbedder, square_chip: Chip) -> None:
    keep = [square_chip.bands.index(b) for b in ("B02", "B03", "B04")]
    chip = Chip(square_chip.data[keep], square_chip.valid, ("B02", "B03", "B04"), square_chip.grid)
    with pytest.raises(SpecError) as err:
        model.embed([chip])
    assert err.value.field == "bands" and "B08" in str(err.value)


@pytest.mark.parametrize("field, config", [
    ("bands", {"bands": ["B02", "XX"]}),
    ("bands", {"bands": []}),
    ("bands", {"bands": "B02"}),
    ("bands", {"bands": ["B02", "B02"]}),
    ("bands", {"bands": ["B02", "B10"], "stats": "s2_l2a"}),
    ("num_filters", {"num_filters": 0}),
    ("num_filters", {"num_filters": 2.5}),
    ("num_filters", {"num_filters": True}),
    ("kernel_size", {"kernel_size": 4}),
    ("kernel_size", {"kernel_size": 0}),
    ("kernel_size", {"bands": ["B02"], "kernel_size": 1}),
    ("seed", {"seed": -1}),
    ("seed", {"seed": "0"}),
    ("bias", {"bias": -0.5}),
    ("bias", {"bias": float("nan")}),
    ("bias", {"bias": "1"}),
    ("scale_m", {"scale_m": 0}),
    ("stats", {"stats": "s2_l3"}),
    ("model_config", {"filters": 8}),
])
def test_bad_config_names_the_field(field: str, config: dict) -> None:
    with pytest.raises(SpecError) as err:
        get_embedder("mosaiks", **config)
    assert err.value.field == field


@pytest.mark.parametrize("shape", [(1, 1), (2, 3)])
def test_chips_smaller_than_the_kernel(shape: tuple[int, int]) -> None:
    h, w = shape
    grid = ChipGrid("EPSG:32633", Affine(10, 0, 336000, 0, -10, 5818000), w, h,
                    box(336000, 5818000 - 10 * h, 336000 + 10 * w, 5818000))
    data = np.full((4, h, w), 1500, np.float32)
    (fm,) = MosaiksEmbedder(num_filters=4, kernel_size=5).embed(
        [Chip(data, np.ones(shape, bool), ("B02", "B03", "B04", "B08"), grid)])
    assert fm.values.shape == (8, h, w) and fm.valid.all() and np.isfinite(fm.values).all()


def test_unknown_pooling_is_rejected(model: MosaiksEmbedder, square_chip: Chip) -> None:
    with pytest.raises(SpecError) as err:
        pool(model.embed([square_chip])[0], square_chip.grid, "median")
    assert err.value.field == "output.pooling"
