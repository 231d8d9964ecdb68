"""Model zoo behaviour that needs neither the ``zoo`` extra nor weights."""

from __future__ import annotations

import importlib.util

import pytest

from rsembed_db.errors import MissingWeights
from rsembed_db.models.weights import WeightSource, resolve_weights
from rsembed_db.producers.catalog import describe_model, get_embedder, list_models
from rsembed_db.specs import SpecError

ZOO = ("remoteclip", "prithvi", "satmae", "scalemae", "dofa", "clay")


def test_zoo_models_are_listed_and_described_without_the_extra():
    assert set(ZOO) <= set(list_models())
    dims = {name: describe_model(name).dim for name in ZOO}
    assert dims == {"remoteclip": 512, "prithvi": 1024, "satmae": 1024, "scalemae": 1024, "dofa": 768,
                    "clay": 1024}
    prithvi = describe_model("prithvi", variant="600m_tl", num_frames=4)
    assert (prithvi.dim, prithvi.patch_size, prithvi.frames, prithvi.scale_m) == (1280, 14, 4, 30.0)
    assert prithvi.bands == ("B02", "B03", "B04", "B8A", "B11", "B12")
    clay = describe_model("clay")
    assert (clay.image_size, clay.patch_size) == (256, 8)
    assert describe_model("remoteclip").normalisation["mean"] == [0.48145466, 0.4578275, 0.40821073]


def test_running_without_the_extra_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "open_clip" else real(name, *a))
    with pytest.raises(SpecError, match=r"rsembed-db\[zoo\]"):
        get_embedder("remoteclip").model()


def test_config_is_validated_and_runtime_options_stay_out_of_the_key():
    with pytest.raises(SpecError, match="model_config"):
        get_embedder("dofa", colour="red")
    with pytest.raises(SpecError, match="variant"):
        get_embedder("prithvi", variant="100m")
    with pytest.raises(SpecError, match="num_frames"):
        get_embedder("prithvi", num_frames=5)
    with pytest.raises(SpecError, match="band_stats"):
        get_embedder("dofa", bands=["B02", "B8A"])
    with pytest.raises(SpecError, match="precision"):
        get_embedder("clay", precision="int8")
    embedder = get_embedder("scalemae", device="cpu", batch_size=4, weights_dir="/nowhere", precision="bf16")
    assert embedder.config == {"variant": "vit_large_patch16", "rgb_max": 10000.0, "precision": "bf16",
                               "revision": "9dc7f569424baeb780698352cf6e87638c882123"}
    assert embedder.runtime.batch_size == 4


def test_missing_weights_offline_say_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RSEMBED_WEIGHTS_DIR", raising=False)
    source = WeightSource("v1/model.ckpt", "https://example.org/model.ckpt", "MIT", "org/repo", "main")
    with pytest.raises(MissingWeights) as err:
        resolve_weights("demo", source, str(tmp_path / "weights"), str(tmp_path / "hf"))
    message = str(err.value)
    assert message.startswith("weights:")
    assert "https://example.org/model.ckpt" in message and "model.ckpt" in message
    assert str(tmp_path / "weights") in message
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.ckpt").write_bytes(b"x")
    monkeypatch.setenv("RSEMBED_WEIGHTS_DIR", str(tmp_path / "weights"))
    found = resolve_weights("demo", source)
    assert (found.path, found.origin) == (tmp_path / "weights" / "model.ckpt", "weights_dir")


def test_checkpoints_load_raw_nested_or_beside_pickled_hyper_parameters(tmp_path):
    import datetime as dt

    import torch

    from rsembed_db.models.weights import load_state_dict

    tensors = {"w": torch.arange(3.0)}
    wrapped = [tensors, {"model": tensors, "epoch": 199},
               {"state_dict": tensors, "hyper_parameters": {"started": dt.datetime(2024, 1, 1)}}]
    for index, payload in enumerate(wrapped):
        torch.save(payload, tmp_path / f"{index}.ckpt")
        # As for a published download; the first two need no unpickling at all.
        assert torch.equal(load_state_dict(tmp_path / f"{index}.ckpt", allow_pickle=True)["w"], tensors["w"])
        if index < 2:
            assert torch.equal(load_state_dict(tmp_path / f"{index}.ckpt")["w"], tensors["w"])
    torch.save({"w": "not a tensor"}, tmp_path / "bad.ckpt")
    with pytest.raises(SpecError, match="state dict"):
        load_state_dict(tmp_path / "bad.ckpt")


def test_pickled_extras_load_only_from_published_downloads(tmp_path):
    """A checkpoint with pickled objects besides tensors (Lightning style) is unpickled
    only for files from the published repository, never from a local folder."""
    import argparse

    import torch

    from rsembed_db.models.weights import load_state_dict

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(SpecError, match="pickled objects"):
        load_state_dict(path)
    assert torch.equal(load_state_dict(path, allow_pickle=True)["w"], torch.ones(2))
