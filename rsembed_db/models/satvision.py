"""SatVision-TOA: a SwinV2 of 2.6 billion parameters (SimMIM) for 14-band MODIS top-of-atmosphere data.

Spradlin C.S., Caraballo-Vega J.A., Li J., Carroll M.L., Gong J., Montesano P.M.,
"SatVision-TOA: A Geospatial Foundation Model for Coarse-Resolution All-Sky Remote Sensing
Imagery", arXiv:2411.17000 (2024); code github.com/nasa-nccs-hpda/pytorch-caney
(Apache-2.0). Architecture: ``satvision_swin.SwinV2Encoder`` with the giant configuration
(image 128, patch 4, D 512 -> 4096, depths 2/2/42/2, heads 16/32/64/128, window 8, an extra
LayerNorm every 6th block). Weights: the DeepSpeed model-states file
``mp_rank_00_model_states.pt`` of the Hugging Face repository
``nasa-cisto-data-science-group/satvision-toa-giant-patch8-window8-128``; its ``module``
holds the SimMIM wrapper (``encoder.*`` loaded, ``decoder.*`` and ``mask_token`` dropped).

Input: 14 MODIS L1B channels at 1 km in the authors' order (their Table 1 and ``idx_to_band``):
bands 1, 2, 3, 6, 7, 21, 26, 27, 28, 29, 30, 31, 32, 33. Reflective channels (bands 1, 2,
3, 6, 7, 26) are TOA reflectance in percent, scaled by 0.01; emissive channels (21, 27-33)
are brightness temperatures in kelvin, min-max scaled per channel with the pre-training
constants (``MinMaxEmissiveScaleReflectance``); no clipping. The rs-embed reference
library uses another order (1, 2, 3, 26, 6, 20, 7, 27, 28, 29, 31, 32, 33, 34) that
contradicts the authors' table; this follows the authors (docs/models/satvision.md).
Output: last-stage tokens after the final norm, (4096, 4, 4) for 128 px; their mean is the
authors' pooled ``forward_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.weights import ResolvedWeights, WeightSource, load_state_dict, load_weights, resolve_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec

REPO = "nasa-cisto-data-science-group/satvision-toa-giant-patch8-window8-128"
FILE = "mp_rank_00_model_states.pt"
MODIS_BANDS = ("MODIS_01", "MODIS_02", "MODIS_03", "MODIS_06", "MODIS_07", "MODIS_21", "MODIS_26", "MODIS_27",
               "MODIS_28", "MODIS_29", "MODIS_30", "MODIS_31", "MODIS_32", "MODIS_33")
REFLECTIVE = (0, 1, 2, 3, 4, 6)  # TOA reflectance in percent
EMISSIVE = (5, 7, 8, 9, 10, 11, 12, 13)  # brightness temperature in kelvin
EMISSIVE_MIN = (223.1222, 178.9174, 204.3739, 204.7677, 194.8686, 202.1759, 201.3823, 203.3537)
EMISSIVE_MAX = (352.7182, 261.2920, 282.5529, 319.0373, 295.0209, 324.0677, 321.5254, 285.9848)
REFLECTANCE_SCALE = 0.01  # percent -> reflectance
COLLECTION = "MODIS/061/MOD021KM"  # MODIS Terra L1B calibrated radiances, 1 km
CITATION = ("Spradlin C.S., Caraballo-Vega J.A., Li J., Carroll M.L., Gong J., Montesano P.M., \"SatVision-TOA: "
            "A Geospatial Foundation Model for Coarse-Resolution All-Sky Remote Sensing Imagery\", "
            "arXiv:2411.17000 (2024)")


@dataclass(frozen=True)
class Variant:
    dim: int  # channels of the last stage (8 x embed_dim)
    patch_size: int
    arch: dict[str, Any]  # SwinV2Encoder embed_dim, depths, num_heads, window_size, extra_norm_period


VARIANTS: dict[str, Variant] = {
    "giant": Variant(4096, 4, {"embed_dim": 512, "depths": (2, 2, 42, 2), "num_heads": (16, 32, 64, 128),
                               "window_size": 8, "extra_norm_period": 6}),
}


class SatVisionEmbedder(ZooEmbedder):
    """SatVision-TOA giant on 14 MODIS TOA channels at 1 km (zoo options only)."""

    name = "satvision"
    options = ("variant",)
    variants = VARIANTS
    default_variant = "giant"
    image_size = 128
    input_bands = MODIS_BANDS
    scale_m = 1000.0
    weights_source = WeightSource.hub(REPO, FILE, "Apache-2.0 (model card; pytorch-caney code Apache-2.0)")
    token_semantics = "last-stage tokens after the final norm (32 px cells at 128 px)"

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {}

    def default_sensor(self) -> SensorSpec:
        return SensorSpec(collection=COLLECTION, bands=self.bands, scale_m=self.scale_m, cloudy_pct=100.0,
                          composite="mosaic")

    def describe(self) -> ModelDescription:
        normalisation = {
            "reflective_bands": [MODIS_BANDS[i] for i in REFLECTIVE], "reflective_formula": "percent * 0.01",
            "emissive_bands": [MODIS_BANDS[i] for i in EMISSIVE], "emissive_min_K": list(EMISSIVE_MIN),
            "emissive_max_K": list(EMISSIVE_MAX), "emissive_formula": "(BT - min) / (max - min), no clipping",
            "units": "MODIS L1B TOA reflectance in percent (reflective), brightness temperature in K (emissive)",
            "band_order": "authors' Table 1 (pytorch-caney idx_to_band), not rs-embed's",
            "source": "pytorch-caney transforms/modis_toa_scale.py MinMaxEmissiveScaleReflectance"}
        return self.description(normalisation, f"SatVision-TOA giant (Spradlin et al. 2024), SwinV2 SimMIM, "
                                f"2.6B parameters; {self.token_semantics}", citation=CITATION)

    def checkpoint(self) -> tuple[ResolvedWeights, dict[str, torch.Tensor]]:
        resolved = resolve_weights(self.name, self.weights, self.runtime.weights_dir, self.runtime.cache_dir)
        state = load_state_dict(resolved.path, allow_pickle=resolved.origin == "huggingface", nested=("module",))
        if not any(k.startswith("encoder.") for k in state):
            raise SpecError("weights", f"{resolved.path} holds no 'encoder.*' tensors under 'module' (expected the "
                            "SatVision-TOA SimMIM DeepSpeed model states)")
        return resolved, {k.removeprefix("encoder."): t for k, t in state.items() if k.startswith("encoder.")}

    def build(self) -> torch.nn.Module:
        from rsembed_db.models.satvision_swin import SwinV2Encoder

        v = self.variant
        return SwinV2Encoder(self.image_size, v.patch_size, len(MODIS_BANDS), **v.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, state, path, drop=("mask_token",))

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // (self.patch_size * 2 ** (len(self.variant.arch["depths"]) - 1))
        return side, side

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        if data.ndim != 3:
            raise SpecError("frames", f"satvision takes one frame; the chip has {data.shape[0]}")
        x = data.copy()
        x[list(REFLECTIVE)] *= np.float32(REFLECTANCE_SCALE)
        low = np.asarray(EMISSIVE_MIN, np.float32)[:, None, None]
        high = np.asarray(EMISSIVE_MAX, np.float32)[:, None, None]
        x[list(EMISSIVE)] = (x[list(EMISSIVE)] - low) / (high - low)
        x[:, ~valid] = 0.0
        return ModelInput(x.astype(np.float32), valid)

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        return model(x)
