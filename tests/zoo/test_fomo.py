"""FoMo-Net_1 offline: a tiny random MultiSpectralViT saved as the published raw state dict
(``fomo_single_embedding_layer_weights.pt``, classification head included) in a weights
folder, loaded through the real loader."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import fomo
from rsembed_db.models.base import InputPrep
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import InputPrepSpec, SpecError
from tests.helpers.zoo import make_chip

TINY = {"depth": 1, "heads": 2, "mlp_dim": 64, "dim_head": 16}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(fomo.VARIANTS, "fomo_net_1", replace(fomo.VARIANTS["fomo_net_1"], dim=32, arch=TINY))
    torch.manual_seed(0)
    saved = get_embedder("fomo").build()
    state = {**saved.state_dict(), "mlp_head.weight": torch.ones(1000, 32), "mlp_head.bias": torch.zeros(1000)}
    (tmp_path / "weights").mkdir()
    torch.save(state, tmp_path / "weights" / fomo.WEIGHTS.basename)

    def make(**config):
        return get_embedder("fomo", weights_dir=str(tmp_path / "weights"), device="cpu", **config)
    return make, saved


def test_loads_the_published_state_dict_and_returns_pooled_and_grid(zoo):
    make, saved = zoo
    embedder = make()
    loaded = embedder.model()
    for key in ("to_patch_embedding.2.weight", "spectral_embedding", "transformer.layers.0.0.to_qkv.weight"):
        assert torch.equal(loaded.state_dict()[key], saved.state_dict()[key])  # the checkpoint, not random
    assert embedder.grid == (4, 4) and embedder.dim == 32
    chip = make_chip(embedder.bands, size=100)
    fmap = embedder.embed_prepared([chip], [InputPrep(InputPrepSpec(mode="resize"), grid_output=True)])[0]
    assert fmap.values.shape == (32, 4, 4) and fmap.valid.all()
    assert pool(fmap, chip.grid).shape == (32,)
    again = embedder.embed([chip])[0].values
    np.testing.assert_array_equal(again, embedder.embed([chip])[0].values)
    changed = make_chip(embedder.bands, size=100)
    # A ramp, not an offset: each patch is layer-normalised first, which removes a constant per patch.
    changed.data[embedder.bands.index("B8A")] += np.linspace(0, 800, 100, dtype=np.float32)
    assert not np.allclose(embedder.embed([changed])[0].values, again)
    pair = embedder.embed([make_chip(embedder.bands, size=100, seed=3), chip])
    np.testing.assert_allclose(pair[1].values, again, rtol=1e-4, atol=1e-5)


def test_grid_is_the_band_mean_of_tokens_keyed_by_modality(zoo):
    make, _ = zoo
    embedder = make(bands=["B04", "B03", "B8A"])
    assert embedder.keys == [9, 8, 14]
    model = embedder.model()
    chip = make_chip(embedder.bands, size=64)
    x = torch.from_numpy(embedder.model_input(chip).data[None])
    with torch.inference_mode():
        tokens = model(x, [9, 8, 14])
        swapped = model(x, [8, 9, 14])
    assert tokens.shape == (1, 3 * 16, 32)
    expected = tokens[0].reshape(3, 4, 4, 32).mean(0).permute(2, 0, 1).numpy()
    got = embedder.embed([chip])[0].values
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, swapped[0].reshape(3, 4, 4, 32).mean(0).permute(2, 0, 1).numpy(), atol=1e-3)
    # Keys follow the bands, so the band order of the config is free.
    reordered = make(bands=["B8A", "B04", "B03"])
    np.testing.assert_allclose(reordered.embed([chip])[0].values, got, rtol=1e-4, atol=1e-5)


def test_grid_is_spatially_correct(zoo):
    make, _ = zoo
    embedder = make()
    model = embedder.model()
    with torch.no_grad():
        for attention, feed_forward in model.transformer.layers:
            for layer in (attention.to_out[0], feed_forward.net[4]):
                layer.weight.zero_()
                layer.bias.zero_()
    chip = make_chip(embedder.bands, size=64)
    base = embedder.embed([chip])[0].values
    chip.data[:, 16:32, 48:64] += np.linspace(0, 900, 16, dtype=np.float32)  # patch row 1, column 3
    diff = np.abs(embedder.embed([chip])[0].values - base).max(axis=0)
    assert np.argwhere(diff > 1e-5).tolist() == [[1, 3]]


def test_input_contract_and_errors():
    description = describe_model("fomo")
    assert description.bands == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    assert (description.dim, description.image_size, description.patch_size) == (768, 64, 16)
    assert description.normalisation["modality_keys"]["B02"] == 7 and description.citation.startswith("Bountos")
    embedder = get_embedder("fomo")
    chip = make_chip(embedder.bands, size=8, dn=1283.97119 + 2028.46753)
    assert embedder.model_input(chip).data[0, 2, 2] == pytest.approx(1.0, rel=1e-5)
    unit = get_embedder("fomo", normalisation="unit_scale", bands=["B01", "B09", "B12"])
    assert unit.keys == [6, 15, 18]
    assert unit.model_input(make_chip(unit.bands, size=8, dn=12000.0)).data.max() == pytest.approx(1.0)
    with pytest.raises(SpecError, match="bands"):
        get_embedder("fomo", bands=["B01", "B02"])  # no TalloS statistics for B01
    with pytest.raises(SpecError, match="normalisation"):
        get_embedder("fomo", normalisation="minmax")
    with pytest.raises(SpecError, match="bands"):
        embedder.model_input(make_chip(("B02", "B03", "B04"), size=8))


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("fomo", weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights) as err:
        embedder.embed([make_chip(embedder.bands, size=64)])
    assert fomo.WEIGHTS.basename in str(err.value) and "dropbox.com" in str(err.value)
