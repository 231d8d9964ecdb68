"""AgriFM: a multi-source temporal foundation model for agriculture mapping, on fixed-length
Sentinel-2 time series.

Li W., Liang S., Chen K., Chen Y., Ma H., Xu J., Ma Y., Zhang Y., Guan S., Fang H., et al.
2026, "AgriFM: A multi-source temporal remote sensing foundation model for Agriculture
mapping", Remote Sensing of Environment 334:115234 (arXiv:2505.21357). The encoder
(``models.agrifm_encoder``, a Video Swin Transformer with synchronised spatio-temporal
down-sampling) is written here from the paper and the authors' reference
(github.com/flyakon/AgriFM, Apache-2.0); the weights are the published ``AgriFM.pth``
(GLASS website or OneDrive; not on Hugging Face: put it in ``weights_dir``).

Input, as the authors' fine-tuning config (``configs/cropland_mapping.py``): a stack of
``num_frames`` (default 32) Sentinel-2 frames of 10 bands, oldest first, each
standardised with the config's ``mean['S2']`` / ``std['S2']``, at ``image_size`` (256)
px. The model sees frame order only (no dates). Band order B02, B03, B04, B05, B06,
B07, B08, B8A, B11, B12 (the reference does not name its bands; this is rs-embed's
reading of its 10-band S2 input). Output: the final stage's LayerNorm-ed features with
frames folded into channels, (1024, image_size / 16, image_size / 16); with at most 32
frames the time axis ends at one frame, so D = 1024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.agrifm_encoder import AgriFMConfig, AgriFMEncoder
from rsembed_db.models.base import FeatureMap, InputPrep, ModelDescription
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, require_int
from rsembed_db.sources.base import Chip

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
# configs/cropland_mapping.py mean['S2'] / std['S2'] (the reference's MapNormalize).
S2_MEAN = (4179.192015478227, 4065.9106675194444, 3957.274910960156, 5207.452475253116, 4327.12234687,
           4873.16102239, 5049.1637925, 5111.07806856, 3056.86349163, 2490.9675032)
S2_STD = (4041.5212325268735, 3691.003119315892, 3629.331318356375, 2973.5178530908756, 3569.73343885,
          3085.9151435, 2937.56005119, 2806.04462314, 1808.30013156, 1694.20220774)
WEIGHTS = WeightSource("AgriFM.pth", "https://glass.hku.hk/casual/AgriFM/AgriFM.pth",
                       "Apache-2.0 (github.com/flyakon/AgriFM; the weights carry no separate licence)")
CITATION = ("Li W., Liang S., Chen K., Chen Y., Ma H., Xu J., Ma Y., Zhang Y., Guan S., Fang H., et al. (2026). "
            "AgriFM: A multi-source temporal remote sensing foundation model for Agriculture mapping. Remote "
            "Sensing of Environment 334, 115234; arXiv:2505.21357")
OTHER_SOURCES = ("HLSL30_patch_emd.", "Modis_patch_emd.")  # the checkpoint's Landsat / MODIS patch embeddings


@dataclass(frozen=True)
class Variant:
    dim: int
    patch_size: int  # pixels per output cell side (the encoder's spatial stride)
    arch: AgriFMConfig


VARIANTS: dict[str, Variant] = {"base": Variant(1024, 16, AgriFMConfig())}


def checkpoint_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a published checkpoint: ``module.`` stripped, the Sentinel-2
    patch embedding renamed to ``patch_emd`` (the reference's ``revise_keys``), other
    sources' embeddings and the recomputed relative-position indices dropped."""
    out = {}
    for key, tensor in state.items():
        key = key.removeprefix("module.").replace("S2_patch_emd.", "patch_emd.")
        if key.startswith(("patch_emd.", "backbone.")) and not key.endswith("relative_position_index"):
            out[key] = tensor
    return out


class AgriFMEmbedder(ZooEmbedder):
    """AgriFM on fixed-length Sentinel-2 time series.

    Config: ``num_frames`` (32; 1-32), ``image_size`` (256 px; a multiple of 32), zoo options.
    """

    name = "agrifm"
    options = ("variant", "num_frames", "image_size")
    variants = VARIANTS
    default_variant = "base"
    input_bands = S2_BANDS
    weights_source = WEIGHTS
    token_semantics = "final-stage features after the last LayerNorm, frames folded into channels (cat fusion)"

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        size = require_int("image_size", config.get("image_size", 256), 32)
        if size % 32:
            raise SpecError("image_size", f"must be a multiple of 32 (the encoder halves space four times from "
                            f"2 px patches), got {size}")
        return {"num_frames": require_int("num_frames", config.get("num_frames", 32), 1, 32), "image_size": size}

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.config["image_size"]

    def describe(self) -> ModelDescription:
        cfg, arch = self.config, self.variant.arch
        return self.description(
            {"mean": list(S2_MEAN), "std": list(S2_STD), "formula": "(DN - mean) / std",
             "units": "Sentinel-2 L2A reflectance x 10000", "invalid_pixels": "0 after normalisation",
             "source": "AgriFM configs/cropland_mapping.py mean['S2'] / std['S2'] (MapNormalize)",
             "side_inputs": None, "patch_size_thw": list(arch.patch_size), "window_size_thw": list(arch.window_size),
             "depths": list(arch.depths), "num_heads": list(arch.num_heads)},
            f"AgriFM (Li et al. 2026), Video Swin on {cfg['num_frames']} Sentinel-2 frames at {cfg['image_size']} px; "
            f"{self.token_semantics}; grid {cfg['image_size'] // 16} x {cfg['image_size'] // 16}",
            frames=cfg["num_frames"], citation=CITATION)

    def build(self) -> torch.nn.Module:
        return AgriFMEncoder(self.variant.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, checkpoint_tensors(state), path)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        frames = self.config["num_frames"]
        data = data[None] if data.ndim == 3 else data
        if data.shape[0] != frames:
            raise SpecError("num_frames", f"agrifm is configured for {frames} frame(s); the chip has "
                            f"{data.shape[0]} (multi-frame chips are (T, C, H, W))")
        mean, std = np.asarray(S2_MEAN, np.float32), np.asarray(S2_STD, np.float32)
        x = np.where(valid, (data - mean[:, None, None]) / std[:, None, None], 0.0).astype(np.float32)
        return ModelInput(x.reshape(-1, *x.shape[-2:]), valid)

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        features = model(x.reshape(len(x), self.config["num_frames"], len(S2_BANDS), *x.shape[-2:]))
        if features.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} channels, got {features.shape[1]}")
        return features

    def embed_prepared(self, chips: list[Chip], preps: list[InputPrep]) -> list[FeatureMap]:
        maps = super().embed_prepared(chips, preps)
        for fmap in maps:
            fmap.meta.update(frames=self.config["num_frames"], normalisation="agrifm_stats")
        return maps
