"""Scale-MAE: a ViT-L/16 whose position encoding is scaled by the ground sample distance.

Reed et al. 2023, "Scale-MAE: A Scale-Aware Masked Autoencoder for Multiscale Geospatial
Representation Learning", ICCV (github.com/bair-climate-initiative/scale-mae). The
architecture is torchgeo's ``ScaleMAE`` (a timm ``VisionTransformer`` whose sin-cos
position encoding is multiplied by ``res``) and the weights are the fMoW-RGB checkpoint
torchgeo publishes (``ScaleMAELarge16_Weights.FMOW_RGB``).

GSD conditioning: ``res`` is the ground sample distance of the model input in metres,
the chip's ``scale_m`` times the source pixels per model pixel (``chip_context.model_gsd``:
a 448 px chip at 10 m resized to 224 px is seen at 20 m), as torchgeo documents ``res``.
The Scale-MAE evaluation scripts pass a relative ratio instead (``eval_base_resolution``
x reference size / input size); see docs/models/zoo.md.

Input: Sentinel-2 B04, B03, B02 scaled to [0, 1] by ``rgb_max``, then ImageNet mean/std
(torchgeo's Scale-MAE transforms: divide by 255, then ImageNet normalisation; the
Scale-MAE fMoW config uses the same numbers). Output: the 14 x 14 patch tokens of the
last layer (after the final norm), CLS dropped; D = 1024.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from rsembed_db.models.base import ModelDescription
from rsembed_db.models.chip_context import model_gsd
from rsembed_db.models.vit_tokens import vit_patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import RGB, ModelInput, ZooEmbedder, rgb_max, rgb_normalisation, standardised
from rsembed_db.sources.base import Chip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REPO = "isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae"
REVISION = "9dc7f569424baeb780698352cf6e87638c882123"
FILE = "vit_large_patch16_224_fmow_rgb_scalemae-98ed9821.pth"
WEIGHTS = WeightSource.hub(REPO, FILE, "not stated in the Scale-MAE repository (deposited in the BAIR Open "
                           "Research Commons); check before redistributing", REVISION)


@dataclass(frozen=True)
class Variant:
    dim: int
    patch_size: int
    arch: dict[str, Any] = field(default_factory=lambda: {"embed_dim": 1024, "depth": 24, "num_heads": 16})


VARIANTS: dict[str, Variant] = {"vit_large_patch16": Variant(1024, 16)}


class ScaleMaeEmbedder(ZooEmbedder):
    """Scale-MAE ViT-L/16 (fMoW RGB) on Sentinel-2 RGB, conditioned on the input's GSD.

    Config: ``rgb_max`` (10000), plus the zoo options (``models.zoo``).
    """

    name = "scalemae"
    requires = ("torchgeo", "timm", "huggingface_hub")
    options = ("variant", "rgb_max")
    variants = VARIANTS
    default_variant = "vit_large_patch16"
    image_size = 224
    input_bands = RGB
    weights_source = WEIGHTS

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"rgb_max": rgb_max(config.get("rgb_max", 10000.0))}

    def describe(self) -> ModelDescription:
        return self.description(
            {**rgb_normalisation(self.config["rgb_max"], IMAGENET_MEAN, IMAGENET_STD,
                                 "torchgeo scale_mae transforms (ImageNet mean/std)"),
             "gsd": "res = scale_m x source pixels per model pixel (metres)"},
            f"Scale-MAE {self.config['variant']} (Reed et al. 2023), fMoW RGB, GSD-scaled position encoding; "
            f"{self.token_semantics}", tiled_grid_seams=True)

    def build(self) -> torch.nn.Module:
        from torchgeo.models.scale_mae import ScaleMAE

        return ScaleMAE(img_size=self.image_size, patch_size=self.patch_size, mlp_ratio=4, qkv_bias=True,
                        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_classes=0, **self.variant.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        # The position encoding is computed from ``res``; the stored one is unused.
        load_weights(module, state, path, may_miss=("pos_embed",))

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        return standardised(data, valid, IMAGENET_MEAN, IMAGENET_STD, 1.0 / self.config["rgb_max"], (0.0, 1.0))

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        return {"gsd": model_gsd(chip, prep)}

    def group_key(self, side: dict[str, Any]) -> float:
        return side["gsd"]

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        model.res = sides[0]["gsd"]  # one GSD per batch (group_key)
        return vit_patch_grid(model, x, self.grid)
