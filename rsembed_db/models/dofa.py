"""DOFA: one ViT for any band set, its patch embedding generated from the wavelengths.

Xiong et al. 2024, "Neural Plasticity-Inspired Foundation Model for Observing the Earth
Crossing Modalities" (arXiv:2403.15356, github.com/zhu-xlab/DOFA). The architecture is
torchgeo's ``DOFA`` and the weights are the MAE-pretrained checkpoints torchgeo
publishes (``DOFABase16_Weights`` / ``DOFALarge16_Weights``, Hugging Face
``torchgeo/dofa``, revision pinned as torchgeo pins it).

Input: any set of Sentinel-2 bands with statistics. The DOFA README normalises its
Sentinel-2 demo (bands B04, B03, B02, B05, B06, B07, B08, B11, B12, 8-bit scaled) with
``S2_MEAN``/``S2_STD``; reflectance is brought to that scale as
``clip(DN / 10000, 0, 1) * 255`` (the convention the rs-embed reference library uses),
then standardised per band. Bands outside those nine need ``band_stats``
({band: [mean, std]} on the same 0-255 scale). Each band's central wavelength (µm,
Sentinel-2 MSI) conditions the dynamic patch embedding. Output: last-layer patch tokens,
CLS dropped (the published checkpoint has no final norm: torchgeo's model pools them
through an untrained ``fc_norm``, which is not applied here); (D, 14, 14).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.vit_tokens import patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, require_bands, standardised
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.base import Chip

REPO = "torchgeo/dofa"
REVISION = "b8db318b64a90b9e085ec04ba8851233c5893666"
# Central wavelengths (µm) of the Sentinel-2 MSI bands; the DOFA README uses the same
# values for its nine demo bands.
S2_WAVELENGTHS_UM = {"B01": 0.443, "B02": 0.49, "B03": 0.56, "B04": 0.665, "B05": 0.705, "B06": 0.74,
                     "B07": 0.783, "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B10": 1.375, "B11": 1.61,
                     "B12": 2.19}
# DOFA README S2_MEAN / S2_STD, for its band order B04 B03 B02 B05 B06 B07 B08 B11 B12.
README_BANDS = ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12")
README_MEAN = (114.1099739, 114.81779093, 126.63977424, 84.33539309, 97.84789168, 103.94461911,
               101.435633, 72.32804172, 56.66528851)
README_STD = (77.84352553, 69.96844919, 67.42465279, 64.57022983, 61.72545487, 61.34187099,
              60.29744676, 47.88519516, 42.55886798)
DOFA_STATS = {b: (m, s) for b, m, s in zip(README_BANDS, README_MEAN, README_STD, strict=True)}
DN_FULL_SCALE = 10000.0  # reflectance 1.0 -> 255


@dataclass(frozen=True)
class Variant:
    filename: str
    dim: int
    patch_size: int
    arch: dict[str, Any]  # torchgeo DOFA embed_dim, depth, num_heads


VARIANTS: dict[str, Variant] = {
    "base": Variant("dofa_base_patch16_224-a0275954.pth", 768, 16, {"embed_dim": 768, "depth": 12, "num_heads": 12}),
    "large": Variant("dofa_large_patch16_224-0ff904d3.pth", 1024, 16,
                     {"embed_dim": 1024, "depth": 24, "num_heads": 16}),
}


def _band_stats(value: object) -> dict[str, list[float]]:
    if not isinstance(value, dict) or not all(
            isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
            and v[1] > 0 for v in value.values()):
        raise SpecError("band_stats", f"must map band names to [mean, std > 0], got {value!r}")
    return {normalise_band(b): [float(v[0]), float(v[1])] for b, v in value.items()}


class _DOFA(Protocol):
    """What ``forward`` reads of torchgeo's ``DOFA``."""

    patch_embed: torch.nn.Module  # (images, wavelengths) -> (tokens, conv weights)
    pos_embed: torch.Tensor
    cls_token: torch.Tensor
    blocks: torch.nn.ModuleList


class DofaEmbedder(ZooEmbedder):
    """DOFA base/large on any Sentinel-2 band set, conditioned on the bands' wavelengths.

    Config: ``variant`` (``base``, ``large``), ``bands`` (the README's nine),
    ``band_stats`` (for other bands), zoo options.
    """

    name = "dofa"
    requires = ("torchgeo", "timm", "huggingface_hub")
    options = ("variant", "bands", "band_stats")
    variants = VARIANTS
    default_variant = "base"
    image_size = 224

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        extra = _band_stats(config.get("band_stats", {}))
        bands = require_bands(config.get("bands", README_BANDS), tuple(S2_WAVELENGTHS_UM))
        missing = [b for b in bands if b not in DOFA_STATS and b not in extra]
        if missing:
            raise SpecError("bands", f"no published DOFA statistics for {missing}: give them in band_stats",
                            tuple(DOFA_STATS))
        stats = {b: list(extra[b] if b in extra else DOFA_STATS[b]) for b in bands}
        return {"bands": bands, "band_stats": stats}

    @property
    def wavelengths(self) -> list[float]:
        return [S2_WAVELENGTHS_UM[b] for b in self.bands]

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(REPO, self.variant.filename, "MIT (github.com/zhu-xlab/DOFA)", REVISION)

    def describe(self) -> ModelDescription:
        stats = self.config["band_stats"]
        return self.description(
            {"scale": "clip(DN / 10000, 0, 1) * 255", "mean": [stats[b][0] for b in self.bands],
             "std": [stats[b][1] for b in self.bands], "formula": "(clip(DN / 10000, 0, 1) * 255 - mean) / std",
             "wavelengths_um": self.wavelengths,
             "source": "DOFA README S2_MEAN/S2_STD; Sentinel-2 MSI central wavelengths"},
            f"DOFA {self.config['variant']} (Xiong et al. 2024), wavelength-conditioned; {self.token_semantics}")

    def build(self) -> torch.nn.Module:
        from torchgeo.models.dofa import DOFA

        return DOFA(img_size=self.image_size, patch_size=self.patch_size, num_classes=0, **self.variant.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        # fc_norm pools for classification heads: not in the MAE checkpoint, not used here.
        load_weights(module, state, path, may_miss=("fc_norm",))

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        stats = self.config["band_stats"]
        return standardised(data, valid, [stats[b][0] for b in self.bands], [stats[b][1] for b in self.bands],
                            255.0 / DN_FULL_SCALE, (0.0, 255.0))

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        dofa = cast(_DOFA, model)
        waves = torch.tensor(self.wavelengths, device=x.device, dtype=torch.float32)
        tokens, _ = dofa.patch_embed(x, waves)
        tokens = tokens + dofa.pos_embed[:, 1:, :]
        cls = (dofa.cls_token + dofa.pos_embed[:, :1, :]).expand(len(x), -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        for block in dofa.blocks:
            tokens = block(tokens)
        return patch_grid(tokens, 1, self.grid)
