"""WildSAT: satellite image encoders fine-tuned against wildlife observations (species,
habitat text, location).

Daroya R., Cole E., Mac Aodha O., Van Horn G., Maji S., "WildSAT: Learning Satellite Image
Representations from Wildlife Observations", arXiv:2412.14428 (2024); github.com/cvl-umass/wildsat.
Backbones: torchvision ``vit_b_16`` / ``resnet50`` / ``swin_t`` with their ImageNet
classification heads (1000 outputs, fine-tuned); heads: three bias-free
Linear(1000, 256) branches (text, location, image: the authors' ``threelinearnobias``).
Weights: the ImageNet-initialised checkpoints of the authors' README (Google Drive, so
read from ``weights_dir``): a torch pickle with ``opt`` (an ``argparse.Namespace``) and
``satellite_state_dict`` (``module.backbone.*``, ``module.decoder.*``).

Input, as the authors' training data and quickstart: Sentinel-2 true-colour images
(SatlasPretrain TCI, 8-bit) -> [0, 1], then the image's minimum subtracted (their
"min-max" step divides by max(max, 1), a no-op for values <= 1); no ImageNet
standardisation. Here ``x = clip(DN / rgb_max, 0, 1)`` with ``rgb_max`` 3558, the Sentinel-2
L1C TCI saturation level, the minimum subtracted per model input. Image 224 (ViT) or 512
(ResNet-50, Swin-T), as trained.

Output (``features``): ``image`` (default): the image branch of the head, 256-d, one cell
per model input; ``tokens``: the backbone's last feature map (ViT-B/16: patch tokens after
the encoder's final norm, CLS dropped, 768 x 14 x 14; ResNet-50: layer4, 2048 x 16 x 16;
Swin-T: last stage after its norm, 768 x 16 x 16).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import nn

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.weights import ResolvedWeights, WeightSource, load_state_dict, load_weights, resolve_weights
from rsembed_db.models.zoo import RGB, ModelInput, ZooEmbedder, rgb_max, standardised
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec

FEATURES = ("image", "tokens")
L1C_COLLECTION = "COPERNICUS/S2_HARMONIZED"
TCI_L1C_SATURATION = 3558.0  # Sentinel-2 L1C TCI: DN 3558 (reflectance 0.3558) is 255
LICENCE = "no licence file in the WildSAT repository (research release; ask the authors before redistribution)"
CITATION = ("Daroya R., Cole E., Mac Aodha O., Van Horn G., Maji S., \"WildSAT: Learning Satellite Image "
            "Representations from Wildlife Observations\", arXiv:2412.14428 (2024); ICCV 2025")


def _gdrive(file_id: str, filename: str) -> WeightSource:
    return WeightSource(filename, f"https://drive.google.com/uc?export=download&id={file_id}", LICENCE,
                        revision=f"gdrive-{file_id}")


@dataclass(frozen=True)
class Variant:
    backbone: str  # "vit", "resnet" or "swin": which torchvision class
    dim: int  # the image embedding (head) width
    patch_size: int  # output stride of the backbone's last feature map (pixels)
    image_size: int
    token_dim: int  # channels of the last feature map
    arch: dict[str, Any]  # torchvision constructor arguments
    weights: WeightSource


VARIANTS: dict[str, Variant] = {
    "vitb16": Variant("vit", 256, 16, 224, 768,
                      {"num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072},
                      _gdrive("1IxBpf3nbEMzny4YJWS6stMBxel6gMiYE", "vitb16-imagenet-bnfc.pth")),
    "resnet50": Variant("resnet", 256, 32, 512, 2048, {"layers": [3, 4, 6, 3]},
                        _gdrive("1LwCjzT1p0yFOtv1m0YD-rl7tP0eYXTb2", "resnet50-imagenet-bnfc.pth")),
    "swint": Variant("swin", 256, 32, 512, 768,
                     {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
                     _gdrive("12rfb3ES9-RuIAk_RjzYrMQJG_5J1Iq5H", "swint-imagenet-bnfc.pth")),
}


class ThreeLinearHead(nn.Module):
    """The authors' ``threelinearnobias`` head: text, location and image branches."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.backbone1 = nn.Sequential(nn.Linear(in_dim, out_dim, bias=False))  # text
        self.backbone2 = nn.Sequential(nn.Linear(in_dim, out_dim, bias=False))  # location (SINR)
        self.backbone3 = nn.Sequential(nn.Linear(in_dim, out_dim, bias=False))  # image


