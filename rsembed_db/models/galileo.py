"""Galileo: a multi-modal, multi-temporal remote-sensing encoder, on Sentinel-2 time series.

Tseng, Fuller, Reil, Herzog, Beukema, Bastani, Green, Shelhamer, Kerner, Rolnick 2025,
"Galileo: Learning Global and Local Features in Pretrained Remote Sensing Models"
(arXiv:2502.09356, ICML 2025). The encoder (``models.galileo_encoder``) is written here
from the paper and the authors' reference (github.com/nasaharvest/galileo, MIT); the
weights are the published ``models/<size>/encoder.pt`` of Hugging Face
``nasaharvest/galileo`` (nano, tiny, base).

Input: Sentinel-2 L2A bands B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12 at 10 m,
``num_frames`` frames (default 12: monthly over a year, the pre-training's cadence),
each normalised as in pre-training (``Normalizer(std=True, std_multiplier=2)`` with
``config/normalization.json``): ``x' = (x - (mean - 2 std)) / (4 std)``. Each frame's
month (0 = January) is the month of its frame bin's midpoint; the 2-D position encoding
is scaled by the model pixel's ground size (``input_resolution_m``). All other input
groups (Sentinel-1, NDVI, space, time and static families) are masked, as the reference
``construct_galileo_input(s2=...)`` does. Output: per patch the mean of its T x 5
Sentinel-2 group tokens after the final norm (the reference's
``apply_mask_and_average_tokens_per_patch``); their mean over patches is the reference's
``average_tokens``. Default 64 x 64 px, patch 8 -> an (D, 8, 8) grid.

rs-embed feeds raw DN by default (``RS_EMBED_GALILEO_NORM=none``); this follows the
authors (``normalisation="pretraining"``) and keeps ``"none"`` for parity with rs-embed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import FeatureMap, InputPrep, ModelDescription
from rsembed_db.models.chip_context import model_gsd
from rsembed_db.models.galileo_encoder import S2_BANDS, GalileoConfig, GalileoEncoder, normalisation_constants
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, require_int
from rsembed_db.sources.base import Chip
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.specs.validate import require_choice

REPO = "nasaharvest/galileo"
LICENCE = "MIT (github.com/nasaharvest/galileo; the Hugging Face card's licence was not checked offline)"
CITATION = ("Tseng G., Fuller A., Reil M., Herzog H., Beukema P., Bastani F., Green J. R., Shelhamer E., "
            "Kerner H., Rolnick D. (2025). Galileo: Learning Global and Local Features in Pretrained Remote "
            "Sensing Models. ICML 2025; arXiv:2502.09356")
# config/normalization.json "13" (space-time bands), the Sentinel-2 entries.
S2_MEAN = dict(zip(S2_BANDS, (1395.3408730676722, 1338.4026921784578, 1343.09883810357, 1543.8607982512297,
                              2186.2022069512263, 2525.0932853316694, 2410.3377187373408, 2750.2854646886753,
                              2234.911100061487, 1474.5311266077113)))
S2_STD = dict(zip(S2_BANDS, (917.7041440370853, 913.2988423581528, 1092.678723527555, 1047.2206083460424,
                             1048.0101611156767, 1143.6903026819996, 1098.979177731649, 1204.472755085893,
                             1145.9774063078878, 980.2429840007796)))
NORMALISATIONS = ("pretraining", "none")


@dataclass(frozen=True)
class Variant:
    dim: int
    patch_size: int  # the largest patch (the projections' kernel); smaller ones are resized
    arch: GalileoConfig


VARIANTS: dict[str, Variant] = {
    "nano": Variant(128, 8, GalileoConfig(128, depth=4, num_heads=8)),
    "tiny": Variant(192, 8, GalileoConfig(192, depth=12, num_heads=3)),
    "base": Variant(768, 8, GalileoConfig(768, depth=12, num_heads=12)),
}


def frame_months(chip: Chip, frames: int) -> list[int]:
    """Month (0 = January) of each frame: its bin's midpoint (``meta["frame_bins"]``), else
    its ``frame_dates``; a single composite takes the window midpoint (``input_time``)."""
    meta = chip.meta
    if frames == 1 and meta.get("input_time"):
        return [dt.date.fromisoformat(str(meta["input_time"])[:10]).month - 1]
    if meta.get("frame_bins") and len(meta["frame_bins"]) == frames:
        return [TemporalSpec.range(a, b).midpoint.month - 1 for a, b in meta["frame_bins"]]
    if meta.get("frame_dates") and len(meta["frame_dates"]) == frames:
        return [dt.date.fromisoformat(str(d)[:10]).month - 1 for d in meta["frame_dates"]]
    raise SpecError("frame_bins", f"galileo needs the time of each of the {frames} frames: the chip has no "
                    "frame_bins / frame_dates (multi-frame chips come from sources.fetch(..., frames=T))")


class GalileoEmbedder(ZooEmbedder):
    """Galileo nano/tiny/base on Sentinel-2 time series with per-frame months.

    Config: ``variant`` (``nano``), ``num_frames`` (12; 1-24), ``patch_size`` (8; 1-8),
    ``image_size`` (64; a multiple of ``patch_size``), ``normalisation`` (``pretraining``
    or ``none``), zoo options.
    """

    name = "galileo"
    options = ("variant", "num_frames", "patch_size", "image_size", "normalisation")
    variants = VARIANTS
    default_variant = "nano"
    input_bands = S2_BANDS
    token_semantics = ("per patch, the mean of its T x 5 Sentinel-2 group tokens after the final norm "
                       "(Galileo's apply_mask_and_average_tokens_per_patch)")

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        patch = require_int("patch_size", config.get("patch_size", 8), 1, 8)
        size = require_int("image_size", config.get("image_size", 64), patch)
        if size % patch:
            raise SpecError("image_size", f"must be a multiple of patch_size {patch}, got {size}")
        normalisation = config.get("normalisation", "pretraining")
        require_choice("normalisation", normalisation, NORMALISATIONS)
        return {"num_frames": require_int("num_frames", config.get("num_frames", 12), 1, 24),
                "patch_size": patch, "image_size": size, "normalisation": normalisation}

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.config["image_size"]

    @property
    def patch_size(self) -> int:
        return self.config["patch_size"]

    def published_weights(self) -> WeightSource:
        variant = self.config["variant"]
        return WeightSource.hub(REPO, f"models/{variant}/encoder.pt", LICENCE,
                                local_name=f"galileo_{variant}_encoder.pt")

    def describe(self) -> ModelDescription:
        cfg = self.config
        normalisation: dict[str, Any]
        normalisation = ({"shift": "mean - 2 std", "divisor": "4 std", "formula": "(DN - (mean - 2 std)) / (4 std)",
                          "mean": [S2_MEAN[b] for b in S2_BANDS], "std": [S2_STD[b] for b in S2_BANDS],
                          "source": "nasaharvest/galileo config/normalization.json, Normalizer(std=True, "
                                    "std_multiplier=2), as in pre-training"}
                         if cfg["normalisation"] == "pretraining" else
                         {"formula": "DN as stored (rs-embed's default RS_EMBED_GALILEO_NORM=none)"})
        normalisation.update(units="Sentinel-2 L2A reflectance x 10000",
                             invalid_pixels="the band mean after normalisation",
                             side_inputs={"months": "month (0 = January) of each frame bin's midpoint",
                                          "input_resolution_m": "metres per model pixel (chip scale x resize)"},
                             masked_groups="S1, NDVI, space, time and static families")
        description = self.description(
            normalisation,
            f"Galileo {cfg['variant']} (Tseng et al. 2025) on {cfg['num_frames']} Sentinel-2 frame(s), "
            f"{cfg['image_size']} px, patch {cfg['patch_size']}; {self.token_semantics}",
            frames=cfg["num_frames"], citation=CITATION)
        return dataclasses.replace(description, patch_size=cfg["patch_size"])

    def build(self) -> torch.nn.Module:
        return GalileoEncoder(self.variant.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        # Some published encoders carry an extra ".backbone" in their key names.
        load_weights(module, {k.replace(".backbone", ""): t for k, t in state.items()}, path)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        frames = self.config["num_frames"]
        data = data[None] if data.ndim == 3 else data
        if data.shape[0] != frames:
            raise SpecError("num_frames", f"galileo is configured for {frames} frame(s); the chip has "
                            f"{data.shape[0]} (multi-frame chips are (T, C, H, W))")
        if self.config["normalisation"] == "pretraining":
            shift, div = normalisation_constants(S2_BANDS, S2_MEAN, S2_STD)
        else:
            shift, div = np.zeros(len(S2_BANDS), np.float32), np.ones(len(S2_BANDS), np.float32)
        mean = (np.array([S2_MEAN[b] for b in S2_BANDS], np.float32) - shift) / div
        x = (data - shift[:, None, None]) / div[:, None, None]
        x = np.where(valid, x, mean[:, None, None]).astype(np.float32)
        return ModelInput(x.reshape(-1, *x.shape[-2:]), valid)

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        return {"months": frame_months(chip, self.config["num_frames"]), "input_resolution_m": model_gsd(chip, prep)}

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        frames = self.config["num_frames"]
        s2 = x.reshape(len(x), frames, len(S2_BANDS), *x.shape[-2:])
        months = torch.tensor([s["months"] for s in sides], dtype=torch.long, device=x.device)
        res = torch.tensor([s["input_resolution_m"] for s in sides], dtype=torch.float32, device=x.device)
        tokens = cast(GalileoEncoder, model).encode_s2(s2, months, self.patch_size, res)      # (B, h, w, T*5, D)
        return tokens.mean(dim=3).permute(0, 3, 1, 2)

    def embed_prepared(self, chips: list[Chip], preps: list[InputPrep]) -> list[FeatureMap]:
        maps = super().embed_prepared(chips, preps)
        for chip, fmap in zip(chips, maps):
            side = self.side_inputs(chip, fmap.meta["input_prep"])
            fmap.meta.update(month_indices=side["months"], input_resolution_m=side["input_resolution_m"],
                             normalisation=self.config["normalisation"], frames=self.config["num_frames"])
        return maps
