"""Galileo: a tiny random encoder of the real architecture saved as the published
``models/nano/encoder.pt`` in a fake Hugging Face cache, loaded through the real loader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import galileo
from rsembed_db.models.base import InputPrep
from rsembed_db.models.galileo_encoder import S2_BANDS, GalileoConfig, GalileoEncoder
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.sources.frames import frame_bins
from rsembed_db.specs import GridCell, InputPrepSpec, SpecError, TemporalSpec
from tests.helpers.zoo import hf_file, make_chip

TINY = galileo.Variant(32, 8, GalileoConfig(32, depth=2, num_heads=2))
Y2022 = TemporalSpec.year(2022)


def tiny_encoder(seed: int = 0) -> GalileoEncoder:
    torch.manual_seed(seed)
    model = GalileoEncoder(TINY.arch)
    with torch.no_grad():   # the published channel embeddings are learned: make them non-zero
        model.s_t_channel_embed.normal_()
    return model


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """``zoo(**config)`` -> (embedder over a tiny checkpoint in a fake HF cache, the saved encoder)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(galileo.VARIANTS, "nano", TINY)
    cache = tmp_path / "hf"
    saved = tiny_encoder()
    torch.save(saved.state_dict(), hf_file(cache, galileo.REPO, "models/nano/encoder.pt", "main"))

    def make(**config):
        return get_embedder("galileo", cache_dir=str(cache), device="cpu", **config), saved
    return make


def chip_of(frames: int, size: int = 64, seed: int = 0, bands=S2_BANDS, window=Y2022):
    chip = make_chip(bands, size=size, seed=seed, frames=frames if frames > 1 else None)
    if frames > 1:
        chip.meta["frame_bins"] = [[b.start, b.end] for b in frame_bins(window, frames)]
    return chip


def test_the_published_format_loads_and_gives_pooled_and_grid_outputs(zoo):
    embedder, saved = zoo()
    loaded = embedder.model()
    for key in ("space_time_embed.S2_RGB.proj.weight", "s_t_channel_embed", "blocks.1.attn.q.weight"):
        assert torch.equal(loaded.state_dict()[key], saved.state_dict()[key])
    assert embedder.dim == 32 and embedder.grid == (8, 8) and embedder.describe().frames == 12
    chip = chip_of(12)
    fmap = embedder.embed_prepared([chip], [InputPrep(InputPrepSpec(mode="resize"), True)])[0]
    assert fmap.values.shape == (32, 8, 8) and fmap.valid.all()
    assert pool(fmap, chip.grid).shape == (32,)
    assert fmap.meta["month_indices"] == list(range(12)) and fmap.meta["weights_origin"] == "huggingface"
    assert fmap.meta["input_resolution_m"] == pytest.approx(10.0)


def test_grid_is_the_mean_of_each_patch_tokens_with_months_of_the_bins(zoo):
    embedder, _ = zoo(num_frames=3)
    chip = chip_of(3)
    assert galileo.frame_months(chip, 3) == [2, 6, 10]     # bin midpoints: Mar 2, Jul 2, Nov 1
    fmap = embedder.embed([chip])[0]
    x = embedder.model_input(chip).data.reshape(1, 3, 10, 64, 64)
    with torch.inference_mode():
        tokens = embedder.model().encode_s2(torch.from_numpy(x), torch.tensor([[2, 6, 10]]), 8, torch.tensor([10.0]))
    assert tokens.shape == (1, 8, 8, 15, 32)
    np.testing.assert_allclose(fmap.values, tokens[0].mean(dim=2).permute(2, 0, 1).numpy(), rtol=1e-4, atol=1e-5)


def test_deterministic_and_sensitive_to_each_band_and_to_the_months(zoo):
    embedder, _ = zoo(num_frames=2)
    chip = chip_of(2)
    first = pool(embedder.embed([chip])[0], chip.grid)
    np.testing.assert_array_equal(first, pool(embedder.embed([chip])[0], chip.grid))
    changed = chip_of(2)
    changed.data[:, S2_BANDS.index("B11")] += 500.0
    assert not np.allclose(pool(embedder.embed([changed])[0], chip.grid), first)
    later = chip_of(2)
    later.meta["frame_bins"] = [["2022-03-01", "2022-05-01"], ["2022-05-01", "2022-07-01"]]
    assert not np.allclose(pool(embedder.embed([later])[0], chip.grid), first)


