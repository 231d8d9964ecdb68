"""SatMAE++: multi-scale MAE ViT-L pre-trained on fMoW RGB or fMoW-Sentinel, two modalities.

Noman et al. 2024, "Rethinking Transformers Pre-training for Multi-Spectral Satellite
Imagery", CVPR (arXiv:2403.05419; github.com/techmn/satmae_pp, Apache-2.0). The weights
are the authors' pre-training checkpoints on the Hugging Face hub (``mubashir04/...``:
``{"model": <MAE state dict>, "optimizer"..., "args"...}``), of which the encoder tensors
are loaded; the decoder and the multi-scale up-sampling heads are not used.

Modality (``modality`` config key or the request's ``modality=``):
- ``rgb`` (default): fMoW-RGB ViT-L/16, image 224, grid 14 x 14. The encoder has timm's
  ViT layout (timm ``vit_large_patch16_224``). Bands B04, B03, B02 (R, G, B: the
  authors' loader converts OpenCV's BGR to RGB), ``clip(DN / rgb_max, 0, 1)``, then the
  fMoW RGB mean/std of ``CustomDatasetFromImages``.
- ``s2_10b``: fMoW-Sentinel group-channel ViT-L, image 96, patch 8, grid 12 x 12 (the
  architecture is ``models.satmaepp_net``). Bands B02 B03 B04 B05 B06 B07 B08 B8A B11 B12
  (FMoW-Sentinel's 13 without B01, B09, B10: ``dropped_bands 0 9 10``), in groups
  (B02 B03 B04 B08), (B05 B06 B07 B8A), (B11 B12). ``SentinelNormalize``: per band
  ``uint8(clip((DN - (mean - 2 std)) / (4 std) * 255, 0, 255)) / 255`` with the
  FMoW-Sentinel statistics. FMoW-Sentinel is Sentinel-2 L1C, so the default sensor is
  ``COPERNICUS/S2_HARMONIZED`` (the rs-embed reference library fetches L2A).
Both encoders run without MAE masking, so the grid is spatially in order (the rs-embed
library calls ``forward_encoder(mask_ratio=0)``, whose token shuffle it never undoes).
Output: patch tokens after the final norm, CLS dropped; for ``s2_10b`` the mean over the
three group tokens of each patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.vit_tokens import vit_patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import DEFAULT_COLLECTION, RGB, ModelInput, ZooEmbedder, rgb_max, rgb_normalisation, standardised
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.validate import require_choice

MODALITIES = ("rgb", "s2_10b")
L1C_COLLECTION = "COPERNICUS/S2_HARMONIZED"
CHANNEL_ORDERS = ("rgb", "bgr")
FMOW_RGB_MEAN = (0.4182007312774658, 0.4214799106121063, 0.3991275727748871)
FMOW_RGB_STD = (0.28774282336235046, 0.27541765570640564, 0.2764017581939697)
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))  # indexes into S2_BANDS
# SentinelIndividualImageDataset.mean/std (13 FMoW-Sentinel bands) without B01, B09, B10.
S2_MEAN = (1184.3824625, 1120.77120066, 1136.26026392, 1263.73947144, 1645.40315151, 1846.87040806,
           1762.59530783, 1972.62420416, 1732.16362238, 1247.91870117)
S2_STD = (650.2842772, 712.12507725, 965.23119807, 948.9819932, 1108.06650639, 1258.36394548, 1233.1492281,
          1364.38688993, 1310.36996126, 1087.6020813)
MAE_ONLY = ("decoder", "mask_token", "proj_up", "up_block")  # decoder and multi-scale heads
CITATION = ("Noman, M., Naseer, M., Cholakkal, H., Anwer, R. M., Khan, S., Khan, F. S. (2024). Rethinking "
            "Transformers Pre-training for Multi-Spectral Satellite Imagery. CVPR 2024, arXiv:2403.05419")


@dataclass(frozen=True)
class Arch:
    repo_id: str
    filename: str
    image_size: int
    dim: int
    patch_size: int
    depth: int
    heads: int
    channel_dim: int = 0  # s2_10b: width of the group (channel) embedding


VARIANTS: dict[str, dict[str, Arch]] = {"large": {
    "rgb": Arch("mubashir04/checkpoint_ViT-L_pretrain_fmow_rgb", "checkpoint_ViT-L_pretrain_fmow_rgb.pth",
                224, 1024, 16, 24, 16),
    "s2_10b": Arch("mubashir04/checkpoint_ViT-L_pretrain_fmow_sentinel", "checkpoint_ViT-L_pretrain_fmow_sentinel.pth",
                   96, 1024, 8, 24, 16, 256),
}}


def sentinel_normalise(data: np.ndarray) -> np.ndarray:
    """SatMAE++'s ``SentinelNormalize`` then ``ToTensor``: 2-sigma range to uint8 steps in [0, 1]."""
    low = np.asarray(S2_MEAN, np.float64)[:, None, None] - 2 * np.asarray(S2_STD, np.float64)[:, None, None]
    span = 4 * np.asarray(S2_STD, np.float64)[:, None, None]
    scaled = np.clip((data - low) / span * 255.0, 0, 255)
    return (np.floor(scaled) / 255.0).astype(np.float32)


