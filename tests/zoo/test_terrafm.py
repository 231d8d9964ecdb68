"""TerraFM offline: a tiny random TerraFM (the real architecture, shrunk) saved as the
published bare state dict in a fake Hugging Face cache, loaded through the real loader;
both modalities, the request-level ``modality=`` argument and the export example of the
spec, over local GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine

from rsembed_db.errors import MissingWeights
from rsembed_db.models import terrafm
from rsembed_db.models.terrafm_net import TerraFM
from rsembed_db.producers.catalog import describe_model, get_embedder
from rsembed_db.specs import SpecError
from tests.helpers.zoo import hf_file, make_chip

S2, S1 = terrafm.S2_BANDS, terrafm.S1_BANDS
TINY = terrafm.Variant("TerraFM-B.pth", 32, 16, 2, 2)


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """(the saved tiny model, runtime config pointing at its fake HF cache)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(terrafm.VARIANTS, "base", TINY)
    torch.manual_seed(0)
    model = TerraFM(224, 16, 32, 2, 2)
    with torch.no_grad():  # the source embeddings start at zero: make each branch distinct
        for source in ("s1", "s2_l1c", "s2_l2a"):
            getattr(model.patch_embed, f"{source}_embed").normal_()
    cache = tmp_path / "hf"
    # Bare state dict, as the authors' README loads it; downstream loaders drop a
    # pre-training (DINO) head from it, so one is included to check it is ignored.
    state = {**model.state_dict(), "head.last_layer.weight": torch.ones(8, 32)}
    torch.save(state, hf_file(cache, terrafm.REPO, "TerraFM-B.pth", "main"))
    return model.eval(), {"cache_dir": str(cache), "device": "cpu"}


def reference_tokens(model: TerraFM, x: torch.Tensor, source: str) -> torch.Tensor:
    """TerraFM's forward written out from the published description, with the model's tensors."""
    pe = model.patch_embed
    conv = getattr(pe, f"conv2d_{source}")
    t = F.conv2d(x, conv.weight, conv.bias, stride=16).flatten(2).transpose(1, 2) + getattr(pe, f"{source}_embed")
    p = pe.projection
    t = F.linear(t, p.proj1.weight)
    t = F.layer_norm(t, t.shape[-1:], p.norm_input.weight, p.norm_input.bias, eps=1e-5)
    t = F.linear(F.linear(t, p.proj2.weight, p.proj2.bias), p.proj3.weight, p.proj3.bias)
    t = torch.cat((model.cls_token.expand(len(x), -1, -1), t), 1) + model.pos_embed
    for block in model.blocks:
        t = block(t)
    return F.layer_norm(t, t.shape[-1:], model.norm.weight, model.norm.bias, eps=1e-6)


def test_s2_grid_is_the_normed_patch_tokens_of_the_l1c_branch(saved):
    model, runtime = saved
    embedder = get_embedder("terrafm", **runtime)
    loaded = embedder.model()
    assert torch.equal(loaded.state_dict()["patch_embed.conv2d_s2_l1c.weight"],
                       model.state_dict()["patch_embed.conv2d_s2_l1c.weight"])
    chip = make_chip(S2, size=224, dn=None)
    chip.data[0, :5] = 20000.0  # above 10000: clipped to 1
    fmap = embedder.embed([chip])[0]
    assert fmap.values.shape == (32, 14, 14) and embedder.grid == (14, 14)
    x = torch.from_numpy(np.clip(chip.data / 10000.0, 0, 1)[None])
    with torch.inference_mode():
        tokens = reference_tokens(model, x, "s2_l1c")
    np.testing.assert_allclose(fmap.values, tokens[0, 1:].T.reshape(32, 14, 14).numpy(), rtol=1e-4, atol=1e-5)
    assert fmap.meta["weights_origin"] == "huggingface"

    cls = get_embedder("terrafm", tokens="cls", **runtime).embed([chip])[0]
    assert cls.values.shape == (32, 1, 1)
    np.testing.assert_allclose(cls.values[:, 0, 0], tokens[0, 0].numpy(), rtol=1e-4, atol=1e-5)
    l2a = get_embedder("terrafm", s2_branch="l2a", **runtime).embed([chip])[0]
    assert not np.allclose(l2a.values, fmap.values)


