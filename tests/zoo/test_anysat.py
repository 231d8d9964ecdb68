"""AnySat: a tiny random AnyModule of the real Sentinel-2 architecture saved as the published
``models/AnySat.pth`` (``{"state_dict": ...}`` with every modality's projector) in a fake
Hugging Face cache, loaded through the real loader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import anysat
from rsembed_db.models.anysat_encoder import S2_BANDS, AnySatConfig, AnySatS2, dense_grid, rpe_buckets
from rsembed_db.models.base import InputPrep
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import GridCell, InputPrepSpec, SpecError, TemporalSpec
from tests.helpers.zoo import hf_file, make_chip

# dim 128: the L-TAE input MLP starts at dim / 8 channels in GroupNorms of 4 groups (dim 32 would
# leave one channel per group, normalised away)
TINY = anysat.Variant(128, 1, AnySatConfig(dim=128, depth=1, heads=2))
DATES = ["2022-01-20", "2022-03-01", "2022-05-10", "2022-07-04", "2022-08-30", "2022-10-02", "2022-11-15",
         "2022-12-31"]


def tiny_model(seed: int = 0) -> AnySatS2:
    torch.manual_seed(seed)
    model = AnySatS2(TINY.arch)
    with torch.no_grad():   # learned tensors the architecture starts at zero
        for name, p in model.named_parameters():
            if "lookup_table" in name or "q_learned" in name or "cls_token" in name or name.endswith(".Q"):
                p.normal_(0, 0.5)
    return model


def published(model: AnySatS2) -> dict:
    """The published layout: AnyModule's tensors, a projector for every modality, under ``state_dict``."""
    state = dict(model.state_dict())
    state["projector_aerial.patch_embed.proj.weight"] = torch.ones(128, 4, 10, 10)
    state["projector_s1-asc.patch_embed.inconv.0.weight"] = torch.ones(4, 2)
    return {"state_dict": state, "epoch": 42}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(anysat.VARIANTS, "base", TINY)
    cache = tmp_path / "hf"
    saved = tiny_model()
    torch.save(published(saved), hf_file(cache, anysat.REPO, anysat.FILE, "main"))

    def make(**config):
        return get_embedder("anysat", cache_dir=str(cache), device="cpu", **config), saved
    return make


def chip_of(frames=8, size=24, seed=0, bands=S2_BANDS, scale=10.0):
    chip = make_chip(bands, size=size, seed=seed, scale=scale, frames=frames if frames > 1 else None)
    if frames > 1:
        chip.meta["frame_dates"] = DATES[:frames]
    return chip


def test_the_published_format_loads_and_gives_pooled_and_grid_outputs(zoo):
    embedder, saved = zoo()
    loaded = embedder.model()
    for key in ("projector_s2.patch_embed.attention_heads.Q", "spatial_encoder.predictor_blocks.0.attn.rpe_k"
                ".lookup_table_weight", "blocks.1.attn.q_learned"):
        assert torch.equal(loaded.state_dict()[key], saved.state_dict()[key])
    assert embedder.dim == 128 and embedder.grid == (24, 24) and embedder.describe().frames == 8
    chip = chip_of()
    fmap = embedder.embed_prepared([chip], [InputPrep(InputPrepSpec(mode="resize"), True)])[0]
    assert fmap.values.shape == (128, 24, 24) and fmap.valid.all()
    assert pool(fmap, chip.grid).shape == (128,)
    assert fmap.meta["doy0_values"] == [19, 59, 129, 184, 241, 274, 318, 364]
    assert fmap.meta["weights_origin"] == "huggingface"


def test_grid_is_the_final_patch_tokens_fed_with_each_frame_day_of_year(zoo):
    embedder, saved = zoo(patch_size_m=20)
    assert embedder.grid == (12, 12)
    chip = chip_of()
    fmap = embedder.embed([chip])[0]
    x = torch.from_numpy(embedder.model_input(chip).data.reshape(1, 8, 10, 24, 24))
    with torch.inference_mode():
        tokens, subs = saved(x, torch.tensor([[19, 59, 129, 184, 241, 274, 318, 364]], dtype=torch.float32), 2)
    assert tokens.shape == (1, 145, 128) and subs.shape == (1, 144, 4, 128)
    np.testing.assert_allclose(fmap.values, tokens[0, 1:].T.reshape(128, 12, 12).numpy(), rtol=1e-4, atol=1e-5)
    moved = chip_of()
    moved.meta["frame_dates"] = [*DATES[:4], "2022-09-20", *DATES[5:]]
    assert not np.allclose(embedder.embed([moved])[0].values, fmap.values)


