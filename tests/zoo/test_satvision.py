"""SatVision-TOA offline: a tiny SwinV2 of the giant's structure (four stages, window 8,
an extra norm every 6th block, patch merging after stages 0-2) saved as the published
DeepSpeed model states (``{"module": {"encoder.*", "decoder.*"}, ...}``) in a fake Hugging
Face cache and loaded through the real loader."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import satvision
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import SpecError
from tests.helpers.zoo import hf_file, make_chip

TINY = satvision.Variant(64, 4, {"embed_dim": 8, "depths": (2, 2, 6, 2), "num_heads": (1, 1, 2, 2), "window_size": 8,
                                 "extra_norm_period": 6})
RS_EMBED_ORDER = ("MODIS_01", "MODIS_02", "MODIS_03", "MODIS_26", "MODIS_06", "MODIS_20", "MODIS_07", "MODIS_27",
                  "MODIS_28", "MODIS_29", "MODIS_31", "MODIS_32", "MODIS_33", "MODIS_34")


def modis_chip(seed=0, size=128, bands=satvision.MODIS_BANDS):
    chip = make_chip(bands, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    for i, band in enumerate(bands):  # reflectance in percent, brightness temperature in K
        emissive = band in [satvision.MODIS_BANDS[j] for j in satvision.EMISSIVE]
        chip.data[i] = rng.uniform(200, 320, (size, size)) if emissive else rng.uniform(0, 60, (size, size))
    return chip


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(satvision.VARIANTS, "giant", TINY)
    torch.manual_seed(0)
    encoder = get_embedder("satvision").build()
    with torch.no_grad():  # post-norm weights start at 1 / 0: make every norm count
        for name, param in encoder.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    module = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    module["encoder.mask_token"] = torch.zeros(1, 1, 8)
    module["decoder.0.weight"] = torch.zeros(32 * 32 * 14, 64, 1, 1)
    module["decoder.0.bias"] = torch.zeros(32 * 32 * 14)
    names = list(module)
    torch.save({"module": module, "buffer_names": [n for n in names if "relative" in n],
                "param_shapes": [OrderedDict((n, module[n].shape) for n in names if "relative" not in n)],
                "optimizer": None, "lr_scheduler": None, "global_steps": 50000, "dp_world_size": 64,
                "ds_config": {"bf16": {"enabled": True}, "zero_optimization": {"stage": 2}}, "ds_version": "0.14.4"},
               hf_file(tmp_path / "hf", satvision.REPO, satvision.FILE, "main"))
    return get_embedder("satvision", cache_dir=str(tmp_path / "hf"), device="cpu"), encoder


def test_loads_the_deepspeed_model_states_and_returns_pooled_and_grid(zoo):
    embedder, saved = zoo
    model = embedder.model()
    for key in ("patch_embed.proj.weight", "layers.2.blocks.5.norm3.weight", "layers.2.blocks.0.attn.cpb_mlp.0.weight",
                "layers.0.downsample.reduction.weight", "norm.weight"):
        assert torch.equal(model.state_dict()[key], saved.state_dict()[key])  # the checkpoint, not random
    assert embedder.grid == (4, 4) and embedder.dim == 64
    chip = modis_chip(size=100)
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == (64, 4, 4) and fmap.meta["weights_origin"] == "huggingface"
    assert fmap.transform.a == pytest.approx(100 * 10 / 4)
    assert pool(fmap, chip.grid).shape == (64,)
    np.testing.assert_array_equal(embedder.embed([chip])[0].values, fmap.values)
    changed = modis_chip(size=100)
    changed.data[satvision.MODIS_BANDS.index("MODIS_31")] += np.linspace(0, 10, 100, dtype=np.float32)
    assert not np.allclose(embedder.embed([changed])[0].values, fmap.values)
    pair = embedder.embed([modis_chip(seed=4, size=100), chip])
    np.testing.assert_allclose(pair[1].values, fmap.values, rtol=1e-4, atol=1e-5)


def test_the_structure_is_the_giants_shrunk(zoo):
    """Extra norms only at every 6th block, shifted windows only where the grid exceeds the
    window, patch merging after stages 0-2, and the grid equals the final-normed tokens."""
    embedder, _ = zoo
    model = embedder.model()
    keys = set(model.state_dict())
    assert {k for k in keys if "norm3" in k} == {"layers.2.blocks.5.norm3.weight", "layers.2.blocks.5.norm3.bias"}
    assert {k.split(".attn_mask")[0] for k in keys if k.endswith("attn_mask")} == {"layers.0.blocks.1", "layers.1.blocks.1"}
    assert {k.split(".downsample")[0] for k in keys if ".downsample." in k} == {"layers.0", "layers.1", "layers.2"}
    assert model.state_dict()["layers.3.blocks.0.attn.relative_position_index"].shape == (16, 16)  # 4 x 4 window
    chip = modis_chip()
    x = torch.from_numpy(embedder.model_input(chip).data[None])
    with torch.inference_mode():
        tokens = model.patch_embed(x)
        for layer in model.layers:
            tokens = layer(tokens)
        tokens = model.norm(tokens)
    assert tokens.shape == (1, 16, 64)
    fmap = embedder.embed([chip])[0]
    np.testing.assert_allclose(fmap.values, tokens[0].T.reshape(64, 4, 4).numpy(), rtol=1e-4, atol=1e-5)
    # The pooled vector is the authors' forward_features: final norm, then the mean over tokens.
    np.testing.assert_allclose(pool(fmap, chip.grid), tokens[0].mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_band_order_is_the_authors_and_is_enforced(zoo):
    embedder, _ = zoo
    chip = modis_chip()
    base = embedder.embed([chip])[0].values
    order = np.random.default_rng(1).permutation(14)
    shuffled = modis_chip()
    shuffled.data = chip.data[order].copy()
    shuffled.bands = tuple(chip.bands[i] for i in order)
    np.testing.assert_allclose(embedder.embed([shuffled])[0].values, base, rtol=1e-5, atol=1e-6)
    with pytest.raises(SpecError, match="MODIS_21") as err:
        embedder.embed([modis_chip(bands=RS_EMBED_ORDER)])  # rs-embed's order names bands 20 and 34
    assert "MODIS_30" in str(err.value)


def test_input_contract():
    description = describe_model("satvision")
    assert description.bands == satvision.MODIS_BANDS and description.bands[5] == "MODIS_21"
    assert (description.dim, description.image_size, description.patch_size, description.scale_m) == (4096, 128, 4, 1000.0)
    assert description.citation.startswith("Spradlin") and description.licence.startswith("Apache-2.0")
    embedder = get_embedder("satvision")
    sensor = embedder.default_sensor()
    assert (sensor.collection, sensor.scale_m, sensor.composite) == ("MODIS/061/MOD021KM", 1000.0, "mosaic")
    chip = make_chip(satvision.MODIS_BANDS, size=4, dn=50.0)
    chip.data[satvision.MODIS_BANDS.index("MODIS_31")] = 324.0677  # band 31's maximum
    chip.data[satvision.MODIS_BANDS.index("MODIS_21")] = 223.1222  # band 21's minimum
    x = embedder.model_input(chip).data
    assert x[0, 0, 0] == pytest.approx(0.5) and x[6, 0, 0] == pytest.approx(0.5)  # bands 1 and 26: 50 %
    assert x[11, 0, 0] == pytest.approx(1.0) and x[5, 0, 0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(SpecError, match="model_config"):
        get_embedder("satvision", bands=["MODIS_01"])


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("satvision", cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights) as err:
        embedder.model()
    message = str(err.value)
    assert satvision.FILE in message and f"huggingface.co/{satvision.REPO}" in message and str(tmp_path / "w") in message