def test_s1_modality_runs_the_s1_branch_on_log_scaled_linear_backscatter(saved):
    model, runtime = saved
    embedder = get_embedder("terrafm", modality="s1", **runtime)
    assert embedder.bands == ("VV", "VH") and embedder.describe().bands == ("VV", "VH")
    chip = make_chip(S1, size=224)
    rng = np.random.default_rng(3)
    chip.data[:] = rng.lognormal(-3.0, 1.0, chip.data.shape).astype(np.float32)
    chip.valid[:10] = False  # not counted in the percentile, zero in the input
    prepared = embedder.model_input(chip).data
    logs = np.log1p(chip.data)
    p99 = np.percentile(logs[:, chip.valid], 99)
    expected = np.clip(logs / p99, 0, 1)
    expected[:, ~chip.valid] = 0
    np.testing.assert_allclose(prepared, expected, rtol=1e-5, atol=1e-6)
    fmap = embedder.embed([chip])[0]
    with torch.inference_mode():
        tokens = reference_tokens(model, torch.from_numpy(prepared[None]), "s1")
    np.testing.assert_allclose(fmap.values, tokens[0, 1:].T.reshape(32, 14, 14).numpy(), rtol=1e-4, atol=1e-5)
    decibels = make_chip(S1, size=32, dn=-15.0)
    with pytest.raises(SpecError, match="use_float_linear"):
        embedder.model_input(decibels)


def test_modality_and_band_errors_name_what_to_change(saved):
    _, runtime = saved
    s2, s1 = get_embedder("terrafm", **runtime), get_embedder("terrafm", modality="s1", **runtime)
    with pytest.raises(SpecError, match=r"^modality: terrafm modality 's2' takes 12 bands.*modality='s1'"):
        s2.embed([make_chip(S1, size=32)])
    with pytest.raises(SpecError, match=r"^modality: terrafm modality 's1' takes 2 bands.*modality='s2'"):
        s1.embed([make_chip(S2, size=32)])
    with pytest.raises(SpecError, match="B09"):  # one band short: 11 channels
        s2.embed([make_chip(tuple(b for b in S2 if b != "B09"), size=32)])
    with pytest.raises(SpecError, match="modality"):
        get_embedder("terrafm", modality="s3")
    with pytest.raises(SpecError, match="s2_branch"):
        get_embedder("terrafm", s2_branch="toa")


def test_band_order_is_by_name_and_outputs_are_deterministic(saved):
    _, runtime = saved
    embedder = get_embedder("terrafm", **runtime)
    chip = make_chip(S2, size=96)
    base = embedder.embed([chip])[0].values
    np.testing.assert_array_equal(embedder.embed([chip])[0].values, base)
    order = [11, 3, 0, 7, 1, 2, 4, 5, 6, 8, 9, 10]
    shuffled = make_chip([S2[i] for i in order], size=96)
    shuffled.data[:] = chip.data[order]
    np.testing.assert_allclose(embedder.embed([shuffled])[0].values, base, rtol=1e-5, atol=1e-6)
    changed = make_chip(S2, size=96)
    changed.data[4] += 1500.0  # B05 brighter
    assert not np.allclose(embedder.embed([changed])[0].values, base, atol=1e-4)


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    embedder = get_embedder("terrafm", cache_dir=str(tmp_path / "hf"), weights_dir=str(tmp_path / "w"))
    with pytest.raises(MissingWeights) as err:
        embedder.embed([make_chip(S2, size=32)])
    message = str(err.value)
    assert "TerraFM-B.pth" in message and "https://huggingface.co/MBZUAI/TerraFM/resolve/main/TerraFM-B.pth" in message
    assert str(tmp_path / "w") in message


