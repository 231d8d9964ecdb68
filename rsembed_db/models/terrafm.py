"""TerraFM-B: one ViT-B/16 for Sentinel-2 (12 bands) or Sentinel-1 (VV, VH), chosen by modality.

Danish et al. 2025, "TerraFM: A Scalable Foundation Model for Unified Multisensor Earth
Observation" (arXiv:2506.06281; github.com/mbzuai-oryx/TerraFM, code Apache-2.0). The
architecture is written in this project (``models.terrafm_net``) from the authors'
published ``terrafm.py``; the weights are ``TerraFM-B.pth`` of the Hugging Face
repository ``MBZUAI/TerraFM`` (a bare state dict, as the authors' README loads it).

Modality (``modality`` config key, or the request-level ``modality=`` argument):
- ``s2`` (default): Sentinel-2 B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12 (12 bands,
  ``COPERNICUS/S2_SR_HARMONIZED``), ``clip(DN / 10000, 0, 1)``. The authors' forward
  (``model(x)`` with 12 channels) runs the S2 **L1C** patch embedding for any 12-band
  input, also L2A; that is the default here (``s2_branch="l1c"``); ``s2_branch="l2a"``
  selects the checkpoint's L2A embedding instead.
- ``s1``: Sentinel-1 VV, VH as linear backscatter (``COPERNICUS/S1_GRD_FLOAT``),
  ``log1p(max(x, 0))`` divided by its 99th percentile over the chip's valid pixels (both
  bands together), clipped to [0, 1]. The authors publish no Sentinel-1 recipe (the
  paper: Sentinel-1 RTC from Major-TOM); this is the rs-embed reference library's, and
  decibel input is refused.
Image 224 (bilinear), patch 16. Output (``tokens``): ``patch`` (default) the 14 x 14
patch tokens after the final norm, CLS dropped (the authors' ``extract_feature`` grid);
``cls`` the CLS token after the final norm (the authors' image embedding, ``model(x)``),
one cell per model input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.vit_tokens import patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import DEFAULT_COLLECTION, ModelInput, ZooEmbedder, standardised
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.validate import require_choice

REPO = "MBZUAI/TerraFM"
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S1_BANDS = ("VV", "VH")
S1_COLLECTION = "COPERNICUS/S1_GRD_FLOAT"  # linear backscatter
S2_SCALE = 10000.0
S1_PERCENTILE = 99.0
MODALITIES = ("s2", "s1")
S2_BRANCHES = ("l1c", "l2a")
TOKENS = ("patch", "cls")
BACKBONE = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
CITATION = ("Danish, M. S., Munir, M. A., Shah, S. R. A., Khan, M. H., Anwer, R. M., Laaksonen, J., "
            "Khan, F. S., Khan, S. (2025). TerraFM: A Scalable Foundation Model for Unified Multisensor "
            "Earth Observation. arXiv:2506.06281")


@dataclass(frozen=True)
class Variant:
    filename: str
    dim: int
    patch_size: int
    depth: int
    heads: int


VARIANTS: dict[str, Variant] = {"base": Variant("TerraFM-B.pth", 768, 16, 12, 12)}


def s1_log_p99(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear VV/VH (2, H, W) -> ``clip(log1p(max(x, 0)) / p99, 0, 1)``, p99 over valid pixels
    of both bands; SpecError for decibel input (most finite non-zero values negative)."""
    values = data[:, valid]
    values = values[np.isfinite(values) & (values != 0)]
    if values.size and np.mean(values < 0) > 0.5:
        raise SpecError("sensor.use_float_linear", "TerraFM's Sentinel-1 input is linear backscatter; these "
                        "values look like decibels: fetch COPERNICUS/S1_GRD_FLOAT (use_float_linear=True)")
    x = np.log1p(np.maximum(np.nan_to_num(data, nan=0.0), 0.0)).astype(np.float32)
    top = float(np.percentile(x[:, valid], S1_PERCENTILE)) if valid.any() else 0.0
    return np.clip(x / top, 0.0, 1.0) if top > 0 else x


