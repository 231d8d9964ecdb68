"""FoMo-Net_1 (FoMo-Bench): a ViT that tokenises every band on its own, keyed by modality.

Bountos, Ouaknine, Rolnick 2023, "FoMo-Bench: a multi-modal, multi-scale and multi-task
Forest Monitoring Benchmark for remote sensing foundation models" (arXiv:2312.10114).
Architecture: ``fomo_vit.MultiSpectralViT`` with the published configuration (image 64,
patch 16, D 768, depth 12, 12 heads of 64, MLP 2048); weights: the raw state dict
``fomo_single_embedding_layer_weights.pt`` from the FoMo-Bench README (Dropbox, so it is
read from ``weights_dir``); the classification ``mlp_head`` is not used.

Input: Sentinel-2 bands, each with its FoMo modality key (``sentinel-2-b1`` = 6 ...
``sentinel-2-b12`` = 18). ``normalisation="standard"`` (default) standardises with the
TalloS Sentinel-2 statistics of FoMo's ``configs/stats/stats.json`` (pre-training used
per-dataset standardisation; TalloS is its Sentinel-2 dataset), which cover B02 B03 B04
B05 B06 B07 B08 B8A B11 B12; ``"unit_scale"`` is clip(DN, 0, 10000) / 10000 (the rs-embed
reference library's default) and accepts any of the 13 bands. Output: the 4 x 4 patch
tokens of the last layer, averaged over bands; D = 768.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.vit_tokens import frames_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, require_bands, standardised
from rsembed_db.sources.base import Chip

S2_KEYS = {"B01": 6, "B02": 7, "B03": 8, "B04": 9, "B05": 10, "B06": 11, "B07": 12, "B08": 13, "B8A": 14,
           "B09": 15, "B10": 16, "B11": 17, "B12": 18}  # FoMo modality_channels: sentinel-2-b1 ... b12
# configs/stats/stats.json "tallos", its Sentinel-2 channels (configs/datasets: dataset_modality_index).
TALLOS = {"B02": (1283.97119, 2028.46753), "B03": (1438.82031, 1908.08655), "B04": (1378.67847, 1912.57837),
          "B05": (1819.70667, 1931.35449), "B06": (2835.08765, 1730.66138), "B07": (3202.86938, 1714.06738),
          "B08": (3276.03394, 1679.35315), "B8A": (3422.51392, 1671.14331), "B11": (2305.23926, 1351.27197),
          "B12": (1555.97595, 1257.49890)}
NORMALISATIONS = ("standard", "unit_scale")
WEIGHTS = WeightSource(
    "fomo_single_embedding_layer_weights.pt",
    "https://www.dropbox.com/scl/fi/4ckmxlcbc0tcod8hknp7c/fomo_single_embedding_layer_weights.pt"
    "?rlkey=26tlf3yaz93vvcosr0qrvklub&dl=1",
    "MIT (FoMo-Bench repository; no separate weights licence stated)", revision="fomo-bench-readme")
CITATION = ("Bountos N.I., Ouaknine A., Rolnick D., \"FoMo-Bench: a multi-modal, multi-scale and multi-task Forest "
            "Monitoring Benchmark for remote sensing foundation models\", arXiv:2312.10114 (2023); AAAI 2025 as "
            "\"FoMo: Multi-Modal, Multi-Scale and Multi-Task Remote Sensing Foundation Models for Forest Monitoring\"")


@dataclass(frozen=True)
class Variant:
    dim: int
    patch_size: int
    arch: dict[str, Any]  # MultiSpectralViT depth, heads, mlp_dim, dim_head


VARIANTS: dict[str, Variant] = {
    "fomo_net_1": Variant(768, 16, {"depth": 12, "heads": 12, "mlp_dim": 2048, "dim_head": 64}),
}


class FomoEmbedder(ZooEmbedder):
    """FoMo-Net_1 on Sentinel-2 bands with their modality keys.

    Config: ``bands`` (default the ten TalloS bands), ``normalisation`` (``standard`` or
    ``unit_scale``), zoo options. Put ``fomo_single_embedding_layer_weights.pt`` in
    ``weights_dir``.
    """

    name = "fomo"
    options = ("variant", "bands", "normalisation")
    variants = VARIANTS
    default_variant = "fomo_net_1"
    image_size = 64
    weights_source = WEIGHTS
    token_semantics = "patch tokens of the last layer (no CLS in the sequence), mean over bands"

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        norm = config.get("normalisation", "standard")
        if norm not in NORMALISATIONS:
            raise SpecError("normalisation", f"must be one of {list(NORMALISATIONS)}, got {norm!r}", NORMALISATIONS)
        allowed = tuple(TALLOS) if norm == "standard" else tuple(S2_KEYS)
        bands = require_bands(config.get("bands", tuple(TALLOS)), allowed)
        return {"bands": bands, "normalisation": norm}

    @property
    def keys(self) -> list[int]:
        """FoMo modality key of each input band, in ``bands`` order."""
        return [S2_KEYS[b] for b in self.bands]

    def describe(self) -> ModelDescription:
        bands = list(self.bands)
        normalisation: dict[str, Any]
        if self.config["normalisation"] == "standard":
            normalisation = {"mean": [TALLOS[b][0] for b in bands], "std": [TALLOS[b][1] for b in bands],
                             "formula": "(DN - mean) / std", "units": "Sentinel-2 L2A reflectance x 10000",
                             "source": "FoMo-Bench configs/stats/stats.json (tallos)"}
        else:
            normalisation = {"formula": "clip(DN, 0, 10000) / 10000", "source": "rs-embed fomo default (unit_scale)"}
        normalisation["modality_keys"] = dict(zip(bands, self.keys))
        return self.description(normalisation, f"FoMo-Net_1 (Bountos et al.), {len(bands)} bands x 16 patches; "
                                f"{self.token_semantics}", citation=CITATION)

    def build(self) -> torch.nn.Module:
        from rsembed_db.models.fomo_vit import MultiSpectralViT

        v = self.variant
        return MultiSpectralViT(self.image_size, v.patch_size, v.dim, **v.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, state, path, drop=("mlp_head",))

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        if data.ndim != 3:
            raise SpecError("frames", f"fomo takes one frame; the chip has {data.shape[0]}")
        if self.config["normalisation"] == "standard":
            return standardised(data, valid, [TALLOS[b][0] for b in self.bands], [TALLOS[b][1] for b in self.bands])
        zeros, ones = [0.0] * len(self.bands), [1.0] * len(self.bands)
        return standardised(data, valid, zeros, ones, 1.0 / 10000.0, (0.0, 1.0))

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        return frames_grid(model(x, self.keys), 0, len(self.keys), self.grid)