class SatMaePlusPlusEmbedder(ZooEmbedder):
    """SatMAE++ ViT-L on Sentinel-2 RGB (``rgb``) or 10 bands (``s2_10b``).

    Config: ``modality`` (``rgb``, ``s2_10b``), ``rgb_max`` (10000) and ``channel_order``
    (``rgb``; ``bgr`` feeds B02, B03, B04) for ``rgb``, zoo options.
    """

    name = "satmaepp"
    requires = ("timm", "huggingface_hub")
    options = ("variant", "modality", "rgb_max", "channel_order")
    variants = VARIANTS
    default_variant = "large"
    modalities = MODALITIES
    citation = CITATION

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        modality = config.get("modality", "rgb")
        require_choice("modality", modality, MODALITIES)
        if modality == "s2_10b":
            for key in ("rgb_max", "channel_order"):
                if key in config:
                    raise SpecError(key, "applies to modality 'rgb' only; s2_10b normalises with the FMoW-Sentinel "
                                    "statistics")
            return {"modality": modality}
        order = config.get("channel_order", "rgb")
        require_choice("channel_order", order, CHANNEL_ORDERS)
        return {"modality": modality, "rgb_max": rgb_max(config.get("rgb_max", 10000.0)), "channel_order": order}

    @property
    def variant(self) -> Arch:
        return self.variants[self.config["variant"]][self.config["modality"]]

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.variant.image_size

    @property
    def bands(self) -> tuple[str, ...]:
        if self.config["modality"] == "s2_10b":
            return S2_BANDS
        return RGB if self.config["channel_order"] == "rgb" else RGB[::-1]

    @property
    def token_semantics(self) -> str:  # type: ignore[override]
        side = self.image_size // self.patch_size
        if self.config["modality"] == "s2_10b":
            return (f"patch tokens after the final norm, CLS dropped, mean over the 3 channel-group tokens of each "
                    f"patch, row-major (D, {side}, {side}); no MAE token shuffle")
        return f"patch tokens after the final norm, CLS dropped, row-major (D, {side}, {side}); no MAE token shuffle"

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(self.variant.repo_id, self.variant.filename,
                                "code Apache-2.0 (techmn/satmae_pp); weight licence not stated")

    def default_sensor(self) -> SensorSpec:
        # FMoW-Sentinel is Sentinel-2 L1C (it has B10); fMoW RGB stands in for surface reflectance.
        collection = L1C_COLLECTION if self.config["modality"] == "s2_10b" else DEFAULT_COLLECTION
        return SensorSpec(collection=collection, bands=self.bands, scale_m=10.0, composite="median",
                          modality=self.config["modality"])

    def describe(self) -> ModelDescription:
        if self.config["modality"] == "s2_10b":
            normalisation = {
                "mean": list(S2_MEAN), "std": list(S2_STD),
                "formula": "floor(clip((DN - (mean - 2 std)) / (4 std) * 255, 0, 255)) / 255",
                "units": "Sentinel-2 reflectance x 10000",
                "groups": [[S2_BANDS[i] for i in g] for g in GROUPS],
                "source": "SatMAE++ util/datasets.py SentinelNormalize, SentinelIndividualImageDataset.mean/std "
                          "(bands 0, 9, 10 dropped)"}
        else:
            normalisation = rgb_normalisation(self.config["rgb_max"], FMOW_RGB_MEAN, FMOW_RGB_STD,
                                              "SatMAE++ util/datasets.py CustomDatasetFromImages (fMoW RGB)")
        return self.description(
            normalisation, f"SatMAE++ ViT-L (Noman et al. 2024), {self.config['modality']}; {self.token_semantics}",
            tiled_grid_seams=True)

    def build(self) -> torch.nn.Module:
        a = self.variant
        if self.config["modality"] == "s2_10b":
            from rsembed_db.models.satmaepp_net import GroupChannelViT

            return GroupChannelViT(a.image_size, a.patch_size, GROUPS, a.dim, a.depth, a.heads, a.channel_dim)
        import timm

        return timm.create_model("vit_large_patch16_224", pretrained=False, num_classes=0, global_pool="token",
                                 img_size=a.image_size, patch_size=a.patch_size, embed_dim=a.dim, depth=a.depth,
                                 num_heads=a.heads)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        if state and all(k.startswith("module.") for k in state):
            state = {k.removeprefix("module."): t for k, t in state.items()}
        load_weights(module, state, path, drop=MAE_ONLY)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        if self.config["modality"] == "s2_10b":
            x = sentinel_normalise(data)
            x[:, ~valid] = 0.0
            return ModelInput(x, valid)
        return standardised(data, valid, FMOW_RGB_MEAN, FMOW_RGB_STD, 1.0 / self.config["rgb_max"], (0.0, 1.0))

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        if self.config["modality"] == "rgb":
            return vit_patch_grid(model, x, self.grid)
        tokens = model(x)[:, 1:]
        b, _, d = tokens.shape
        h, w = self.grid
        per_group = tokens.reshape(b, len(GROUPS), h * w, d).mean(dim=1)
        return per_group.transpose(1, 2).reshape(b, d, h, w)
