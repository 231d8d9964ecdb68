"""THOR offline: tiny random THOR encoders (the real architecture, shrunk) saved like the
published checkpoints (``{"state_dict": {"encoder.<param>": ...}}`` with every channel's
patch embedding, other sub-models' and ignored tensors) in a fake Hugging Face cache,
loaded through the real loader; the forward pass is checked against one written out
from the published description."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsembed_db.errors import MissingWeights
from rsembed_db.models import thor
from rsembed_db.models.thor_net import Channel, ThorEncoder, alibi_slopes
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import SpecError
from tests.helpers.zoo import hf_file, make_chip

S2, S1 = thor.S2_BANDS, thor.S1_BANDS
TINY = thor.Variant(48, 8, 2, 3, 16)  # 3 heads: ALiBi slopes of a non-power-of-two head count


def save_published(cache, size, variant):
    """A THOR checkpoint of every S2 and S1 channel, as the published files hold them."""
    torch.manual_seed(1)
    channels = [Channel(*thor.THOR_BANDS[b][:5]) for b in (*S2, *S1)]
    model = ThorEncoder(channels, variant.dim, variant.depth, variant.heads, variant.band_dim, 2880, 8)
    state = {f"encoder.{k}": t for k, t in model.state_dict().items()}
    state["encoder.ind_patch_embed.patch_embed.S3:Oa01_reflectance.weight"] = torch.ones(variant.dim, 1, 16, 16)
    state["encoder.band_embed.group5"] = torch.ones(variant.band_dim)
    state["encoder.pos_embed.10"] = torch.ones(1)  # skipped by THOR's loader
    state["decoder.blocks.0.norm1.weight"] = torch.ones(variant.dim)  # another sub-model
    repo, filename = variant.files(size)
    torch.save({"state_dict": state}, hf_file(cache, repo, filename, "main"))
    return model.eval()


@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(thor.VARIANTS, "base", TINY)
    return save_published(tmp_path / "hf", "base", TINY), {"cache_dir": str(tmp_path / "hf"), "device": "cpu"}


def reference_tokens(model, x, bands):
    """THOR's forward over ``bands`` written out: resample per GSD, PI-resized 16 -> 8 kernels,
    group means, [sin-cos(patch size) | group embedding], ALiBi over patch centres."""
    old, new = 16, 8
    rows = []
    for i in range(old * old):
        basis = torch.zeros(old * old)
        basis[i] = 1.0
        rows.append(F.interpolate(basis.reshape(1, 1, old, old), (new, new), mode="bicubic", antialias=True).flatten())
    pinv = torch.linalg.pinv(torch.stack(rows))
    groups: dict[int, list[torch.Tensor]] = {}
    for index, band in enumerate(bands):
        _, embed, gsd, _, group, *_ = thor.THOR_BANDS[band]
        conv = model.ind_patch_embed.patch_embed[embed]
        kernel = torch.stack([(pinv @ w.flatten()).reshape(1, new, new) for w in conv.weight])
        image = F.interpolate(x[:, index:index + 1], (2880 // gsd, 2880 // gsd), mode="bilinear")
        groups.setdefault(group, []).append(F.conv2d(image, kernel, conv.bias, stride=new).flatten(2).transpose(1, 2))
    pos_dim = TINY.dim - TINY.band_dim
    sequence, centres = [], []
    for group in sorted(groups):
        gsd = {0: 10, 1: 20, 2: 60, 3: 10}[group]
        size = new * gsd / (4 * 10)
        freq = 1.0 / 10000 ** (np.arange(pos_dim // 2) / (pos_dim / 2))
        patch_embed = np.concatenate([np.sin(size * freq), np.cos(size * freq)])
        freq_b = 1.0 / 10000 ** (np.arange(TINY.band_dim // 2) / (TINY.band_dim / 2))
        group_embed = np.concatenate([np.sin(group * freq_b), np.cos(group * freq_b)])
        extra = torch.tensor(np.concatenate([patch_embed, group_embed]), dtype=torch.float32)
        sequence.append(torch.stack(groups[group], -1).mean(-1) + extra)
        side = 2880 // gsd // new
        centres += [((r * new + new / 2) * gsd, (c * new + new / 2) * gsd) for r in range(side) for c in range(side)]
    largest = max(new * {0: 10, 1: 20, 2: 60, 3: 10}[g] for g in groups)
    points = torch.tensor(centres, dtype=torch.float64) / largest
    distance = torch.cdist(points, points).float()
    bias = torch.stack([-s * distance for s in alibi_slopes(TINY.heads)])[None]
    tokens = torch.cat(sequence, dim=1)
    for block in model.blocks:
        tokens = block(tokens, bias)
    return tokens


def test_s2_groups_stay_separate_in_the_channel_dimension(saved):
    model, runtime = saved
    embedder = get_embedder("thor", **runtime)
    loaded = embedder.model()
    name = "ind_patch_embed.patch_embed.S2:RE1.weight"
    assert torch.equal(loaded.state_dict()[name], model.state_dict()[name])
    assert embedder.dim == 3 * 48 and embedder.grid == (36, 36)
    chip = make_chip(S2, size=288)
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == (144, 36, 36)
    x = torch.from_numpy(embedder.model_input(chip).data[None])
    with torch.inference_mode():
        tokens = reference_tokens(loaded, x, S2)
    assert tokens.shape == (1, 36 * 36 + 18 * 18 + 6 * 6, 48)
    np.testing.assert_allclose(fmap.values[:48], tokens[0, :1296].T.reshape(48, 36, 36).numpy(), rtol=1e-4, atol=1e-5)
    group1 = tokens[0, 1296:1620].T.reshape(1, 48, 18, 18)
    np.testing.assert_allclose(fmap.values[48:96], F.interpolate(group1, (36, 36), mode="bilinear")[0].numpy(),
                               rtol=1e-4, atol=1e-5)
    group2 = tokens[0, 1620:].T.reshape(1, 48, 6, 6)
    np.testing.assert_allclose(fmap.values[96:], F.interpolate(group2, (36, 36), mode="bilinear")[0].numpy(),
                               rtol=1e-4, atol=1e-5)
    mean = get_embedder("thor", group_merge="mean", **runtime).embed([chip])[0]
    assert mean.values.shape == (48, 36, 36)
    np.testing.assert_allclose(mean.values, fmap.values.reshape(3, 48, 36, 36).mean(0), rtol=1e-4, atol=1e-5)


def test_alibi_slopes_follow_alibi():
    assert alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(12) == pytest.approx([*alibi_slopes(8), *(2 ** (-0.5 * k) for k in (1, 3, 5, 7))])
    assert alibi_slopes(3) == pytest.approx([2 ** -4, 2 ** -8, 2 ** -2])
    assert math.isclose(alibi_slopes(16)[0], 2 ** -0.5)


def test_normalisation_is_thors_clamped_standardisation(saved):
    _, runtime = saved
    embedder = get_embedder("thor", **runtime)
    chip = make_chip(S2, size=8, dn=2000.0)
    chip.data[S2.index("B11"), 0, 0] = 60000.0
    x = embedder.model_input(chip).data
    assert x[S2.index("B04"), 3, 3] == pytest.approx((0.2 - 0.213948) / 0.259180, rel=1e-5)
    assert x[S2.index("B11"), 0, 0] == 5.0  # (6 - 0.22155) / 0.171606 = 33.7, clamped at 5 sigma
    s1 = get_embedder("thor", modality="s1", **runtime)
    radar = make_chip(S1, size=8, dn=-15.0)
    assert s1.model_input(radar).data[0, 1, 1] == pytest.approx((-15 + 12.9850) / 5.0062, rel=1e-5)
    with pytest.raises(SpecError, match="use_float_linear"):
        s1.model_input(make_chip(S1, size=8, dn=0.05))  # linear power, not dB


def test_s1_is_one_group_and_band_subsets_drop_groups(saved):
    model, runtime = saved
    s1 = get_embedder("thor", modality="s1", **runtime)
    assert (s1.dim, s1.grid, s1.bands) == (48, (36, 36), ("VV", "VH"))
    assert s1.default_sensor().collection == "COPERNICUS/S1_GRD" and s1.default_sensor().use_float_linear is False
    radar = make_chip(S1, size=288, dn=None)
    radar.data[:] = -np.abs(radar.data) / 200.0  # dB
    fmap = s1.embed([radar])[0]
    x = torch.from_numpy(s1.model_input(radar).data[None])
    with torch.inference_mode():
        tokens = reference_tokens(s1.model(), x, S1)
    np.testing.assert_allclose(fmap.values, tokens[0].T.reshape(48, 36, 36).numpy(), rtol=1e-4, atol=1e-5)
    twenty = get_embedder("thor", bands=["B05", "B06", "B07", "B8A", "B11", "B12"], **runtime)
    assert twenty.dim == 48 and twenty.grid == (18, 18)
    assert twenty.embed([make_chip(S2, size=96)])[0].values.shape == (48, 18, 18)
    with pytest.raises(SpecError, match="^bands: applies to modality 's2' only"):
        get_embedder("thor", modality="s1", bands=["B02"])


def test_band_order_determinism_and_errors(saved):
    _, runtime = saved
    embedder = get_embedder("thor", **runtime)
    chip = make_chip(S2, size=96)
    base = embedder.embed([chip])[0].values
    np.testing.assert_array_equal(embedder.embed([chip])[0].values, base)
    order = list(range(12))[::-1]
    shuffled = make_chip([S2[i] for i in order], size=96)
    shuffled.data[:] = chip.data[order]
    np.testing.assert_allclose(embedder.embed([shuffled])[0].values, base, rtol=1e-4, atol=1e-5)
    changed = make_chip(S2, size=96)
    changed.data[S2.index("B11")] += 1500.0
    moved = embedder.embed([changed])[0].values
    assert not np.allclose(moved, base, atol=1e-4)
    with pytest.raises(SpecError, match=r"needs bands \['B01', 'B09'\]"):
        embedder.embed([make_chip(tuple(b for b in S2 if b not in ("B01", "B09")), size=64)])
    with pytest.raises(SpecError, match="group_merge"):
        get_embedder("thor", group_merge="max")
    with pytest.raises(SpecError, match="variant"):
        get_embedder("thor", variant="huge")


def test_variant_large_through_export_model_request(saved, tmp_path, monkeypatch):
    from rsembed_db import PointBuffer, TemporalSpec
    from rsembed_db.api import export_batch
    from rsembed_db.specs import ExportModelRequest, ExportTarget
    from tests.conftest import SCENE

    _, runtime = saved
    large = thor.Variant(32, 8, 1, 2, 8)
    monkeypatch.setitem(thor.VARIANTS, "large", large)
    save_published(tmp_path / "hf", "large", large)
    manifest = export_batch(
        spatials=[PointBuffer(12.60, 52.49, 200)], temporal=TemporalSpec.year(2017), imagery=SCENE,
        target=ExportTarget.combined(tmp_path / "run"),
        models=[ExportModelRequest.configure("thor", variant="large", **runtime),
                ExportModelRequest("thor", model_config={"variant": "large", "group_merge": "mean", **runtime})])
    assert manifest["status"] == "ok"
    assert [m["model_config"]["variant"] for m in manifest["models"]] == ["large", "large"]
    data = np.load(tmp_path / "run.npz")
    assert data["embedding__thor"].shape == (1, 3 * 32) and data["embedding__thor_2"].shape == (1, 32)


def test_describe_and_missing_weights(tmp_path, monkeypatch):
    d = describe_model("thor")
    assert (d.dim, d.image_size, d.patch_size, d.bands, d.modalities) == (2304, 288, 8, S2, ("s2", "s1"))
    assert d.normalisation["groups"] == {"group0": ["B02", "B03", "B04", "B08"],
                                         "group1": ["B05", "B06", "B07", "B8A", "B11", "B12"],
                                         "group2": ["B01", "B09"]}
    assert "arXiv:2601.16011" in d.citation and d.default_sensor["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert describe_model("thor", variant="large", group_merge="mean").dim == 1024
    assert describe_model("thor", variant="small", modality="s1").dim == 384
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("thor", variant="large", cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights) as err:
        embedder.embed([make_chip(S2, size=32)])
    assert "thor_v1_vit_large.pt" in str(err.value) and "huggingface.co/FM4CS/THOR-1.0-large" in str(err.value)


def test_s1_requests_of_a_default_producer_go_to_their_own_table(saved, tmp_path):
    """S1 has one group, so its width differs from S2's: ``modality="s1"`` must get a producer
    of its own (``for_request``) and write to ``thor_d48``, not into the S2 table."""
    import rasterio
    from affine import Affine

    from rsembed_db import PointBuffer, TemporalSpec
    from rsembed_db.api import get_embedding
    from rsembed_db.store import EmbeddingStore
    from tests.conftest import SCENE

    _, runtime = saved
    s1_file = tmp_path / "s1_db_20170301.tif"
    rng = np.random.default_rng(2)
    with rasterio.open(s1_file, "w", driver="GTiff", width=384, height=192, count=2, dtype="float32",
                       crs="EPSG:32633", transform=Affine(40.0, 0, 330000.0, 0, -40.0, 5822040.0)) as dst:
        dst.write(rng.uniform(-25, -5, (2, 192, 384)).astype(np.float32))
        dst.descriptions = ("VV", "VH")
    store = EmbeddingStore(tmp_path / "db")
    ask = {"spatial": PointBuffer(12.60, 52.49, 200), "temporal": TemporalSpec.year(2017), "store": store,
           "model_config": runtime}
    s1 = get_embedding("thor", modality="s1", imagery=str(s1_file), **ask)
    s2 = get_embedding("thor", imagery=SCENE, **ask)
    assert s1.data.shape == (48,) and s2.data.shape == (144,)
    assert s1.meta["sensor"]["collection"] == "COPERNICUS/S1_GRD"
    assert store.table("thor_d48").count_rows() == 1 and store.table("thor").count_rows() == 1
    again = get_embedding("thor", modality="s1", imagery=str(s1_file), **ask)
    assert again.meta["from_store"] is True
    np.testing.assert_array_equal(again.data, s1.data)
