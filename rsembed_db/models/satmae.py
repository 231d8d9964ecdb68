"""SatMAE: a masked-autoencoder ViT-L/16 pre-trained on fMoW RGB imagery.

Cong et al. 2022, "SatMAE: Pre-training Transformers for Temporal and Multi-Spectral
Satellite Imagery", NeurIPS (github.com/sustainlab-group/SatMAE). The fMoW-RGB
pre-training checkpoint (``fmow_pretrain.pth``, Zenodo record 7369797, the file
terratorch's ``satmae_mae_vit_large_patch16`` registry entry downloads) holds the MAE
encoder and decoder; its encoder has timm's ViT layout, so it loads into
``timm``'s ``vit_large_patch16_224`` once the decoder tensors are dropped.

Input: Sentinel-2 B04, B03, B02 scaled to [0, 1] by ``rgb_max``, then the fMoW RGB
statistics of SatMAE's ``util/datasets.py`` (``CustomDatasetFromImages.mean/std``,
applied by the authors after ``ToTensor``). Output: the 14 x 14 patch tokens of the
last layer (after the final norm), CLS dropped; D = 1024.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rsembed_db.models.base import ModelDescription
from rsembed_db.models.vit_tokens import patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import RGB, ModelInput, ZooEmbedder, rgb_max, rgb_normalisation, standardised
from rsembed_db.sources.base import Chip

FMOW_MEAN = (0.4182007312774658, 0.4214799106121063, 0.3991275727748871)
FMOW_STD = (0.28774282336235046, 0.27541765570640564, 0.2764017581939697)
WEIGHTS = WeightSource("fmow_pretrain.pth", "https://zenodo.org/record/7369797/files/fmow_pretrain.pth",
                       "not stated; see the SatMAE repository and Zenodo record 7369797",
                       revision="zenodo-7369797")
MAE_DECODER = ("decoder", "mask_token")


@dataclass(frozen=True)
class Variant:
    timm_name: str
    dim: int
    patch_size: int
    arch: dict[str, Any] = field(default_factory=dict)  # overrides of timm's model arguments


VARIANTS: dict[str, Variant] = {"vit_large_patch16": Variant("vit_large_patch16_224", 1024, 16)}


class SatMaeEmbedder(ZooEmbedder):
    """SatMAE ViT-L/16 (fMoW RGB pre-training) on Sentinel-2 RGB.

    Config: ``rgb_max`` (10000), plus the zoo options (``models.zoo``). The weights are
    not on the Hugging Face hub: put ``fmow_pretrain.pth`` in ``weights_dir``.
    """

    name = "satmae"
    requires = ("timm",)
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
            rgb_normalisation(self.config["rgb_max"], FMOW_MEAN, FMOW_STD,
                              "SatMAE util/datasets.py CustomDatasetFromImages (fMoW RGB)"),
            f"SatMAE {self.config['variant']} (Cong et al. 2022), fMoW-RGB MAE pre-training; {self.token_semantics}",
            tiled_grid_seams=True)

    def build(self) -> torch.nn.Module:
        import timm

        return timm.create_model(self.variant.timm_name, pretrained=False, num_classes=0,
                                 global_pool="token", img_size=self.image_size, **self.variant.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, state, path, drop=MAE_DECODER)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        return standardised(data, valid, FMOW_MEAN, FMOW_STD, 1.0 / self.config["rgb_max"], (0.0, 1.0))

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        return patch_grid(model.forward_features(x), model.num_prefix_tokens, self.grid)