def test_dense_and_tile_outputs(zoo):
    dense, saved = zoo(output="dense", patch_size_m=20)
    assert dense.dim == 256 and dense.grid == (24, 24) and dense.describe().dim == 256
    chip = chip_of()
    values = dense.embed([chip])[0].values
    x = torch.from_numpy(dense.model_input(chip).data.reshape(1, 8, 10, 24, 24))
    doy = torch.tensor([[19, 59, 129, 184, 241, 274, 318, 364]], dtype=torch.float32)
    with torch.inference_mode():
        tokens, subs = saved(x, doy, 2)
    np.testing.assert_allclose(values, dense_grid(tokens, subs)[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(values[:128, 0, 0], values[:128, 1, 1], rtol=1e-6)     # same patch token
    np.testing.assert_allclose(values[128:, 1, 1], subs[0, 0, 3].numpy(), rtol=1e-4, atol=1e-5)
    tile = get_embedder("anysat", output="tile", patch_size_m=20, cache_dir=dense.runtime.cache_dir, device="cpu")
    assert tile.grid == (1, 1)
    np.testing.assert_allclose(tile.embed([chip])[0].values[:, 0, 0], tokens[0, 0].numpy(), rtol=1e-4, atol=1e-5)


def test_deterministic_and_sensitive_to_each_band(zoo):
    embedder, _ = zoo(num_frames=3)
    chip = chip_of(3)
    first = pool(embedder.embed([chip])[0], chip.grid)
    np.testing.assert_array_equal(first, pool(embedder.embed([chip])[0], chip.grid))
    changed = chip_of(3)
    changed.data[:, S2_BANDS.index("B05")] += 300.0
    assert not np.allclose(pool(embedder.embed([changed])[0], chip.grid), first)


def test_band_frame_and_scale_errors(zoo):
    embedder, _ = zoo(num_frames=2)
    chip = chip_of(2)
    reordered = chip_of(2, bands=tuple(reversed(S2_BANDS)))
    reordered.data = chip.data[:, ::-1].copy()
    np.testing.assert_array_equal(embedder.embed([reordered])[0].values, embedder.embed([chip])[0].values)
    with pytest.raises(SpecError, match="bands.*B12"):
        embedder.embed([chip_of(2, bands=S2_BANDS[:-1])])
    with pytest.raises(SpecError, match="num_frames: anysat is configured for 2 frame"):
        embedder.embed([chip_of(4)])
    with pytest.raises(SpecError, match="frame_dates"):
        embedder.embed([make_chip(S2_BANDS, size=24, frames=2)])
    with pytest.raises(SpecError, match="scale_m: .*positive multiple of 10, got 15"):
        embedder.embed([chip_of(2, scale=15.0)])
    assert embedder.embed([chip_of(2, scale=20.0)])[0].values.shape == (128, 24, 24)
    for bad, field in (({"patch_size_m": 15}, "patch_size_m"), ({"patch_size_m": 0}, "patch_size_m"),
                       ({"patch_size_m": 50}, "image_size"), ({"output": "all"}, "output"),
                       ({"normalisation": "none"}, "normalisation")):
        with pytest.raises(SpecError, match=field):
            get_embedder("anysat", **bad)


def test_normalisation_dataset_and_per_tile():
    embedder = get_embedder("anysat", num_frames=1)
    chip = make_chip(S2_BANDS, size=8, dn=3000.0)
    chip.valid[0, 0] = False
    x = embedder.model_input(chip).data
    assert x[2, 3, 3] == pytest.approx((3000 - anysat.S2_MEAN[2]) / anysat.S2_STD[2], rel=1e-6)
    assert x[2, 0, 0] == 0.0
    tile = get_embedder("anysat", num_frames=2, normalisation="per_tile").model_input(chip_of(2, size=8)).data
    per_band = tile.reshape(2, 10, 8, 8).transpose(1, 0, 2, 3).reshape(10, -1)
    np.testing.assert_allclose(per_band.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_band.std(axis=1), 1.0, rtol=1e-4)


def test_irpe_buckets():
    buckets = rpe_buckets(3, torch.device("cpu"))
    assert buckets.shape == (10, 10) and (buckets[0] == 7).all() and (buckets[:, 0] == 7).all()
    # distances 0, 1, 2 and round(sqrt(8)) = 3 px: beyond alpha = 1.9 the log compression maps 2 and 3 to 2
    assert (buckets[1, 1], buckets[1, 2], buckets[1, 3], buckets[1, 9]) == (3, 4, 5, 5)
    assert rpe_buckets(8, torch.device("cpu"))[1, 64] == 6        # 10 px: log-compressed, capped


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("anysat", cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights, match="AnySat.pth") as err:
        embedder.embed([chip_of()])
    assert "https://huggingface.co/g-astruc/AnySat/resolve/main/models/AnySat.pth" in str(err.value)


def test_describe_shows_the_input_contract():
    d = describe_model("anysat")
    assert (d.dim, d.frames, d.image_size, d.patch_size, d.scale_m) == (768, 8, 24, 1, 10.0)
    assert d.bands == S2_BANDS and "MIT" in d.licence and "Astruc" in d.citation
    assert d.normalisation["mean"][0] == pytest.approx(4304.33, rel=1e-5)
    assert describe_model("anysat", output="dense").dim == 1536


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
        emb = get_embedding("anysat", spatial=GridCell("EPSG:32633", 334500, 5818100, 240),   # where August is valid
                            temporal=TemporalSpec.range("2017-01-01", "2017-09-01"), imagery=folder,
                            model_config={"num_frames": 2, "cache_dir": embedder.runtime.cache_dir, "device": "cpu"})
    assert emb.data.shape == (128,) and np.isfinite(emb.data).all()
    assert emb.meta["frame_dates"] == ["2017-02-16", "2017-08-05"] and emb.meta["n_distinct_frames"] == 2
