"""The model zoo end to end, offline: for each model a tiny randomly initialised instance
of the real architecture (same builder, shrunk width/depth) is saved in the real checkpoint
format where the real loader looks (a fake Hugging Face cache with HF_HUB_OFFLINE=1, or a
weights folder), then loaded and run through the embedder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch  # noqa: E402

_precision = torch.get_float32_matmul_precision()
for _module in ("timm", "open_clip", "torchgeo", "terratorch", "huggingface_hub"):
    pytest.importorskip(_module, reason="needs the zoo extra: pip install 'rsembed-db[zoo]'")
# Importing terratorch sets the float32 matmul precision to "medium" process-wide; the
# models undo it (models.zoo.import_keeping_torch_settings), so must this import.
torch.set_float32_matmul_precision(_precision)

torch.set_float32_matmul_precision("highest")  # importing terratorch set "medium" (bf16 CPU matmuls)
from rsembed_db.errors import MissingWeights  # noqa: E402
from rsembed_db.models import clay, dofa, prithvi, remoteclip, satmae, scalemae  # noqa: E402
from rsembed_db.models.base import InputPrep  # noqa: E402
from rsembed_db.models.pooling import pool  # noqa: E402
from rsembed_db.producers.catalog import get_embedder  # noqa: E402
from rsembed_db.sources.base import Chip  # noqa: E402
from rsembed_db.specs import InputPrepSpec, SpecError  # noqa: E402
from tests.helpers.zoo import CRS, FAKE_COMMIT, TINY_VIT, hf_file, make_chip  # noqa: E402,F401


# -- tiny checkpoints in the published formats -------------------------------------------
def install_remoteclip(mp, cache, weights):
    tiny = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    mp.setitem(remoteclip.VARIANTS, "ViT-B-32", remoteclip.Variant(32, 32, tiny))
    model = get_embedder("remoteclip").build()
    torch.save(model.state_dict(), hf_file(cache, remoteclip.REPO, "RemoteCLIP-ViT-B-32.pt", "main"))
    return model


def install_prithvi(mp, cache, weights):
    from terratorch.models.backbones.prithvi_mae import PrithviMAE

    for key, variant in list(prithvi.VARIANTS.items()):
        mp.setitem(prithvi.VARIANTS, key, replace(variant, dim=32, arch=TINY_VIT))
    mae = PrithviMAE(img_size=224, patch_size=(1, 16, 16), num_frames=4, in_chans=6, decoder_embed_dim=16,
                     decoder_depth=1, decoder_num_heads=2, coords_encoding=["time", "location"],
                     coords_scale_learn=True, **TINY_VIT)
    with torch.no_grad():  # the learned time/location weights start at 0.1: make them count
        mae.encoder.temporal_embed_enc.scale.fill_(1.0)
        mae.encoder.location_embed_enc.scale.fill_(1.0)
    v = prithvi.VARIANTS["300m_tl"]
    torch.save(mae.state_dict(), hf_file(cache, v.repo_id, v.filename, "main"))
    return mae.encoder


def install_satmae(mp, cache, weights):
    mp.setitem(satmae.VARIANTS, "vit_large_patch16", replace(satmae.VARIANTS["vit_large_patch16"], dim=32,
                                                             arch=TINY_VIT))
    model = get_embedder("satmae").build()
    state = {**model.state_dict(), "mask_token": torch.zeros(1, 1, 16), "decoder_embed.weight": torch.ones(16, 32)}
    weights.mkdir(exist_ok=True)
    torch.save({"model": state, "epoch": 199}, weights / satmae.WEIGHTS.basename)
    return model


def install_scalemae(mp, cache, weights):
    mp.setitem(scalemae.VARIANTS, "vit_large_patch16", scalemae.Variant(32, 16, TINY_VIT))
    model = get_embedder("scalemae").build()
    torch.save(model.state_dict(), hf_file(cache, scalemae.REPO, scalemae.FILE, scalemae.REVISION))
    return model


def install_dofa(mp, cache, weights):
    for key, variant in list(dofa.VARIANTS.items()):
        mp.setitem(dofa.VARIANTS, key, replace(variant, dim=32, arch=TINY_VIT))
    model = get_embedder("dofa").build()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc_norm")}
    torch.save(state, hf_file(cache, dofa.REPO, dofa.VARIANTS["base"].filename, dofa.REVISION))
    return model


def install_clay(mp, cache, weights):
    mp.setitem(clay.VARIANTS, "v1.5", clay.Variant(32, 8, {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16,
                                                         "mlp_ratio": 2.0}))
    model = get_embedder("clay").build()
    state = {f"model.encoder.{k}": v for k, v in model.state_dict().items()}
    state["model.decoder.decoder_embed.weight"] = torch.ones(4, 32)
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 1e-5}, "epoch": 76},
               hf_file(cache, clay.REPO, clay.FILE, "main"))
    return model


INSTALL = {"remoteclip": install_remoteclip, "prithvi": install_prithvi, "satmae": install_satmae,
           "scalemae": install_scalemae, "dofa": install_dofa, "clay": install_clay}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """``zoo(name, **config)`` -> (embedder loading the tiny checkpoint, the saved module)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    cache, weights = tmp_path / "hf", tmp_path / "weights"

    def make(name, **config):
        torch.manual_seed(0)
        saved = INSTALL[name](monkeypatch, cache, weights)
        embedder = get_embedder(name, cache_dir=str(cache), weights_dir=str(weights), device="cpu", **config)
        return embedder, saved
    return make


