"""WildSAT offline: tiny random instances of the torchvision backbones with the three-branch
head, saved as the authors' checkpoint (``opt`` Namespace, ``satellite_state_dict`` with
``module.`` keys, SINR and text parts) in a weights folder and loaded through the real loader."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import wildsat
from rsembed_db.models.base import InputPrep
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import InputPrepSpec, SpecError
from tests.helpers.zoo import make_chip

TINY = {"vitb16": ({"num_layers": 1, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}, 32),
        "resnet50": ({"layers": [1, 1, 1, 1], "width_per_group": 8}, 2048),
        "swint": ({"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}, 128)}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    weights = tmp_path / "weights"
    weights.mkdir()

    def make(variant, **config):
        arch, token_dim = TINY[variant]
        monkeypatch.setitem(wildsat.VARIANTS, variant, replace(wildsat.VARIANTS[variant], dim=16, arch=arch,
                                                               token_dim=token_dim))
        torch.manual_seed(0)
        saved = get_embedder("wildsat", variant=variant).build()
        if variant == "vitb16":  # torchvision starts the classification head at zero: give it values
            torch.nn.init.normal_(saved.backbone.heads.head.weight, std=0.2)
        opt = argparse.Namespace(satellite_encoder=variant, satellite_head="threelinearnobias", common_embed_dim=16,
                                 use_bnft=True, is_tunefc=True, lr=1e-4)
        torch.save({"epoch": 12, "opt": opt,
                    "satellite_state_dict": {f"module.{k}": v for k, v in saved.state_dict().items()},
                    "sinr_state_dict": {"module.encoder.weight": torch.ones(4, 4)},
                    "text_emb_model": {"module.fc.weight": torch.ones(16, 8)}},
                   weights / wildsat.VARIANTS[variant].weights.basename)
        return get_embedder("wildsat", variant=variant, weights_dir=str(weights), device="cpu", **config), saved
    return make


def dim_chip(bands, size, seed=0):
    chip = make_chip(bands, size=size, seed=seed)
    chip.data *= 0.5  # <= 2000 DN: below the 3558 clip
    return chip


@pytest.mark.parametrize("variant", list(TINY))
def test_loads_the_published_checkpoint_and_returns_the_image_embedding(zoo, variant):
    embedder, saved = zoo(variant)
    model = embedder.model()
    for key in ("decoder.backbone3.0.weight", next(k for k in saved.state_dict() if k.startswith("backbone."))):
        assert torch.equal(model.state_dict()[key], saved.state_dict()[key])  # the checkpoint, not random
    chip = dim_chip(embedder.bands, 150)
    fmap = embedder.embed_prepared([chip], [InputPrep(InputPrepSpec(mode="resize"), grid_output=True)])[0]
    assert fmap.values.shape == (16, 1, 1) and embedder.dim == 16
    assert pool(fmap, chip.grid).shape == (16,)
    x = torch.nn.functional.interpolate(torch.from_numpy(embedder.model_input(chip).data[None]),
                                        size=(embedder.image_size,) * 2, mode="bilinear", align_corners=False)
    with torch.inference_mode():
        expected = model.decoder.backbone3(model.backbone(x - x.min()))[0].numpy()
    np.testing.assert_allclose(fmap.values[:, 0, 0], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed([chip])[0].values, embedder.embed([chip])[0].values)
    changed = dim_chip(embedder.bands, 150)
    changed.data[embedder.bands.index("B03")] += np.linspace(0, 900, 150, dtype=np.float32)
    assert not np.allclose(embedder.embed([changed])[0].values, fmap.values)
    brighter = dim_chip(embedder.bands, 150)
    brighter.data += 300.0  # the image minimum is subtracted: an offset on all bands changes nothing
    np.testing.assert_allclose(embedder.embed([brighter])[0].values, fmap.values, rtol=1e-4, atol=1e-4)
    pair = embedder.embed([dim_chip(embedder.bands, 150, seed=2), chip])
    np.testing.assert_allclose(pair[1].values, fmap.values, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("variant", "shape"), [("vitb16", (32, 14, 14)), ("resnet50", (2048, 16, 16)),
                                                ("swint", (128, 16, 16))])
def test_token_features_are_the_last_feature_map(zoo, variant, shape):
    embedder, _ = zoo(variant, features="tokens")
    assert embedder.dim == shape[0] and embedder.grid == shape[1:]
    chip = dim_chip(embedder.bands, embedder.image_size)
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == shape
    if variant == "vitb16":
        net = embedder.model().backbone
        x = torch.from_numpy(embedder.model_input(chip).data[None])
        with torch.inference_mode():
            tokens = net.encoder(torch.cat([net.class_token, net._process_input(x - x.min())], dim=1))
        np.testing.assert_allclose(fmap.values, tokens[0, 1:].T.reshape(32, 14, 14).numpy(), rtol=1e-4, atol=1e-5)


def test_input_contract_and_errors():
    description = describe_model("wildsat")
    assert (description.dim, description.image_size, description.bands) == (256, 224, ("B04", "B03", "B02"))
    assert description.citation.startswith("Daroya")
    assert describe_model("wildsat", variant="resnet50").image_size == 512
    assert describe_model("wildsat", variant="swint", features="tokens").dim == 768
    assert get_embedder("wildsat").default_sensor().collection == "COPERNICUS/S2_HARMONIZED"
    embedder = get_embedder("wildsat")
    x = embedder.model_input(make_chip(embedder.bands, size=4, dn=1779.0)).data
    assert x[0, 0, 0] == pytest.approx(1779.0 / 3558.0)
    with pytest.raises(SpecError, match="features"):
        get_embedder("wildsat", features="cls")
    with pytest.raises(SpecError, match="variant"):
        get_embedder("wildsat", variant="vitl16")
    with pytest.raises(SpecError, match="bands"):
        embedder.model_input(make_chip(("B02", "B03", "B08"), size=4))


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("wildsat", variant="swint", weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights) as err:
        embedder.model()
    assert "swint-imagenet-bnfc.pth" in str(err.value) and "drive.google.com" in str(err.value)
