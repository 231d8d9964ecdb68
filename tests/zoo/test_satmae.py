"""SatMAE's three families (fMoW-RGB, multi-spectral group-channel, temporal), offline: tiny
random instances of the real encoders saved as the authors' MAE checkpoints
(``{"model": encoder + decoder tensors, "epoch": ...}``) in a weights folder and loaded
through the real loader."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import satmae
from rsembed_db.models.base import InputPrep
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import get_embedder
from rsembed_db.specs import InputPrepSpec, SpecError
from tests.helpers.zoo import TINY_VIT, make_chip

# The fixed channel (256) and time (384) encodings take part of D: tiny widths above them.
TINY = {"vit_large_patch16": (32, TINY_VIT),
        "multispectral_vit_base": (288, {"depth": 1, "num_heads": 2}),
        "multispectral_vit_large": (288, {"depth": 1, "num_heads": 2}),
        "temporal_vit_large": (416, {"depth": 1, "num_heads": 2})}
NEW = ("multispectral_vit_base", "multispectral_vit_large", "temporal_vit_large")
DATES = ["2021-03-02", "2021-07-14", "2021-11-20"]


def install(monkeypatch, weights, variant):
    dim, arch = TINY[variant]
    monkeypatch.setitem(satmae.VARIANTS, variant, replace(satmae.VARIANTS[variant], dim=dim, arch=arch))
    model = get_embedder("satmae", variant=variant).build()
    state = {**model.state_dict(), "mask_token": torch.zeros(1, 1, 16), "decoder_embed.weight": torch.ones(16, dim),
             "decoder_pred.0.weight": torch.ones(4, 16)}
    weights.mkdir(exist_ok=True)
    torch.save({"model": state, "epoch": 199}, weights / satmae.VARIANTS[variant].weights.basename)
    return model


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    weights = tmp_path / "weights"

    def make(variant, **config):
        torch.manual_seed(0)
        saved = install(monkeypatch, weights, variant)
        return get_embedder("satmae", variant=variant, weights_dir=str(weights), device="cpu", **config), saved
    return make


def chip_for(embedder, size=None, seed=0, **kw):
    frames = embedder.frames if embedder.frames > 1 else None
    chip = make_chip(embedder.bands, size=size or embedder.image_size, seed=seed, frames=frames, **kw)
    if frames:
        chip.meta["frame_dates"] = list(DATES)
    return chip


@pytest.mark.parametrize("variant", NEW)
def test_loads_the_published_format_and_returns_pooled_and_grid(zoo, variant):
    embedder, saved = zoo(variant)
    loaded = embedder.model()
    for key in ("patch_embed.proj.weight" if variant.startswith("temporal") else "patch_embed.2.proj.weight",
                "blocks.0.attn.qkv.weight", "norm.weight"):
        assert torch.equal(loaded.state_dict()[key], saved.state_dict()[key])  # the checkpoint, not random
    dim, (h, w) = embedder.dim, embedder.grid
    assert (h, w) == ((12, 12) if variant.startswith("multi") else (14, 14))
    chip = chip_for(embedder, size=150)
    fmap = embedder.embed_prepared([chip], [InputPrep(InputPrepSpec(mode="resize"), grid_output=True)])[0]
    assert fmap.values.shape == (dim, h, w) and fmap.valid.all()
    assert fmap.meta["weights_origin"] == "weights_dir"
    assert pool(fmap, chip.grid).shape == (dim,)
    again = embedder.embed([chip])[0].values
    np.testing.assert_array_equal(again, embedder.embed([chip])[0].values)  # deterministic
    changed = chip_for(embedder, size=150)
    band = embedder.bands.index("B04")
    changed.data[..., band, :, :] += 500.0
    assert not np.allclose(embedder.embed([changed])[0].values, again)
    pair = embedder.embed([chip_for(embedder, size=150, seed=1), chip])
    np.testing.assert_allclose(pair[1].values, again, rtol=1e-4, atol=1e-5)  # batched equals single


@pytest.mark.parametrize("variant", ["vit_large_patch16", *NEW])
def test_grid_is_spatially_correct(zoo, variant):
    """With every block reduced to its residual path, a token depends on its own patch only:
    changing the pixels of patch (row 2, column 5) changes grid cell (2, 5) and no other.
    A grid built from shuffled tokens (the MAE ``random_masking`` trap) fails this."""
    embedder, _ = zoo(variant)
    model = embedder.model()
    with torch.no_grad():
        for block in model.blocks:
            for layer in (block.attn.proj, block.mlp.fc2):
                layer.weight.zero_()
                layer.bias.zero_()
    chip = chip_for(embedder)
    base = embedder.embed([chip])[0].values
    p = embedder.patch_size
    chip.data[..., 2 * p:3 * p, 5 * p:6 * p] += 1500.0
    moved = embedder.embed([chip])[0].values
    changed = np.argwhere(np.abs(moved - base).max(axis=0) > 1e-5)
    assert changed.tolist() == [[2, 5]]


def test_default_rgb_variant_keeps_its_config_and_key_fields():
    embedder = get_embedder("satmae")
    assert embedder.config == {"variant": "vit_large_patch16", "rgb_max": 10000.0, "precision": "fp32",
                               "revision": "zenodo-7369797"}
    assert (embedder.bands, embedder.image_size, embedder.dim, embedder.grid) == (("B04", "B03", "B02"), 224, 1024,
                                                                                  (14, 14))
    assert embedder.describe().citation.startswith("Cong Y.")


def test_multispectral_input_contract():
    embedder = get_embedder("satmae", variant="multispectral_vit_large")
    description = embedder.describe()
    assert description.bands == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    assert (description.dim, description.image_size, description.patch_size) == (1024, 96, 8)
    assert description.normalisation["channel_groups"] == [["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A"],
                                                           ["B11", "B12"]]
    assert embedder.default_sensor().collection == "COPERNICUS/S2_HARMONIZED"  # L1C, as fMoW-Sentinel
    assert get_embedder("satmae", variant="multispectral_vit_base").dim == 768
    # SentinelNormalize: (DN - (mean - 2 std)) / (4 std) * 255, truncated, / 255.
    chip = make_chip(embedder.bands, size=4, dn=1184.3824625 + 650.2842772)  # B02 at mean + 1 std
    x = embedder.model_input(chip).data
    assert x[0, 0, 0] == pytest.approx(191 / 255)  # floor(0.75 * 255)
    chip.valid[1, 1] = False
    assert np.all(embedder.model_input(chip).data[:, 1, 1] == pytest.approx(127 / 255))
    with pytest.raises(SpecError, match="bands"):
        embedder.model_input(make_chip(("B02", "B03", "B04", "B08"), size=4))
    with pytest.raises(SpecError, match="rgb_max"):
        get_embedder("satmae", variant="multispectral_vit_base", rgb_max=255)
    with pytest.raises(SpecError, match="frames"):
        embedder.model_input(make_chip(embedder.bands, size=4, frames=2))


def test_temporal_frames_and_timestamps(zoo):
    embedder, _ = zoo("temporal_vit_large")
    assert embedder.describe().frames == 3 and embedder.bands == ("B04", "B03", "B02")
    chip = chip_for(embedder)  # centred near 15.0 E: 10:30 local solar time is 09:30 UTC
    assert embedder.side_inputs(chip, {})["timestamps"] == [(19, 2, 9), (19, 6, 9), (19, 10, 9)]
    base = embedder.embed([chip])[0].values
    chip.meta["frame_dates"] = ["2016-03-02", "2016-07-14", "2016-11-20"]
    assert not np.allclose(embedder.embed([chip])[0].values, base)
    with pytest.raises(SpecError, match="frames"):
        embedder.embed([make_chip(embedder.bands)])
    undated = chip_for(embedder)
    del undated.meta["frame_dates"]
    with pytest.raises(SpecError, match="frame_dates"):
        embedder.embed([undated])


@pytest.mark.parametrize("variant", NEW)
def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch, variant):
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("satmae", variant=variant, weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights) as err:
        embedder.model()
    message = str(err.value)
    assert embedder.weights.basename in message and "zenodo.org/record/" in message and str(tmp_path / "w") in message
