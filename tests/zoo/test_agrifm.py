"""AgriFM: a tiny random Video Swin encoder of the real architecture saved in the published
``AgriFM.pth`` layout (``state_dict`` with ``module.`` keys, ``S2_patch_emd`` beside the other
sources' embeddings) in a weights folder, loaded through the real loader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rsembed_db.errors import MissingWeights
from rsembed_db.models import agrifm
from rsembed_db.models.agrifm_encoder import AgriFMConfig, AgriFMEncoder, relative_index
from rsembed_db.models.base import InputPrep
from rsembed_db.models.pooling import pool
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import GridCell, InputPrepSpec, SpecError, TemporalSpec
from tests.helpers.zoo import make_chip

S2 = agrifm.S2_BANDS
TINY = agrifm.Variant(64, 16, AgriFMConfig(embed_dim=8, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2)))


def tiny_encoder(seed: int = 0) -> AgriFMEncoder:
    torch.manual_seed(seed)
    model = AgriFMEncoder(TINY.arch)
    with torch.no_grad():       # the published bias tables are learned: make them count
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 1.0)
    return model


def published(model: AgriFMEncoder) -> dict:
    state = {}
    for key, tensor in model.state_dict().items():
        state["module." + key.replace("patch_emd.", "S2_patch_emd.")] = tensor
    for name, module in model.named_modules():
        if name.endswith(".attn"):                    # the reference saves its index buffers too
            state[f"module.{name}.relative_position_index"] = relative_index((8, 7, 7))
    state["module.HLSL30_patch_emd.proj.weight"] = torch.ones(8, 6, 4, 2, 2)
    state["module.Modis_patch_emd.proj.weight"] = torch.ones(8, 7, 4, 2, 2)
    return {"state_dict": state, "meta": {"epoch": 100}}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(agrifm.VARIANTS, "base", TINY)
    weights = tmp_path / "weights"
    weights.mkdir()
    saved = tiny_encoder()
    torch.save(published(saved), weights / "AgriFM.pth")

    def make(**config):
        config = {"image_size": 64, **config}
        return get_embedder("agrifm", weights_dir=str(weights), device="cpu", **config), saved
    return make


def chip_of(frames=32, size=64, seed=0, bands=S2):
    return make_chip(bands, size=size, seed=seed, frames=frames if frames > 1 else None)


def test_the_published_format_loads_and_gives_pooled_and_grid_outputs(zoo):
    embedder, saved = zoo()
    loaded = embedder.model()
    for key in ("patch_emd.proj.weight", "backbone.layers.2.blocks.1.attn.relative_position_bias_table",
                "backbone.layers.0.downsample.reduction.weight", "backbone.norm.weight"):
        assert torch.equal(loaded.state_dict()[key], saved.state_dict()[key])
    assert embedder.dim == 64 and embedder.grid == (4, 4) and embedder.describe().frames == 32
    chip = chip_of()
    fmap = embedder.embed_prepared([chip], [InputPrep(InputPrepSpec(mode="resize"), True)])[0]
    assert fmap.values.shape == (64, 4, 4) and fmap.valid.all()
    assert pool(fmap, chip.grid).shape == (64,) and fmap.meta["weights_origin"] == "weights_dir"
    x = torch.from_numpy(embedder.model_input(chip).data.reshape(1, 32, 10, 64, 64))
    with torch.inference_mode():
        np.testing.assert_allclose(fmap.values, saved(x)[0].numpy(), rtol=1e-4, atol=1e-5)


def test_frames_are_an_ordered_stack(zoo):
    embedder, _ = zoo(num_frames=8)
    chip = chip_of(8)
    first = pool(embedder.embed([chip])[0], chip.grid)
    np.testing.assert_array_equal(first, pool(embedder.embed([chip])[0], chip.grid))
    swapped = chip_of(8)
    swapped.data = swapped.data[::-1].copy()
    assert not np.allclose(pool(embedder.embed([swapped])[0], chip.grid), first)
    changed = chip_of(8)
    changed.data[:, S2.index("B8A")] += 500.0
    assert not np.allclose(pool(embedder.embed([changed])[0], chip.grid), first)


def test_band_and_frame_errors(zoo):
    embedder, _ = zoo(num_frames=4)
    chip = chip_of(4)
    reordered = chip_of(4, bands=tuple(reversed(S2)))
    reordered.data = chip.data[:, ::-1].copy()
    np.testing.assert_array_equal(embedder.embed([reordered])[0].values, embedder.embed([chip])[0].values)
    with pytest.raises(SpecError, match="bands.*B05"):
        embedder.embed([chip_of(4, bands=tuple(b for b in S2 if b != "B05"))])
    with pytest.raises(SpecError, match="num_frames: agrifm is configured for 4 frame"):
        embedder.embed([chip_of(8)])
    for bad, field in (({"num_frames": 33}, "num_frames"), ({"image_size": 100}, "image_size"),
                       ({"variant": "large"}, "variant")):
        with pytest.raises(SpecError, match=field):
            get_embedder("agrifm", **bad)


def test_normalisation_uses_the_config_statistics():
    embedder = get_embedder("agrifm", num_frames=1)
    chip = make_chip(S2, size=8, dn=2500.0)
    chip.valid[0, 0] = False
    x = embedder.model_input(chip).data
    assert x[S2.index("B11"), 3, 3] == pytest.approx((2500 - 3056.86349163) / 1808.30013156, rel=1e-6)
    assert x[:, 0, 0].tolist() == [0.0] * 10


def test_missing_weights_say_where_to_download_and_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("agrifm", weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights, match="https://glass.hku.hk/casual/AgriFM/AgriFM.pth") as err:
        embedder.embed([chip_of()])
    assert f"put AgriFM.pth in {tmp_path / 'w'}" in str(err.value)


def test_a_checkpoint_missing_encoder_tensors_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(agrifm.VARIANTS, "base", TINY)
    state = published(tiny_encoder())
    del state["state_dict"]["module.backbone.norm.weight"]
    torch.save(state, tmp_path / "AgriFM.pth")
    with pytest.raises(SpecError, match="backbone.norm.weight"):
        get_embedder("agrifm", weights_dir=str(tmp_path), image_size=64).model()


def test_describe_shows_the_input_contract():
    d = describe_model("agrifm")
    assert (d.dim, d.frames, d.image_size, d.patch_size, d.scale_m) == (1024, 32, 256, 16, 10.0)
    assert d.bands == S2 and "Apache-2.0" in d.licence and "Li W." in d.citation and "115234" in d.citation
    assert d.normalisation["window_size_thw"] == [8, 7, 7] and d.normalisation["depths"] == [2, 2, 18, 2]


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
        emb = get_embedding("agrifm", spatial=GridCell("EPSG:32633", 334100, 5818100, 640),
                            temporal=TemporalSpec.year(2017), imagery=folder,
                            model_config={"num_frames": 8, "image_size": 64, "weights_dir": embedder.runtime.weights_dir,
                                          "device": "cpu"})
    assert emb.data.shape == (64,) and np.isfinite(emb.data).all()
    assert emb.meta["n_frames"] == 8 and emb.meta["n_distinct_frames"] == 3