class TerraFmEmbedder(ZooEmbedder):
    """TerraFM-B on Sentinel-2 (12 bands) or Sentinel-1 (VV, VH).

    Config: ``modality`` (``s2``, ``s1``; the request's ``modality=`` sets it),
    ``s2_branch`` (``l1c``, ``l2a``), ``tokens`` (``patch``, ``cls``), zoo options.
    """

    name = "terrafm"
    requires = ("timm", "huggingface_hub")
    options = ("variant", "modality", "s2_branch", "tokens")
    variants = VARIANTS
    default_variant = "base"
    image_size = 224
    modalities = MODALITIES
    citation = CITATION

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        modality, branch, tokens = (config.get("modality", "s2"), config.get("s2_branch", "l1c"),
                                    config.get("tokens", "patch"))
        require_choice("modality", modality, MODALITIES)
        require_choice("s2_branch", branch, S2_BRANCHES)
        require_choice("tokens", tokens, TOKENS)
        return {"modality": modality, "s2_branch": branch, "tokens": tokens}

    @property
    def bands(self) -> tuple[str, ...]:
        return S1_BANDS if self.config["modality"] == "s1" else S2_BANDS

    @property
    def source(self) -> str:
        """The patch embedding the input runs through (``s1``, ``s2_l1c``, ``s2_l2a``)."""
        return "s1" if self.config["modality"] == "s1" else f"s2_{self.config['s2_branch']}"

    @property
    def patch_size(self) -> int:
        # The CLS embedding is one cell covering the whole input.
        return self.image_size if self.config["tokens"] == "cls" else self.variant.patch_size

    @property
    def token_semantics(self) -> str:  # type: ignore[override]
        if self.config["tokens"] == "cls":
            return "CLS token after the final norm (TerraFM's image embedding), one cell per model input"
        return "patch tokens after the final norm, CLS dropped, row-major (D, 14, 14)"

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(REPO, self.variant.filename,
                                "code Apache-2.0 (mbzuai-oryx/TerraFM); weight licence not checked offline")

    def default_sensor(self) -> SensorSpec:
        if self.config["modality"] == "s1":
            return SensorSpec(collection=S1_COLLECTION, bands=S1_BANDS, scale_m=10.0, composite="median",
                              modality="s1", use_float_linear=True)
        return SensorSpec(collection=DEFAULT_COLLECTION, bands=S2_BANDS, scale_m=10.0, composite="median",
                          modality="s2")

    def describe(self) -> ModelDescription:
        if self.config["modality"] == "s1":
            normalisation = {"formula": "clip(log1p(max(x, 0)) / p99, 0, 1)", "units": "linear backscatter (sigma0)",
                             "p99": "99th percentile of log1p(x) over the chip's valid pixels, VV and VH together",
                             "source": "rs-embed's Sentinel-1 adapter (the authors publish no S1 recipe)"}
        else:
            normalisation = {"formula": "clip(DN / 10000, 0, 1)", "units": "Sentinel-2 reflectance x 10000",
                             "patch_embedding": self.source,
                             "source": "rs-embed's TerraFM adapter; the authors publish no S2 recipe"}
        return self.description(
            normalisation,
            f"TerraFM-B (Danish et al. 2025), modality {self.config['modality']} through the {self.source} patch "
            f"embedding; {self.token_semantics}")

    def build(self) -> torch.nn.Module:
        from rsembed_db.models.terrafm_net import TerraFM

        v = self.variant
        return TerraFM(self.image_size, v.patch_size, v.dim, v.depth, v.heads)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        if state and all(k.startswith("module.") for k in state):
            state = {k.removeprefix("module."): t for k, t in state.items()}
        # The backbone's tensors; others (the DINO heads of pre-training) are not used.
        backbone = {k: t for k, t in state.items() if k.startswith(BACKBONE)}
        load_weights(module, backbone, path)

    def model_input(self, chip: Chip) -> ModelInput:
        self._check_chip(chip)
        data, valid = self.select_bands(chip)
        if data.ndim != 3:
            raise SpecError("frames", f"TerraFM takes one composite; the chip has {data.shape[0]} frames")
        if self.config["modality"] == "s1":
            x = s1_log_p99(data, valid)
            x[:, ~valid] = 0.0
            return ModelInput(x, valid)
        return standardised(data, valid, [0.0] * len(S2_BANDS), [1.0] * len(S2_BANDS), 1.0 / S2_SCALE, (0.0, 1.0))

    def _check_chip(self, chip: Chip) -> None:
        """SpecError naming the modality when the chip holds the other sensor's bands."""
        have = {normalise_band(b) for b in chip.bands}
        if not set(self.bands) <= have:
            other = "s2" if self.config["modality"] == "s1" else "s1"
            hint = f"; for {other} input pass modality={other!r}" if set(S1_BANDS if other == "s1" else S2_BANDS) \
                <= have else ""
            raise SpecError("modality", f"terrafm modality {self.config['modality']!r} takes {len(self.bands)} "
                            f"bands {list(self.bands)}; the chip has {len(chip.bands)}: {list(chip.bands)}{hint}",
                            MODALITIES)

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        tokens = model(x, self.source)
        if self.config["tokens"] == "cls":
            return tokens[:, 0, :, None, None]
        return patch_grid(tokens, 1, self.grid)