def test_bands_are_taken_by_name_and_missing_bands_or_frames_are_errors(zoo):
    embedder, _ = zoo(num_frames=2)
    chip = chip_of(2)
    reordered = chip_of(2, bands=tuple(reversed(S2_BANDS)))
    reordered.data = chip.data[:, ::-1].copy()
    np.testing.assert_array_equal(embedder.embed([reordered])[0].values, embedder.embed([chip])[0].values)
    with pytest.raises(SpecError, match="bands.*B8A"):
        embedder.embed([chip_of(2, bands=tuple(b for b in S2_BANDS if b != "B8A"))])
    with pytest.raises(SpecError, match="num_frames: galileo is configured for 2 frame"):
        embedder.embed([chip_of(3)])
    bare = make_chip(S2_BANDS, frames=2)
    with pytest.raises(SpecError, match="frame_bins"):
        embedder.embed([bare])


def test_patch_size_and_image_size_change_the_grid(zoo):
    embedder, saved = zoo(num_frames=1, patch_size=4, image_size=32)
    assert embedder.grid == (8, 8) and embedder.describe().patch_size == 4
    chip = chip_of(1, size=32)
    fmap = embedder.embed([chip])[0]
    x = embedder.model_input(chip).data.reshape(1, 1, 10, 32, 32)
    with torch.inference_mode():
        tokens = saved.encode_s2(torch.from_numpy(x), torch.tensor([[5]]), 4, torch.tensor([10.0]))  # June 15
    np.testing.assert_allclose(fmap.values, tokens[0].mean(dim=2).permute(2, 0, 1).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(SpecError, match="image_size: must be a multiple of patch_size 3"):
        get_embedder("galileo", patch_size=3, image_size=64)
    with pytest.raises(SpecError, match="patch_size"):
        get_embedder("galileo", patch_size=9)


def test_normalisation_is_the_pretraining_two_sigma_scaling():
    embedder = get_embedder("galileo", num_frames=1)
    chip = make_chip(S2_BANDS, size=8, dn=2000.0)
    chip.valid[0, 0] = False
    x = embedder.model_input(chip).data
    mean, std = galileo.S2_MEAN["B04"], galileo.S2_STD["B04"]
    assert x[S2_BANDS.index("B04"), 3, 3] == pytest.approx((2000 - (mean - 2 * std)) / (4 * std), rel=1e-6)
    assert x[S2_BANDS.index("B04"), 0, 0] == pytest.approx(0.5)    # invalid pixels: the band mean
    raw = get_embedder("galileo", num_frames=1, normalisation="none").model_input(chip).data
    assert raw[S2_BANDS.index("B04"), 3, 3] == 2000.0
    with pytest.raises(SpecError, match="normalisation"):
        get_embedder("galileo", normalisation="zscore")


def test_missing_weights_name_the_file_and_the_weights_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("galileo", cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights, match="galileo_nano_encoder.pt") as err:
        embedder.embed([chip_of(12)])
    assert "https://huggingface.co/nasaharvest/galileo/resolve/main/models/nano/encoder.pt" in str(err.value)
    monkeypatch.setitem(galileo.VARIANTS, "nano", TINY)
    (tmp_path / "w").mkdir()
    torch.save(tiny_encoder(1).state_dict(), tmp_path / "w" / "galileo_nano_encoder.pt")
    embedder = get_embedder("galileo", cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"), device="cpu")
    assert embedder.embed([chip_of(12)])[0].meta["weights_origin"] == "weights_dir"


def test_describe_shows_the_input_contract():
    d = describe_model("galileo")
    assert (d.dim, d.frames, d.image_size, d.patch_size, d.scale_m) == (128, 12, 64, 8, 10.0)
    assert d.bands == S2_BANDS and "MIT" in d.licence and "Tseng" in d.citation and "2502.09356" in d.citation
    assert d.normalisation["formula"] == "(DN - (mean - 2 std)) / (4 std)"
    assert describe_model("galileo", variant="base").dim == 768


def test_end_to_end_over_real_multi_date_scenes(zoo, tmp_path):
    from rsembed_db.api import get_embedding
    from tests.test_frames import SCENES, write_scene

    folder = tmp_path / "scenes"
    folder.mkdir()
    for day, offset in SCENES.items():
        write_scene(folder, day, offset)
    embedder, _ = zoo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        emb = get_embedding("galileo", spatial=GridCell("EPSG:32633", 334100, 5818100, 640),
                            temporal=TemporalSpec.year(2017), imagery=folder,
                            model_config={"num_frames": 4, "cache_dir": embedder.runtime.cache_dir, "device": "cpu"})
    assert emb.data.shape == (32,) and np.isfinite(emb.data).all()
    assert emb.meta["frame_backfilled"] == [False, True, False, True] and emb.meta["n_frames"] == 4
