"""TerraMind offline: the real ``terramind_v1_tiny`` backbone from terratorch's registry with
random weights, saved like the published checkpoint (the whole any-to-any model's state
dict: this encoder's tensors among other modalities' and the decoder's) in a fake Hugging
Face cache, loaded through the real loader."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import terramind
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import SpecError
from tests.helpers.zoo import hf_file, make_chip

BANDS = terramind.BANDS


def save_checkpoint(cache, model, drop=()):
    v = terramind.VARIANTS["tiny"]
    state = OrderedDict((k, t) for k, t in model.state_dict().items() if k not in drop)
    # Tensors of the rest of the any-to-any model, which the encoder does not use.
    state["encoder_embeddings.untok_sen1grd@224.proj.weight"] = torch.ones(192, 512)
    state["decoder_embeddings.tok_lulc@224.mod_emb"] = torch.ones(1, 1, 192)
    state["decoder.0.norm1.weight"] = torch.ones(192)
    path = hf_file(cache, v.repo_id, v.filename, "main")
    torch.save(state, path)
    return path


@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    runtime = {"variant": "tiny", "cache_dir": str(tmp_path / "hf"), "device": "cpu"}
    torch.manual_seed(0)
    model = get_embedder("terramind", **runtime).build().eval()
    save_checkpoint(tmp_path / "hf", model)
    return model, runtime


def test_grid_is_the_normed_last_layer_tokens_of_the_registry_backbone(saved):
    model, runtime = saved
    embedder = get_embedder("terramind", **runtime)
    loaded = embedder.model()
    name = "encoder_embeddings.untok_sen2l2a@224.proj.weight"
    assert torch.equal(loaded.state_dict()[name], model.state_dict()[name])
    chip = make_chip(BANDS, size=224)
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == (192, 14, 14) and embedder.dim == 192
    mean, std = np.asarray(terramind.MEAN)[:, None, None], np.asarray(terramind.STD)[:, None, None]
    x = torch.from_numpy(((chip.data - mean) / std).astype(np.float32)[None])
    with torch.inference_mode():
        tokens = model({"S2L2A": x})[-1]
    assert tokens.shape == (1, 196, 192)  # no CLS or register tokens
    np.testing.assert_allclose(fmap.values, tokens[0].T.reshape(192, 14, 14).numpy(), rtol=1e-4, atol=1e-4)


def test_constants_are_terratorchs_and_the_band_order_is_terraminds():
    from terratorch.models.backbones.terramind.model import terramind_register as reg

    assert list(terramind.MEAN) == reg.v1_pretraining_mean["untok_sen2l2a@224"]
    assert list(terramind.STD) == reg.v1_pretraining_std["untok_sen2l2a@224"]
    assert list(terramind.TERRAMIND_BANDS) == reg.PRETRAINED_BANDS["untok_sen2l2a@224"]
    prepared = get_embedder("terramind").model_input(make_chip(BANDS, size=8, dn=3000.0)).data
    assert prepared[BANDS.index("B09"), 2, 2] == pytest.approx((3000 - 3162.988) / 1797.379, rel=1e-6)
    d = describe_model("terramind")
    assert (d.dim, d.image_size, d.patch_size, d.bands) == (384, 224, 16, BANDS)
    assert "arXiv:2504.11171" in d.citation and d.licence.startswith("Apache-2.0")
    assert d.default_sensor["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert describe_model("terramind", variant="large").dim == 1024


def test_band_order_errors_and_determinism(saved):
    _, runtime = saved
    embedder = get_embedder("terramind", **runtime)
    chip = make_chip(BANDS, size=64)
    base = embedder.embed([chip])[0].values
    np.testing.assert_array_equal(embedder.embed([chip])[0].values, base)
    reversed_chip = make_chip(BANDS[::-1], size=64)
    reversed_chip.data[:] = chip.data[::-1]
    np.testing.assert_allclose(embedder.embed([reversed_chip])[0].values, base, rtol=1e-5, atol=1e-5)
    changed = make_chip(BANDS, size=64)
    changed.data[BANDS.index("B11")] += 2000.0
    assert not np.allclose(embedder.embed([changed])[0].values, base, atol=1e-4)
    with pytest.raises(SpecError, match=r"needs bands \['B01'\]"):
        embedder.embed([make_chip(BANDS[1:], size=64)])  # 11 bands: B01 missing


def test_a_checkpoint_missing_encoder_tensors_is_refused_not_randomised(saved, tmp_path):
    model, runtime = saved
    save_checkpoint(tmp_path / "hf", model, drop=("encoder_norm.weight",))
    with pytest.raises(SpecError, match="encoder_norm.weight"):
        get_embedder("terramind", **runtime).model()


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("terramind", cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights) as err:
        embedder.embed([make_chip(BANDS, size=32)])
    assert "TerraMind_v1_small.pt" in str(err.value)
    assert "huggingface.co/ibm-esa-geospatial/TerraMind-1.0-small" in str(err.value)


def test_building_leaves_torch_float32_matmul_precision_alone():
    """Importing terratorch sets the process-wide matmul precision to "medium" (lower
    precision for every later model); building TerraMind must undo it. A fresh process,
    as terratorch is imported once."""
    import subprocess
    import sys

    code = ("import torch\nfrom rsembed_db.producers.catalog import get_embedder\n"
            "get_embedder('terramind', variant='tiny').build()\nprint(torch.get_float32_matmul_precision())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "highest"