def grid_prep(mode="resize"):
    return InputPrep(InputPrepSpec(mode=mode), grid_output=True)


@pytest.mark.parametrize("name", list(INSTALL))
def test_loads_the_real_format_and_returns_pooled_and_grid_outputs(zoo, name):
    embedder, saved = zoo(name)
    loaded = embedder.model()
    first = next(k for k in saved.state_dict() if k.endswith("weight"))
    assert torch.equal(loaded.state_dict()[first], saved.state_dict()[first])  # the checkpoint, not random
    dim, (h, w) = embedder.dim, embedder.grid
    assert dim == 32
    chip = make_chip(embedder.bands, size=200)
    fmap = embedder.embed_prepared([chip], [grid_prep()])[0]
    assert fmap.values.shape == (dim, h, w) and fmap.valid.all()
    assert fmap.transform.a == pytest.approx(200 * 10 / w)  # the patch grid covers the chip
    assert pool(fmap, chip.grid).shape == (dim,)
    assert fmap.meta["weights_origin"] == ("weights_dir" if name == "satmae" else "huggingface")
    tiled = embedder.embed_prepared([make_chip(embedder.bands, size=300)], [grid_prep("tile")])[0]
    assert tiled.values.shape[0] == dim and tiled.meta["input_prep"]["tiles"] == 4
    again = embedder.embed([chip])[0]
    assert np.array_equal(again.values, embedder.embed([chip])[0].values)  # deterministic
    pair = embedder.embed([make_chip(embedder.bands, size=200, seed=1), chip])
    np.testing.assert_allclose(pair[1].values, again.values, rtol=1e-4, atol=1e-5)  # batching
    assert not np.allclose(pair[0].values, pair[1].values)