class SatelliteModel(nn.Module):
    """``backbone`` (torchvision, 1000 outputs) and ``decoder`` (the three-branch head)."""

    def __init__(self, backbone: nn.Module, head_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = ThreeLinearHead(1000, head_dim)


def build_backbone(variant: Variant) -> nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer

    if variant.backbone == "vit":
        return VisionTransformer(image_size=variant.image_size, patch_size=16, **variant.arch)
    if variant.backbone == "resnet":
        return ResNet(Bottleneck, **variant.arch)
    return SwinTransformer(patch_size=[4, 4], window_size=[7, 7], stochastic_depth_prob=0.2, **variant.arch)


def feature_map(model: SatelliteModel, variant: Variant, x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w): the backbone's last feature map (ViT: patch tokens after the final norm)."""
    net: Any = model.backbone
    if variant.backbone == "vit":
        tokens = net._process_input(x)
        tokens = net.encoder(torch.cat([net.class_token.expand(len(x), -1, -1), tokens], dim=1))[:, 1:]
        side = variant.image_size // variant.patch_size
        return tokens.transpose(1, 2).reshape(len(x), -1, side, side)
    if variant.backbone == "resnet":
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return net.permute(net.norm(net.features(x)))


class WildSatEmbedder(ZooEmbedder):
    """WildSAT ViT-B/16 (default), ResNet-50 or Swin-T on Sentinel-2 true colour.

    Config: ``variant`` (``vitb16``, ``resnet50``, ``swint``), ``features`` (``image`` or
    ``tokens``), ``rgb_max`` (3558), zoo options. Put the variant's checkpoint in ``weights_dir``.
    """

    name = "wildsat"
    requires = ("torchvision",)
    options = ("variant", "features", "rgb_max")
    variants = VARIANTS
    default_variant = "vitb16"
    input_bands = RGB

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        features = config.get("features", "image")
        if features not in FEATURES:
            raise SpecError("features", f"must be one of {list(FEATURES)}, got {features!r}", FEATURES)
        return {"features": features, "rgb_max": rgb_max(config.get("rgb_max", TCI_L1C_SATURATION))}

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return int(self.variant.image_size)

    @property
    def grid(self) -> tuple[int, int]:
        return (1, 1) if self.config["features"] == "image" else super().grid

    @property
    def token_semantics(self) -> str:  # type: ignore[override]
        if self.config["features"] == "image":
            return "image-branch embedding of the WildSAT head, one cell per model input"
        return {"vit": "patch tokens after the encoder's final norm, CLS dropped",
                "resnet": "layer4 feature map", "swin": "last stage after its norm"}[self.variant.backbone]

    def published_weights(self) -> WeightSource:
        return self.variant.weights

    def default_sensor(self) -> SensorSpec:
        return SensorSpec(collection=L1C_COLLECTION, bands=self.bands, scale_m=self.scale_m, composite="median")

    def describe(self) -> ModelDescription:
        v = self.variant
        normalisation = {"formula": "x = clip(DN / rgb_max, 0, 1); x - min(x) per model input",
                         "rgb_max": self.config["rgb_max"],
                         "source": "WildSAT quickstart / training: 8-bit Sentinel-2 TCI to [0, 1], minimum subtracted; "
                                   "rgb_max 3558 is the L1C TCI saturation level"}
        description = self.description(normalisation, f"WildSAT {self.config['variant']} (Daroya et al.), "
                                       f"ImageNet init; {self.token_semantics}", citation=CITATION)
        return description if self.config["features"] == "image" else replace(description, dim=v.token_dim)

    def checkpoint(self) -> tuple[ResolvedWeights, dict[str, torch.Tensor]]:
        resolved = resolve_weights(self.name, self.weights, self.runtime.weights_dir, self.runtime.cache_dir)
        state = load_state_dict(resolved.path, nested=("satellite_state_dict",), safe_types=(argparse.Namespace,))
        return resolved, {_strip(k): t for k, t in state.items()}

    def build(self) -> torch.nn.Module:
        return SatelliteModel(build_backbone(self.variant), self.variant.dim)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, state, path)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        if data.ndim != 3:
            raise SpecError("frames", f"wildsat takes one frame; the chip has {data.shape[0]}")
        return standardised(data, valid, (0.0,) * 3, (1.0,) * 3, 1.0 / self.config["rgb_max"], (0.0, 1.0))

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        x = x - x.amin(dim=(1, 2, 3), keepdim=True)
        satellite = cast(SatelliteModel, model)  # what ``build`` made
        if self.config["features"] == "tokens":
            return feature_map(satellite, self.variant, x)
        image = satellite.decoder.backbone3(satellite.backbone(x))
        return image[:, :, None, None]


def _strip(key: str) -> str:
    """A checkpoint key without the ``module.`` prefixes of (distributed) data-parallel training."""
    while key.startswith("module."):
        key = key.removeprefix("module.")
    return key
