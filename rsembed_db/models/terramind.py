"""TerraMind 1.0 as a Sentinel-2 L2A encoder (12 bands), built from TerraTorch's backbone registry.

Jakubik et al. 2025, "TerraMind: Large-Scale Generative Multimodality for Earth
Observation" (arXiv:2504.11171, ICCV 2025), IBM / ESA. The architecture is terratorch's
``TerraMindViT`` from ``BACKBONE_REGISTRY`` (``terramind_v1_{tiny,small,base,large}``,
``modalities=["S2L2A"]``), built without weights; the weights are the published
checkpoints (``ibm-esa-geospatial/TerraMind-1.0-<size>``, ``TerraMind_v1_<size>.pt``: the
whole any-to-any model), of which the tensors of this encoder are loaded through
``models.weights`` (terratorch's own loader would keep random values for missing tensors).

Input: Sentinel-2 L2A B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12, TerraMind's
``untok_sen2l2a@224`` band order (COASTAL_AEROSOL ... SWIR_2), standardised with the v1
pre-training mean/std of that modality (terratorch ``v1_pretraining_mean/std``); the
backbone does not normalise its input. Image 224, patch 16. Output: the 14 x 14 tokens
of the last layer after ``encoder_norm``; TerraMind has no CLS or register tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rsembed_db.models.base import ModelDescription
from rsembed_db.models.vit_tokens import patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, import_keeping_torch_settings, standardised
from rsembed_db.sources.base import Chip

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
TERRAMIND_BANDS = ("COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3",
                   "NIR_BROAD", "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2")
# terratorch 1.2.11 terramind_register.py v1_pretraining_mean/std["untok_sen2l2a@224"]
MEAN = (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988,
        2424.884, 1857.648)
STD = (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
       1434.261, 1334.311)
MODALITY = "S2L2A"
EMBEDDING = "untok_sen2l2a@224"
# The fixed 2-D sin-cos position table is a buffer terratorch computes at build time.
COMPUTED = (f"encoder_embeddings.{EMBEDDING}.pos_emb",)
CITATION = ("Jakubik, J., Yang, F., Blumenstiel, B., Scheurer, E., Sedona, R., Maurogiovanni, S., Bosmans, J., "
            "Dionelis, N., Marsocci, V., Kopp, N., et al. (2025). TerraMind: Large-Scale Generative "
            "Multimodality for Earth Observation. ICCV 2025, arXiv:2504.11171")


@dataclass(frozen=True)
class Variant:
    registry_key: str  # terratorch BACKBONE_REGISTRY
    repo_id: str
    filename: str
    dim: int
    patch_size: int


def _v1(size: str, dim: int) -> Variant:
    return Variant(f"terramind_v1_{size}", f"ibm-esa-geospatial/TerraMind-1.0-{size}", f"TerraMind_v1_{size}.pt",
                   dim, 16)


VARIANTS: dict[str, Variant] = {"tiny": _v1("tiny", 192), "small": _v1("small", 384), "base": _v1("base", 768),
                                "large": _v1("large", 1024)}


class TerraMindEmbedder(ZooEmbedder):
    """TerraMind 1.0 tiny/small/base/large on Sentinel-2 L2A, 12 bands.

    Config: ``variant`` (``small``), zoo options.
    """

    name = "terramind"
    requires = ("terratorch", "huggingface_hub")
    options = ("variant",)
    variants = VARIANTS
    default_variant = "small"
    image_size = 224
    input_bands = BANDS
    citation = CITATION
    token_semantics = "tokens of the last layer after encoder_norm (no CLS), row-major (D, 14, 14)"

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {}

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(self.variant.repo_id, self.variant.filename, "Apache-2.0 (TerraMind model card)")

    def describe(self) -> ModelDescription:
        return self.description(
            {"mean": list(MEAN), "std": list(STD), "formula": "(DN - mean) / std",
             "units": "Sentinel-2 L2A reflectance x 10000", "terramind_bands": list(TERRAMIND_BANDS),
             "source": "terratorch v1_pretraining_mean/std['untok_sen2l2a@224']"},
            f"TerraMind 1.0 {self.config['variant']} (Jakubik et al. 2025), S2L2A encoder; {self.token_semantics}")

    def build(self) -> torch.nn.Module:
        import_keeping_torch_settings("terratorch.models.backbones.terramind")  # registers the backbones
        registry = import_keeping_torch_settings("terratorch.registry").BACKBONE_REGISTRY
        return registry.build(self.variant.registry_key, pretrained=False, modalities=[MODALITY])

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        # The checkpoint holds the whole any-to-any model: keep this encoder's tensors.
        names = set(module.state_dict())
        load_weights(module, {k: t for k, t in state.items() if k in names}, path, may_miss=COMPUTED)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        return standardised(data, valid, MEAN, STD)

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        return patch_grid(model({MODALITY: x})[-1], 0, self.grid)