@pytest.mark.parametrize("name", list(INSTALL))
def test_missing_weights_offline_is_one_clear_error(tmp_path, monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder(name, cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights, match="weights") as err:
        embedder.embed([make_chip(embedder.bands)])
    assert embedder.weights.basename in str(err.value) and embedder.weights.url in str(err.value)


@pytest.mark.parametrize(("name", "band", "dn", "expected"), [
    ("remoteclip", "B04", 5000.0, (0.5 - 0.48145466) / 0.26862954),
    ("satmae", "B04", 5000.0, (0.5 - 0.4182007312774658) / 0.28774282336235046),
    ("scalemae", "B03", 2500.0, (0.25 - 0.456) / 0.224),
    ("prithvi", "B8A", 3000.0, (3000 - 2734) / 1850),
    ("dofa", "B04", 1000.0, (1000 / 10000 * 255 - 114.1099739) / 77.84352553),
    ("clay", "B12", 2000.0, (2000 - 1835) / 1379),
])
def test_normalisation_uses_the_documented_constants(name, band, dn, expected):
    embedder = get_embedder(name)
    prepared = embedder.model_input(make_chip(embedder.bands, size=8, dn=dn))
    assert prepared.data[embedder.bands.index(band), 3, 3] == pytest.approx(expected, rel=1e-5)
    invalid = make_chip(embedder.bands, size=8, dn=dn)
    invalid.valid[0, 0] = False
    assert np.all(embedder.model_input(invalid).data[:, 0, 0] == 0)


@pytest.mark.parametrize("name", ["satmae", "scalemae", "prithvi"])
def test_grid_is_the_patch_tokens_with_cls_dropped(zoo, name):
    embedder, _ = zoo(name)
    model = embedder.model()
    chip = make_chip(embedder.bands)  # native size: no resampling
    fmap = embedder.embed([chip])[0]
    x = torch.from_numpy(embedder.model_input(chip).data[None])
    with torch.inference_mode():
        if name == "prithvi":
            tokens = model.forward_features(x[:, :, None], temporal_coords=torch.tensor([[[2022.0, 166.0]]]),
                                            location_coords=torch.tensor([list(chip_latlon(chip))]))[-1]
        else:
            if name == "scalemae":
                model.res = 10.0
            tokens = model.forward_features(x)
    h, w = embedder.grid
    assert tokens.shape[1] == 1 + h * w
    expected = tokens[0, 1:].T.reshape(-1, h, w).numpy()
    np.testing.assert_allclose(fmap.values, expected, rtol=1e-4, atol=1e-5)


def chip_latlon(chip: Chip) -> tuple[float, float]:
    from rsembed_db.models.chip_context import centre_lonlat

    lon, lat = centre_lonlat(chip)
    return lat, lon


def test_remoteclip_text_and_image_share_one_unit_space(zoo):
    import open_clip

    embedder, _ = zoo("remoteclip", tokens="global")
    text = embedder.encode_text(["solar farm", "a forest"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    model = embedder.model()
    with torch.inference_mode():
        manual = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(["solar farm"]), normalize=True)
    np.testing.assert_allclose(text[0], manual[0].numpy(), rtol=1e-5, atol=1e-6)
    chip = make_chip(embedder.bands)
    image = embedder.embed([chip])[0]
    assert image.values.shape == (32, 1, 1)
    with torch.inference_mode():
        clip_image, _ = model.visual(torch.from_numpy(embedder.model_input(chip).data[None]))
    clip_image = torch.nn.functional.normalize(clip_image, dim=-1)
    np.testing.assert_allclose(image.values[:, 0, 0], clip_image[0].numpy(), rtol=1e-4, atol=1e-5)
    scores = text @ pool(image, chip.grid)  # what text search ranks stored vectors by
    assert scores.shape == (2,)
    patches = get_embedder("remoteclip", cache_dir=embedder.runtime.cache_dir, device="cpu").embed([chip])[0]
    assert patches.values.shape == (32, 7, 7)
    np.testing.assert_allclose(np.linalg.norm(patches.values, axis=0), 1.0, rtol=1e-5)
    with pytest.raises(SpecError, match="text"):
        embedder.encode_text("solar farm")


def test_prithvi_frames_time_and_location_condition_the_output(zoo):
    embedder, _ = zoo("prithvi", num_frames=2)
    chip = make_chip(embedder.bands, frames=2)
    chip.meta["frame_dates"] = ["2022-03-01", "2022-07-01"]
    base = embedder.embed([chip])[0]
    assert base.values.shape == (32, 14, 14) and embedder.describe().frames == 2
    chip.meta["frame_dates"] = ["2019-03-01", "2019-09-01"]
    assert not np.allclose(embedder.embed([chip])[0].values, base.values)
    moved = make_chip(embedder.bands, frames=2, origin=(300000.0, 6500000.0))
    moved.meta["frame_dates"] = chip.meta["frame_dates"]
    assert not np.allclose(embedder.embed([moved])[0].values, embedder.embed([chip])[0].values)
    with pytest.raises(SpecError, match="num_frames"):
        embedder.embed([make_chip(embedder.bands)])
    no_time = get_embedder("prithvi", num_frames=2, time=False, cache_dir=embedder.runtime.cache_dir)
    first = no_time.embed([chip])[0].values
    chip.meta["frame_dates"] = ["2022-03-01", "2022-07-01"]
    np.testing.assert_array_equal(no_time.embed([chip])[0].values, first)


def test_scalemae_and_clay_are_conditioned_on_ground_sampling(zoo):
    for name in ("scalemae", "clay"):
        embedder, _ = zoo(name)
        at_10m = embedder.embed([make_chip(embedder.bands, size=embedder.image_size)])[0]
        at_30m = embedder.embed([make_chip(embedder.bands, size=embedder.image_size, scale=30.0)])[0]
        assert not np.allclose(at_10m.values, at_30m.values)


def test_clay_time_and_place_inputs(zoo):
    embedder, _ = zoo("clay")
    chip = make_chip(embedder.bands, size=256)
    side = embedder.side_inputs(chip, {"mode": "resize", "image_size": 256})
    week = 24 * 2 * np.pi / 52  # 2022-06-15 is in ISO week 24
    np.testing.assert_allclose(side["time"], [np.sin(week), np.cos(week), 0.0, 1.0], atol=1e-6)
    lat = np.radians(chip_latlon(chip)[0])
    assert side["latlon"][:2] == pytest.approx([np.sin(lat), np.cos(lat)], rel=1e-5)
    assert side["gsd"] == pytest.approx(10.0)
    base = embedder.embed([chip])[0].values
    chip.meta["input_time"] = "2022-12-15"
    assert not np.allclose(embedder.embed([chip])[0].values, base)
    blind = get_embedder("clay", time=False, location=False, cache_dir=embedder.runtime.cache_dir)
    assert not blind.side_inputs(chip, {"mode": "resize", "image_size": 256})["latlon"].any()


def test_dofa_takes_any_band_set_with_wavelengths(zoo):
    embedder, _ = zoo("dofa", bands=["B8A", "B04", "B03"], band_stats={"B8A": [90.0, 60.0]})
    assert embedder.wavelengths == [0.865, 0.665, 0.56]
    chip = make_chip(("B02", "B03", "B04", "B8A"))
    assert embedder.embed([chip])[0].values.shape == (32, 14, 14)
    # The patch embedding is generated per wavelength, so a band order is a free choice: the
    # patch tokens agree to float rounding, and so do the outputs, up to the amplification of
    # rounding by the random tiny network (relative L2 error, not element-wise).
    reordered = get_embedder("dofa", bands=["B04", "B8A", "B03"], band_stats={"B8A": [90.0, 60.0]},
                             cache_dir=embedder.runtime.cache_dir)
    x = torch.from_numpy(embedder.model_input(chip).data[None])
    x_reordered = torch.from_numpy(reordered.model_input(chip).data[None])
    with torch.inference_mode():
        tokens, _ = embedder.model().patch_embed(x, torch.tensor(embedder.wavelengths))
        tokens_reordered, _ = reordered.model().patch_embed(x_reordered, torch.tensor(reordered.wavelengths))
    np.testing.assert_allclose(tokens_reordered.numpy(), tokens.numpy(), rtol=1e-5, atol=1e-5)
    got, want = reordered.embed([chip])[0].values, embedder.embed([chip])[0].values
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-3
    with pytest.raises(SpecError, match="bands"):
        embedder.embed([make_chip(("B02", "B03"))])


def test_a_zoo_model_through_the_api_store_and_input_prep(zoo, tmp_path):
    from rsembed_db import H3Cell, OutputSpec, TemporalSpec
    from rsembed_db.api import get_embedding
    from rsembed_db.store import EmbeddingStore
    from tests.conftest import SCENE

    embedder, _ = zoo("dofa")
    ask = {"spatial": H3Cell("881f1c6481fffff"), "temporal": TemporalSpec.year(2017), "imagery": SCENE,
           "store": EmbeddingStore(tmp_path / "db"), "model_config": {"cache_dir": embedder.runtime.cache_dir}}
    pooled = get_embedding("dofa", **ask)
    assert pooled.data.shape == (32,) and pooled.meta["from_store"] is False
    grid = get_embedding("dofa", output=OutputSpec.grid(), input_prep="tile", **ask)
    assert grid.data.shape[0] == 32 and grid.data.dims == ("band", "y", "x")
    again = get_embedding("dofa", **ask)
    assert again.meta["from_store"] is True
    np.testing.assert_array_equal(again.data, pooled.data)


def test_text_search_ranks_stored_global_image_embeddings(zoo, tmp_path):
    import json

    from typer.testing import CliRunner

    from rsembed_db import H3Cell, TemporalSpec
    from rsembed_db.api import get_embedding, get_embeddings_batch
    from rsembed_db.cli.app import app
    from rsembed_db.store import EmbeddingStore
    from tests.conftest import SCENE

    embedder, _ = zoo("remoteclip", tokens="global")
    runtime = {"cache_dir": embedder.runtime.cache_dir, "device": "cpu"}
    store, year = EmbeddingStore(tmp_path / "db"), TemporalSpec.year(2017)
    cells = [H3Cell(c) for c in ("881f1c6481fffff", "881f1c6485fffff", "881f1c64e1fffff")]
    stored = get_embeddings_batch("remoteclip", spatials=cells, temporal=year, imagery=SCENE, store=store,
                                  model_config={**runtime, "tokens": "global"})
    # A patch-token row of the same table lives in another space: text search must skip it.
    get_embedding("remoteclip", spatial=cells[0], temporal=year, imagery=SCENE, store=store, model_config=runtime)
    assert store.table("remoteclip").count_rows() == 4

    args = ["search", "--model", "remoteclip", "--text", "solar farm", "--format", "json", "-k", "10",
            "--db", str(tmp_path / "db"), "--config", f"cache_dir={runtime['cache_dir']}", "--config", "device=cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    text = embedder.encode_text(["solar farm"])[0]
    expected = sorted((1 - float(text @ e.data / np.linalg.norm(e.data)), e.meta["key"]) for e in stored)
    assert [r["key"] for r in rows] == [key for _, key in expected]
    np.testing.assert_allclose([r["distance"] for r in rows], [d for d, _ in expected], atol=1e-5)
