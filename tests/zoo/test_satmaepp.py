"""SatMAE++ offline: tiny random encoders of both published architectures (timm ViT for
fMoW RGB, the group-channel ViT for fMoW-Sentinel) saved as the authors' training
checkpoints (``{"model": MAE state dict with decoder and up-sampling heads, "args":
Namespace, ...}``) in a fake Hugging Face cache, loaded through the real loader."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsembed_db.errors import MissingWeights
from rsembed_db.models import satmaepp
from rsembed_db.models.satmaepp import GROUPS, S2_BANDS
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import SpecError
from tests.helpers.zoo import hf_file, make_chip

RGB = ("B04", "B03", "B02")
MAE_EXTRAS = {"mask_token": (1, 1, 16), "decoder_embed.weight": (16, 32), "decoder_blocks.0.norm1.weight": (16,),
              "decoder_norm.weight": (16,), "proj_up_conv.weight": (12, 3, 1, 1), "proj_up_norm.weight": (12,)}


def training_checkpoint(model_state, extras, path):
    """The layout of SatMAE++'s ``misc.save_model``: model, optimizer, epoch, scaler, args."""
    state = {**model_state, **{k: torch.ones(shape) for k, shape in extras.items()}}
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 799, "scaler": {},
                "args": argparse.Namespace(model="mae_vit_large_patch16", input_size=224)}, path)


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """{modality: saved tiny encoder}, runtime config pointing at the fake HF cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    real = satmaepp.VARIANTS["large"]
    tiny = {"rgb": satmaepp.Arch(real["rgb"].repo_id, real["rgb"].filename, 224, 32, 16, 2, 2),
            "s2_10b": satmaepp.Arch(real["s2_10b"].repo_id, real["s2_10b"].filename, 96, 32, 8, 2, 2, 8)}
    monkeypatch.setitem(satmaepp.VARIANTS, "large", tiny)
    cache = tmp_path / "hf"
    models = {}
    for modality in ("rgb", "s2_10b"):
        torch.manual_seed(0)
        model = get_embedder("satmaepp", modality=modality).build().eval()
        extras = MAE_EXTRAS if modality == "rgb" else {
            **MAE_EXTRAS, "decoder_channel_embed": (1, 4, 8), "up_block1.up_conv.weight": (40, 40, 4, 4),
            "up_block2.proj_out.weight": (10, 40, 3, 3)}
        a = tiny[modality]
        training_checkpoint(model.state_dict(), extras, hf_file(cache, a.repo_id, a.filename, "main"))
        models[modality] = model
    return models, {"cache_dir": str(cache), "device": "cpu"}


def mae_encoder_shuffled_then_restored(model, x):
    """The authors' ``forward_encoder(x, mask_ratio=0)`` for the RGB MAE: patch tokens + pos,
    randomly shuffled (``random_masking``), CLS + pos prepended, blocks, norm; then the
    patch tokens put back in place with ``ids_restore``."""
    tokens = model.patch_embed(x) + model.pos_embed[:, 1:]
    shuffle = torch.argsort(torch.rand(tokens.shape[:2]), dim=1)
    restore = torch.argsort(shuffle, dim=1)
    tokens = torch.gather(tokens, 1, shuffle[..., None].expand(-1, -1, tokens.shape[-1]))
    tokens = torch.cat((model.cls_token + model.pos_embed[:, :1], tokens), dim=1)
    for block in model.blocks:
        tokens = block(tokens)
    tokens = model.norm(tokens)
    patches = torch.gather(tokens[:, 1:], 1, restore[..., None].expand(-1, -1, tokens.shape[-1]))
    return tokens[:, 0], patches


def group_channel_reference(model, x):
    """The group-channel encoder written out from its published description, without masking."""
    per_group = []
    for g, group in enumerate(GROUPS):
        proj = model.patch_embed[g].proj
        t = F.conv2d(x[:, list(group)], proj.weight, proj.bias, stride=8).flatten(2).transpose(1, 2)
        per_group.append(t + torch.cat((model.pos_embed[0, 1:], model.channel_embed[0, g].expand(t.shape[1], -1)), -1))
    tokens = torch.cat((model.cls_token.expand(len(x), -1, -1), *per_group), dim=1)
    for block in model.blocks:
        tokens = block(tokens)
    return model.norm(tokens)


def test_rgb_grid_is_the_authors_encoder_with_its_token_order_restored(saved):
    models, runtime = saved
    embedder = get_embedder("satmaepp", **runtime)
    loaded = embedder.model()
    name = "blocks.1.attn.qkv.weight"
    assert torch.equal(loaded.state_dict()[name], models["rgb"].state_dict()[name])
    chip = make_chip(RGB, size=224)
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == (32, 14, 14)
    np.testing.assert_array_equal(embedder.embed([chip])[0].values, fmap.values)  # no per-call shuffle
    x = torch.from_numpy(embedder.model_input(chip).data[None])
    torch.manual_seed(7)
    with torch.inference_mode():
        _, patches = mae_encoder_shuffled_then_restored(models["rgb"], x)
    np.testing.assert_allclose(fmap.values, patches[0].T.reshape(32, 14, 14).numpy(), rtol=1e-4, atol=1e-5)
    mean, std = satmaepp.FMOW_RGB_MEAN[0], satmaepp.FMOW_RGB_STD[0]
    assert x[0, 0, 5, 5].item() == pytest.approx((min(chip.data[0, 5, 5] / 10000, 1) - mean) / std, rel=1e-5)


def test_s2_10b_grid_is_the_group_mean_of_unshuffled_group_channel_tokens(saved):
    models, runtime = saved
    embedder = get_embedder("satmaepp", modality="s2_10b", **runtime)
    assert (embedder.image_size, embedder.patch_size, embedder.grid) == (96, 8, (12, 12))
    chip = make_chip(S2_BANDS, size=96)
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == (32, 12, 12)
    x = torch.from_numpy(embedder.model_input(chip).data[None])
    with torch.inference_mode():
        tokens = group_channel_reference(models["s2_10b"], x)
    assert tokens.shape == (1, 1 + 3 * 144, 32)
    expected = tokens[0, 1:].reshape(3, 144, 32).mean(0).T.reshape(32, 12, 12).numpy()
    np.testing.assert_allclose(fmap.values, expected, rtol=1e-4, atol=1e-5)
    # Each group sees only its bands: a SWIR change reaches the output through group 3.
    changed = make_chip(S2_BANDS, size=96)
    changed.data[S2_BANDS.index("B12")] += 1500.0
    assert not np.allclose(embedder.embed([changed])[0].values, fmap.values, atol=1e-4)


def test_sentinel_normalisation_is_the_authors_uint8_two_sigma_range():
    embedder = get_embedder("satmaepp", modality="s2_10b")
    at_mean = make_chip(S2_BANDS, size=4)
    at_mean.data[:] = np.asarray(satmaepp.S2_MEAN, np.float32)[:, None, None]
    prepared = embedder.model_input(at_mean).data
    np.testing.assert_allclose(prepared, 127 / 255, rtol=1e-6)  # (2 std) / (4 std) * 255 = 127.5 -> uint8 127
    high = make_chip(S2_BANDS, size=4, dn=20000.0)
    np.testing.assert_allclose(embedder.model_input(high).data, 1.0)
    # The authors' 13-band FMoW-Sentinel statistics (B01..B12 with B8A after B08), bands 0, 9, 10 dropped.
    mean13 = [1370.19151926, 1184.3824625, 1120.77120066, 1136.26026392, 1263.73947144, 1645.40315151,
              1846.87040806, 1762.59530783, 1972.62420416, 582.72633433, 14.77112979, 1732.16362238, 1247.91870117]
    std13 = [633.15169573, 650.2842772, 712.12507725, 965.23119807, 948.9819932, 1108.06650639, 1258.36394548,
             1233.1492281, 1364.38688993, 472.37967789, 14.3114637, 1310.36996126, 1087.6020813]
    keep = [i for i in range(13) if i not in (0, 9, 10)]
    assert satmaepp.S2_MEAN == tuple(mean13[i] for i in keep) and satmaepp.S2_STD == tuple(std13[i] for i in keep)
    low = make_chip(S2_BANDS, size=4, dn=0.0)
    b08 = S2_BANDS.index("B08")  # 13-band index 7: mean 1762.6, std 1233.1, so 0 is above mean - 2 std
    expected = np.floor((0 - (mean13[7] - 2 * std13[7])) / (4 * std13[7]) * 255) / 255
    assert embedder.model_input(low).data[b08, 0, 0] == pytest.approx(expected, rel=1e-6) and expected > 0


def test_modalities_band_order_and_errors(saved):
    _, runtime = saved
    s2 = get_embedder("satmaepp", modality="s2_10b", **runtime)
    chip = make_chip(S2_BANDS, size=48)
    base = s2.embed([chip])[0].values
    order = [9, 0, 8, 1, 7, 2, 6, 3, 5, 4]
    shuffled = make_chip([S2_BANDS[i] for i in order], size=48)
    shuffled.data[:] = chip.data[order]
    np.testing.assert_allclose(s2.embed([shuffled])[0].values, base, rtol=1e-5, atol=1e-6)
    with pytest.raises(SpecError, match=r"needs bands \['B05', 'B06', 'B07', 'B08', 'B8A', 'B11', 'B12'\]"):
        s2.embed([make_chip(RGB, size=48)])  # 3 channels for the 10-band modality
    with pytest.raises(SpecError, match="^rgb_max: applies to modality 'rgb' only"):
        get_embedder("satmaepp", modality="s2_10b", rgb_max=3000)
    with pytest.raises(SpecError, match="modality"):
        get_embedder("satmaepp", modality="s2")
    bgr = get_embedder("satmaepp", channel_order="bgr", **runtime)
    assert bgr.bands == ("B02", "B03", "B04")
    rgb = get_embedder("satmaepp", **runtime)
    rgb_chip = make_chip(RGB, size=64)
    assert not np.allclose(bgr.embed([rgb_chip])[0].values, rgb.embed([rgb_chip])[0].values)


def test_request_level_modality_runs_the_s2_branch_over_the_bundled_scene(saved, tmp_path):
    from rsembed_db import OutputSpec, PointBuffer, TemporalSpec
    from rsembed_db.api import get_embedding
    from tests.conftest import SCENE

    _, runtime = saved
    ask = {"spatial": PointBuffer(12.60, 52.49, 480), "temporal": TemporalSpec.year(2017), "imagery": SCENE,
           "model_config": runtime}
    s2 = get_embedding("satmaepp", modality="s2_10b", **ask)
    rgb = get_embedding("satmaepp", **ask)
    assert s2.data.shape == rgb.data.shape == (32,)
    assert s2.meta["sensor"]["collection"] == "COPERNICUS/S2_HARMONIZED" and s2.meta["sensor"]["bands"] == list(S2_BANDS)
    assert rgb.meta["sensor"]["bands"] == list(RGB) and s2.meta["key"] != rgb.meta["key"]
    grid = get_embedding("satmaepp", modality="s2_10b", output=OutputSpec.grid(), **ask)
    assert grid.data.shape == (32, 12, 12)


def test_describe_and_missing_weights(tmp_path, monkeypatch):
    rgb, s2 = describe_model("satmaepp"), describe_model("satmaepp", modality="s2_10b")
    assert (rgb.dim, rgb.image_size, rgb.patch_size, rgb.bands) == (1024, 224, 16, RGB)
    assert (s2.dim, s2.image_size, s2.patch_size, s2.bands) == (1024, 96, 8, S2_BANDS)
    assert rgb.modalities == ("rgb", "s2_10b") and "arXiv:2403.05419" in rgb.citation
    assert s2.normalisation["groups"] == [["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A"], ["B11", "B12"]]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    for modality, bands, file in (("rgb", RGB, "checkpoint_ViT-L_pretrain_fmow_rgb.pth"),
                                  ("s2_10b", S2_BANDS, "checkpoint_ViT-L_pretrain_fmow_sentinel.pth")):
        embedder = get_embedder("satmaepp", modality=modality, cache_dir=str(tmp_path / "hf"))
        with pytest.raises(MissingWeights) as err:
            embedder.embed([make_chip(bands, size=32)])
        assert file in str(err.value) and "huggingface.co/mubashir04/" in str(err.value)
