"""Clay v1.5: a sensor-agnostic ViT-L/8 conditioned on wavelengths, GSD, time and place.

Clay Foundation Model v1.5 (github.com/Clay-foundation/model; weights
``v1.5/clay-v1.5.ckpt`` in the Hugging Face repository ``made-with-clay/Clay``, the
``clay_mae_large`` architecture). The encoder is terratorch's port of the Clay v1.5
``Encoder`` (``terratorch.models.backbones.clay_v15``), run without masking; the
checkpoint is Clay's Lightning checkpoint, of which the ``model.encoder.*`` tensors are
loaded.

Inputs, as Clay's datamodule and embedding notebook prepare them:
- pixels: Sentinel-2 L2A bands (any subset of Clay's ten: B02 B03 B04 B05 B06 B07 B08
  B8A B11 B12) standardised with the ``sentinel-2-l2a`` mean/std of Clay's
  ``configs/metadata.yaml``; image 256 x 256, patch 8 -> (D, 32, 32), D = 1024;
- waves: each band's wavelength (µm) from the same file;
- gsd: metres per model-input pixel (``chip_context.model_gsd``);
- time: (sin, cos) of the ISO week x 2 pi / 52 and of the hour x 2 pi / 24 (dates have no
  hour: 0 is used); zeros when the date is unknown or ``time`` is False;
- latlon: (sin, cos) of latitude and of longitude (radians) of the chip centre; zeros
  when ``location`` is False (pre-training zeroed time and place for 20% of chips).
Output: last-layer patch tokens (after the final norm), CLS dropped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsembed_db.models.base import ModelDescription
from rsembed_db.models.chip_context import centre_lonlat, frame_dates, model_gsd
from rsembed_db.models.vit_tokens import patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, require_bands, require_flag, standardised
from rsembed_db.sources.base import Chip

REPO = "made-with-clay/Clay"
FILE = "v1.5/clay-v1.5.ckpt"
ENCODER_PREFIX = "model.encoder."
CUDNN_ENV = "TORCH_CUDNN_V8_API_DISABLED"
# Clay configs/metadata.yaml, sentinel-2-l2a: band -> (mean, std, wavelength µm).
S2_L2A = {"B02": (1105.0, 1809.0, 0.493), "B03": (1355.0, 1757.0, 0.56), "B04": (1552.0, 1888.0, 0.665),
          "B05": (1887.0, 1870.0, 0.704), "B06": (2422.0, 1732.0, 0.74), "B07": (2630.0, 1697.0, 0.783),
          "B08": (2743.0, 1742.0, 0.842), "B8A": (2785.0, 1648.0, 0.865), "B11": (2388.0, 1470.0, 1.61),
          "B12": (1835.0, 1379.0, 2.19)}


@dataclass(frozen=True)
class Variant:
    dim: int
    patch_size: int
    arch: dict[str, Any]  # Clay Encoder dim, depth, heads, dim_head, mlp_ratio


VARIANTS: dict[str, Variant] = {
    "v1.5": Variant(1024, 8, {"dim": 1024, "depth": 24, "heads": 16, "dim_head": 64, "mlp_ratio": 4.0}),
}


class ClayEmbedder(ZooEmbedder):
    """Clay v1.5 on Sentinel-2 L2A bands with wavelength, GSD, time and location inputs.

    Config: ``bands`` (Clay's ten), ``time`` and ``location`` (True), zoo options.
    """

    name = "clay"
    requires = ("terratorch", "huggingface_hub")
    options = ("variant", "bands", "time", "location")
    variants = VARIANTS
    default_variant = "v1.5"
    image_size = 256
    weights_source = WeightSource.hub(REPO, FILE, "Apache-2.0 (Clay model repository)")

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"bands": require_bands(config.get("bands", tuple(S2_L2A)), tuple(S2_L2A)),
                "time": require_flag("time", config.get("time", True)),
                "location": require_flag("location", config.get("location", True))}

    def describe(self) -> ModelDescription:
        cfg = self.config
        return self.description(
            {"mean": [S2_L2A[b][0] for b in self.bands], "std": [S2_L2A[b][1] for b in self.bands],
             "wavelengths_um": [S2_L2A[b][2] for b in self.bands], "formula": "(DN - mean) / std",
             "units": "Sentinel-2 L2A reflectance x 10000", "source": "Clay configs/metadata.yaml (sentinel-2-l2a)",
             "side_inputs": {"gsd": "metres per model pixel",
                             "time": "week/hour sin-cos" if cfg["time"] else "zeros",
                             "latlon": "lat/lon sin-cos" if cfg["location"] else "zeros"}},
            f"Clay {cfg['variant']} (ViT-L/8) with wavelength, GSD, time and location inputs; {self.token_semantics}")

    def build(self) -> torch.nn.Module:
        # Importing terratorch's Clay module lowers the global float32 matmul precision and
        # sets TORCH_CUDNN_V8_API_DISABLED; both are restored.
        precision, cudnn = torch.get_float32_matmul_precision(), os.environ.get(CUDNN_ENV)
        from terratorch.models.backbones.clay_v15.model import Encoder

        torch.set_float32_matmul_precision(precision)
        if cudnn is None:
            os.environ.pop(CUDNN_ENV, None)
        return Encoder(mask_ratio=0.0, patch_size=self.patch_size, shuffle=False, **self.variant.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        encoder = {k[len(ENCODER_PREFIX):]: t for k, t in state.items() if k.startswith(ENCODER_PREFIX)}
        load_weights(module, encoder, path)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        return standardised(data, valid, [S2_L2A[b][0] for b in self.bands], [S2_L2A[b][1] for b in self.bands])

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        time = np.zeros(4, np.float32)
        dates = frame_dates(chip, 1) if self.config["time"] else None
        if dates:
            week = dates[0].isocalendar().week * 2 * math.pi / 52
            time[:] = (math.sin(week), math.cos(week), 0.0, 1.0)  # hour 0
        latlon = np.zeros(4, np.float32)
        if self.config["location"]:
            lon, lat = (math.radians(v) for v in centre_lonlat(chip))
            latlon[:] = (math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon))
        return {"time": time, "latlon": latlon, "gsd": model_gsd(chip, prep)}

    def group_key(self, side: dict[str, Any]) -> float:
        return side["gsd"]

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        device = x.device
        cube = {"pixels": x,
                "time": torch.as_tensor(np.stack([s["time"] for s in sides]), device=device),
                "latlon": torch.as_tensor(np.stack([s["latlon"] for s in sides]), device=device),
                "gsd": torch.tensor(sides[0]["gsd"], device=device),  # one per batch (group_key)
                "waves": torch.tensor([S2_L2A[b][2] for b in self.bands], device=device)}
        encoded, *_ = model(cube)
        return patch_grid(encoded, 1, self.grid)
