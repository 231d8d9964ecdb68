"""The batch-B zoo models (satvision, fomo, wildsat, olmoearth, SatMAE's multi-spectral and
temporal variants) are listed, described and validated without the ``zoo`` extra or weights."""

from __future__ import annotations

import pytest

from rsembed_db.producers.catalog import describe_model, get_embedder, list_models
from rsembed_db.specs import SpecError

EXPECTED = {  # name, config -> (dim, image, patch, frames, scale_m)
    ("satvision", ()): (4096, 128, 4, 1, 1000.0),
    ("fomo", ()): (768, 64, 16, 1, 10.0),
    ("wildsat", ()): (256, 224, 16, 1, 10.0),
    ("wildsat", (("variant", "resnet50"),)): (256, 512, 32, 1, 10.0),
    ("olmoearth", ()): (768, 256, 4, 1, 10.0),
    ("olmoearth", (("variant", "tiny_v1_1"), ("num_frames", 12), ("patch_size", 8))): (192, 256, 8, 12, 10.0),
    ("satmae", (("variant", "multispectral_vit_base"),)): (768, 96, 8, 1, 10.0),
    ("satmae", (("variant", "temporal_vit_large"),)): (1024, 224, 16, 3, 10.0),
}


@pytest.mark.parametrize(("name", "config"), list(EXPECTED))
def test_described_with_dim_licence_and_citation(name, config):
    assert name in list_models("on_the_fly")
    d = describe_model(name, **dict(config))
    assert (d.dim, d.image_size, d.patch_size, d.frames, d.scale_m) == EXPECTED[(name, config)]
    assert d.licence and d.citation and d.weights and d.normalisation and d.bands
    assert "Grid " in d.summary and "default sensor" in d.summary  # grid layout and where the input comes from


def test_default_satmae_is_unchanged():
    assert get_embedder("satmae").config == {"variant": "vit_large_patch16", "rgb_max": 10000.0, "precision": "fp32",
                                             "revision": "zenodo-7369797"}


@pytest.mark.parametrize(("name", "config", "field"), [
    ("satmae", {"variant": "multispectral_vit_large", "rgb_max": 3000}, "rgb_max"),
    ("fomo", {"bands": ["B09", "B02"]}, "bands"),
    ("fomo", {"normalisation": "percentile"}, "normalisation"),
    ("wildsat", {"variant": "vitl16"}, "variant"),
    ("wildsat", {"features": "patch"}, "features"),
    ("olmoearth", {"patch_size": 9}, "patch_size"),
    ("olmoearth", {"image_size": 100, "patch_size": 8}, "image_size"),
    ("satvision", {"image_size": 256}, "model_config"),
])
def test_bad_config_names_the_field(name, config, field):
    with pytest.raises(SpecError, match=field):
        get_embedder(name, **config)


def test_checkpoints_nested_under_other_keys_and_with_allow_listed_classes(tmp_path):
    """DeepSpeed model states nest tensors under ``module``; WildSAT's checkpoint pickles an
    ``argparse.Namespace`` beside them, read without full unpickling once allow-listed."""
    import argparse

    import torch

    from rsembed_db.models.weights import load_state_dict

    tensors = {"encoder.w": torch.arange(3.0)}
    torch.save({"module": tensors, "ds_version": "0.14.4", "global_steps": 5}, tmp_path / "ds.pt")
    assert torch.equal(load_state_dict(tmp_path / "ds.pt", nested=("module",))["encoder.w"], tensors["encoder.w"])
    torch.save({"opt": argparse.Namespace(lr=1.0), "satellite_state_dict": tensors}, tmp_path / "wildsat.pth")
    with pytest.raises(SpecError, match="pickled objects"):
        load_state_dict(tmp_path / "wildsat.pth", nested=("satellite_state_dict",))
    loaded = load_state_dict(tmp_path / "wildsat.pth", nested=("satellite_state_dict",), safe_types=(argparse.Namespace,))
    assert list(loaded) == ["encoder.w"]