def test_describe_shows_both_modalities_the_sensor_and_the_citation():
    s2, s1 = describe_model("terrafm"), describe_model("terrafm", modality="s1")
    assert s2.modalities == s1.modalities == ("s2", "s1")
    assert (s2.dim, s2.image_size, s2.patch_size, len(s2.bands)) == (768, 224, 16, 12)
    assert s2.default_sensor["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert s1.default_sensor["collection"] == "COPERNICUS/S1_GRD_FLOAT" and s1.default_sensor["bands"] == ["VV", "VH"]
    assert s1.default_sensor["use_float_linear"] is True
    assert "arXiv:2506.06281" in s2.citation and "Apache-2.0" in s2.licence
    assert s2.normalisation["formula"] == "clip(DN / 10000, 0, 1)" and "log1p" in s1.normalisation["formula"]


def write_s1(path, bounds=(330000.0, 5814360.0, 345360.0, 5822040.0), res=40.0, seed=5):
    """A Sentinel-1 VV/VH GeoTIFF (linear backscatter) over the bundled S2 scene."""
    left, bottom, right, top = bounds
    width, height = int((right - left) / res), int((top - bottom) / res)
    data = np.random.default_rng(seed).lognormal(-3.0, 0.8, (2, height, width)).astype(np.float32)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 2, "dtype": "float32",
               "crs": "EPSG:32633", "transform": Affine(res, 0, left, 0, -res, top)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("VV", "VH")
    return path


def test_spec_export_example_with_an_s1_sensor_and_the_request_modality(saved, tmp_path):
    from rsembed_db import PointBuffer, TemporalSpec
    from rsembed_db.api import export_batch, get_embedding
    from rsembed_db.specs import ExportModelRequest, ExportTarget, SensorSpec
    from tests.conftest import SCENE

    _, runtime = saved
    s1_file = str(write_s1(tmp_path / "s1_20170301.tif"))
    points = [PointBuffer(12.55, 52.48, 300), PointBuffer(12.60, 52.49, 300)]
    year = TemporalSpec.year(2017)
    my_s1_sensor = SensorSpec(collection="COPERNICUS/S1_GRD_FLOAT", bands=("VV", "VH"), scale_m=10.0)
    manifest = export_batch(
        spatials=points, temporal=year, imagery=s1_file, target=ExportTarget.combined(tmp_path / "run"),
        models=[ExportModelRequest("terrafm", modality="s1", sensor=my_s1_sensor, model_config=runtime),
                ExportModelRequest.configure("terrafm", modality="s1", **runtime)])
    assert manifest["status"] == "ok"
    assert [m["model_config"]["modality"] for m in manifest["models"]] == ["s1", "s1"]
    assert manifest["models"][1]["sensor"]["collection"] == "COPERNICUS/S1_GRD_FLOAT"  # the default S1 sensor
    data = np.load(tmp_path / "run.npz")
    assert data["embedding__terrafm"].shape == data["embedding__terrafm_2"].shape == (2, 32)
    np.testing.assert_allclose(data["embedding__terrafm"], data["embedding__terrafm_2"], rtol=1e-5)
    one = get_embedding("terrafm", spatial=points[1], temporal=year, imagery=s1_file, modality="s1",
                        sensor=my_s1_sensor, model_config=runtime)
    assert one.meta["key"] == data["key__terrafm"][1]
    np.testing.assert_allclose(one.data, data["embedding__terrafm"][1], rtol=1e-5)
    tagged = SensorSpec(collection="COPERNICUS/S1_GRD_FLOAT", bands=("VV", "VH"), modality="s1")
    by_sensor = get_embedding("terrafm", spatial=points[1], temporal=year, imagery=s1_file, sensor=tagged,
                              model_config=runtime)  # the sensor's own modality selects the branch
    np.testing.assert_allclose(by_sensor.data, one.data, rtol=1e-5)
    s2 = get_embedding("terrafm", spatial=points[1], temporal=year, imagery=SCENE, model_config=runtime)
    assert s2.data.shape == (32,) and s2.meta["sensor"]["bands"] == list(S2)
    assert not np.allclose(s2.data, one.data)

    ask = {"spatial": points[0], "temporal": year, "imagery": s1_file}
    with pytest.raises(SpecError, match=r"^sensor\.bands: model 'terrafm' \(modality 's1'\) takes 2 bands"):
        get_embedding("terrafm", modality="s1", sensor=SensorSpec("COPERNICUS/S2_SR_HARMONIZED", S2),
                      model_config=runtime, **ask)
    with pytest.raises(SpecError, match="^modality: 's1' conflicts with model_config modality 's2'"):
        get_embedding("terrafm", modality="s1", model_config={**runtime, "modality": "s2"}, **ask)
    with pytest.raises(SpecError, match="^modality: 's2' conflicts with sensor.modality 's1'"):
        get_embedding("terrafm", modality="s2", sensor=tagged, model_config=runtime, **ask)
    with pytest.raises(SpecError, match="^modality: model 'terrafm' does not support 'optical'"):
        get_embedding("terrafm", modality="optical", model_config=runtime, **ask)
