"""OlmoEarth offline: a tiny LatentMIM of the published v1.2 structure (linear patch embed
with a hidden layer, one Sentinel-2 band group, 3-D RoPE), its ``config.json`` (classes named
as in the published files) and ``weights.pth`` (a plain state dict with a training-only head)
in a fake Hugging Face cache or a weights folder, loaded through the real loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import olmoearth
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import SpecError
from tests.helpers.zoo import hf_file, make_chip

pytest.importorskip("olmoearth_pretrain_minimal", reason="needs the zoo extra: pip install 'rsembed-db[zoo]'")

DATES = ["2022-02-10", "2022-05-20", "2022-08-30"]


def tiny_config() -> dict:
    from olmoearth_pretrain_minimal.olmoearth_pretrain_v1 import olmoearth_pretrain_v1 as published
    from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.flexi_vit import EncoderConfig, PredictorConfig
    from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.latent_mim import LatentMIMConfig
    from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.tokenization import ModalityTokenization, TokenizationConfig

    modalities = list(olmoearth.ENCODER_MODALITIES)
    groups = TokenizationConfig(overrides={name: ModalityTokenization(band_groups=g)
                                           for name, g in published.V1_1_BAND_GROUPS.items()})
    rope = {"position_encoding": published.V1_2_POS_ENCODING,
            "rope_temporal_coordinate_scale": published.V1_2_ROPE_TEMPORAL_COORDINATE_SCALE}
    encoder = EncoderConfig(supported_modality_names=modalities, embedding_size=32, num_heads=2, depth=1, mlp_ratio=2.0,
                            tokenization_config=groups, use_linear_patch_embed=True, patch_embed_hidden_sizes=[8],
                            band_dropout_rate=0.2, random_band_dropout=True,
                            band_dropout_modalities=["sentinel2_l2a", "landsat"],
                            rope_mixed_base=published.V1_2_ROPE_MIXED_BASE, **rope)
    decoder = PredictorConfig(encoder_embedding_size=32, decoder_embedding_size=32, depth=1, mlp_ratio=2.0, num_heads=2,
                              supported_modality_names=modalities, tokenization_config=groups, **rope)
    text = json.dumps({"model": LatentMIMConfig(encoder_config=encoder, decoder_config=decoder).as_config_dict(),
                       "train_module": {"masking_config": {"strategy_config": {"only_decode_modalities": []}}}})
    # The published files name the training package's classes; the loader maps them.
    return json.loads(text.replace("olmoearth_pretrain_minimal.olmoearth_pretrain_v1.", "olmoearth_pretrain."))


def save(folder, config: dict) -> torch.nn.Module:
    from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.config import Config

    torch.manual_seed(0)
    model = Config.from_dict(config["model"]).build()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({**model.state_dict(), "supervision_head.weight": torch.ones(2, 2)}, folder / "weights.pth")
    return model


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    cache = tmp_path / "hf"
    monkeypatch.setitem(olmoearth.VARIANTS, "base_v1_2", olmoearth.Variant("OlmoEarth-v1_2-Base", 32, "base", "v1.2"))
    saved = save(hf_file(cache, "allenai/OlmoEarth-v1_2-Base", "weights.pth", "main").parent, tiny_config())

    def make(**config):
        config.setdefault("image_size", 32)
        return get_embedder("olmoearth", cache_dir=str(cache), device="cpu", **config)
    return make, saved


def frames_chip(bands, frames=3, seed=0, size=32):
    chip = make_chip(bands, size=size, seed=seed, frames=frames)
    chip.meta.update(frame_dates=list(DATES), frame_backfilled=[False] * frames,
                     frame_bins=[["2022-01-01", "2022-04-01"], ["2022-04-01", "2022-07-01"], ["2022-07-01", "2022-10-01"]])
    return chip


def test_loads_the_published_files_and_returns_pooled_and_grid(zoo):
    make, saved = zoo
    embedder = make()
    model = embedder.model()
    for key in ("encoder.blocks.0.attn.q.weight", "decoder.blocks.0.attn.q.weight"):
        assert torch.equal(model.state_dict()[key], saved.state_dict()[key])  # the checkpoint, not random
    assert embedder.grid == (8, 8) and embedder.dim == 32
    chip = make_chip(embedder.bands, size=40)
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == (32, 8, 8) and fmap.meta["weights_origin"] == "huggingface"
    assert fmap.meta["weights_revision"] is not None and fmap.meta["n_frames"] == 1
    assert pool(fmap, chip.grid).shape == (32,)
    np.testing.assert_array_equal(embedder.embed([chip])[0].values, fmap.values)
    changed = make_chip(embedder.bands, size=40)
    changed.data[embedder.bands.index("B11")] += 700.0
    assert not np.allclose(embedder.embed([changed])[0].values, fmap.values)
    pair = embedder.embed([make_chip(embedder.bands, size=40, seed=5), chip])
    np.testing.assert_allclose(pair[1].values, fmap.values, rtol=1e-4, atol=1e-5)


def test_grid_is_the_encoder_tokens_averaged_over_time_and_band_sets(zoo):
    from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.datatypes import MaskedOlmoEarthSample

    make, _ = zoo
    embedder = make(num_frames=3)
    chip = frames_chip(embedder.bands)
    fmap = embedder.embed([chip])[0]
    data = torch.from_numpy(embedder.model_input(chip).data).reshape(3, 12, 32, 32).permute(2, 3, 0, 1)[None]
    sample = MaskedOlmoEarthSample(timestamps=torch.tensor([[[10, 1, 2022], [20, 4, 2022], [30, 7, 2022]]]),
                                   sentinel2_l2a=data, sentinel2_l2a_mask=torch.zeros(1, 32, 32, 3, 1, dtype=torch.long))
    with torch.inference_mode():
        tokens = embedder.model().encoder(sample, patch_size=4, fast_pass=True)["tokens_and_masks"].sentinel2_l2a
    assert tokens.shape == (1, 8, 8, 3, 1, 32)
    np.testing.assert_allclose(fmap.values, tokens[0].mean(dim=(2, 3)).permute(2, 0, 1).numpy(), rtol=1e-4, atol=1e-5)
    assert embedder.describe().frames == 3


def test_frame_dates_matter_and_back_filled_frames_are_dropped(zoo):
    make, _ = zoo
    embedder = make(num_frames=3)
    chip = frames_chip(embedder.bands)
    base = embedder.embed([chip])[0]
    chip.meta["frame_dates"] = ["2019-02-10", "2019-05-20", "2019-08-30"]
    assert not np.allclose(embedder.embed([chip])[0].values, base.values)  # RoPE time in days since 2000
    filled = frames_chip(embedder.bands)
    filled.meta["frame_backfilled"] = [False, True, False]
    first = embedder.embed([filled])[0]
    assert first.meta["n_frames"] == 2 and first.meta["dropped_bins"] == [["2022-04-01", "2022-07-01"]]
    filled.data[1] = 9999.0  # the dropped frame's pixels do not count
    np.testing.assert_allclose(embedder.embed([filled])[0].values, first.values, rtol=1e-5, atol=1e-6)
    assert embedder.side_inputs(filled, {})["timestamps"] == [(10, 1, 2022), (30, 7, 2022)]
    # A batch mixing two and three kept frames runs each group on its own.
    pair = embedder.embed([filled, frames_chip(embedder.bands)])
    np.testing.assert_allclose(pair[0].values, first.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pair[1].values, base.values, rtol=1e-4, atol=1e-5)
    every = frames_chip(embedder.bands)
    every.meta["frame_backfilled"] = [True] * 3
    assert embedder.side_inputs(every, {})["timestamps"] == [(15, 5, 2022)]  # the window midpoint (input_time)


def test_weights_folder_layout_and_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(olmoearth.VARIANTS, "nano_v1_2", olmoearth.Variant("OlmoEarth-v1_2-Nano", 32, "nano", "v1.2"))
    embedder = get_embedder("olmoearth", variant="nano_v1_2", image_size=16, weights_dir=str(tmp_path / "w"),
                            cache_dir=str(tmp_path / "hf"), device="cpu")
    with pytest.raises(MissingWeights) as err:
        embedder.model()
    message = str(err.value)
    assert "weights.pth" in message and "huggingface.co/allenai/OlmoEarth-v1_2-Nano" in message
    assert str(tmp_path / "w" / "OlmoEarth-v1_2-Nano") in message
    save(tmp_path / "w" / "OlmoEarth-v1_2-Nano", tiny_config())
    fmap = embedder.embed([make_chip(embedder.bands, size=16)])[0]
    assert fmap.values.shape == (32, 4, 4) and fmap.meta["weights_origin"] == "weights_dir"


def test_input_contract_and_errors():
    description = describe_model("olmoearth")
    assert description.bands == ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
    assert (description.dim, description.image_size, description.patch_size, description.frames) == (768, 256, 4, 1)
    assert description.citation.startswith("Herzog") and "Artifact" in description.licence
    assert describe_model("olmoearth", variant="nano").dim == 128
    embedder = get_embedder("olmoearth", image_size=8)
    x = embedder.model_input(make_chip(embedder.bands, size=8, dn=2755.481305028308)).data  # B08 at its mean
    assert x[3, 0, 0] == pytest.approx(0.5)
    with pytest.raises(SpecError, match="image_size"):
        get_embedder("olmoearth", patch_size=6, image_size=64)
    with pytest.raises(SpecError, match="num_frames"):
        get_embedder("olmoearth", num_frames=13)
    with pytest.raises(SpecError, match="num_frames"):
        embedder.model_input(make_chip(embedder.bands, size=8, frames=2))
    with pytest.raises(SpecError, match="bands"):
        embedder.model_input(make_chip(embedder.bands[:10], size=8))
    undated = make_chip(embedder.bands, size=8)
    del undated.meta["input_time"]
    with pytest.raises(SpecError, match="frame_dates"):
        embedder.side_inputs(undated, {})
