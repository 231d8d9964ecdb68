"""AnySat: one model for any resolution, scale and modality, on Sentinel-2 time series.

Astruc, Gonthier, Mallet, Landrieu 2025, "AnySat: One Earth Observation Model for Many
Resolutions, Scales, and Modalities" (arXiv:2412.14123, CVPR 2025). The encoder
(``models.anysat_encoder``) is written here from the paper and the authors' reference
(github.com/gastruc/AnySat, MIT); the weights are the published ``models/AnySat.pth``
of Hugging Face ``g-astruc/AnySat`` (AnySat-Base, the only size released).

Input: Sentinel-2 L2A B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12 (AnySat's ``s2``
order), ``num_frames`` frames (default 8), each with its day of year (0 = 1 January,
the README's convention) taken from the frame's date (``meta["frame_dates"]``, the
median acquisition date of the bin). Normalisation ``(x - mean) / std`` with the
Sentinel-2 statistics of the authors' demo notebook (``normalisation="dataset"``), or
rs-embed's per-tile z-score (``"per_tile"``). Patches of ``patch_size_m`` metres (a
positive multiple of 10; AnySat reads every input pixel as 10 m, so the chip's
``scale_m`` must be a positive multiple of 10 too). Output (``output``): ``patch`` (default)
the final patch tokens (D, n, n), ``dense`` each pixel's sub-patch token after its patch
token (2D, S, S), ``tile`` the final CLS token (D, 1, 1).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.anysat_encoder import S2_BANDS, S2_PIXEL_M, AnySatConfig, AnySatS2, dense_grid
from rsembed_db.models.base import FeatureMap, InputPrep, ModelDescription
from rsembed_db.models.chip_context import frame_dates
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, require_int
from rsembed_db.sources.base import Chip
from rsembed_db.specs.validate import require_choice

REPO, FILE = "g-astruc/AnySat", "models/AnySat.pth"
LICENCE = "MIT (code, github.com/gastruc/AnySat); the Hugging Face card's licence was not checked offline"
CITATION = ("Astruc G., Gonthier N., Mallet C., Landrieu L. (2025). AnySat: One Earth Observation Model for Many "
            "Resolutions, Scales, and Modalities. CVPR 2025; arXiv:2412.14123")
# The authors' demo notebook (demo.ipynb): MEAN_S2 / STD_S2, in AnySat's s2 band order.
S2_MEAN = (4304.32958984375, 4159.2666015625, 4057.776611328125, 4328.951171875, 4571.22119140625,
           4644.87109375, 4837.2470703125, 4700.2578125, 2823.264404296875, 2319.97021484375)
S2_STD = (3537.99755859375, 3324.23486328125, 3270.070068359375, 3250.530029296875, 2897.391357421875,
          2754.4970703125, 2821.521484375, 2625.952392578125, 1731.56298828125, 1549.3028564453125)
OUTPUTS = ("patch", "dense", "tile")
NORMALISATIONS = ("dataset", "per_tile")


@dataclass(frozen=True)
class Variant:
    dim: int
    patch_size: int  # pixels per patch side at the default patch_size_m (10 m)
    arch: AnySatConfig


VARIANTS: dict[str, Variant] = {"base": Variant(768, 1, AnySatConfig(dim=768, depth=6, heads=12))}


def day_of_year(day: dt.date) -> int:
    """0 for 1 January (AnySat's convention)."""
    return day.timetuple().tm_yday - 1


class AnySatEmbedder(ZooEmbedder):
    """AnySat-Base on Sentinel-2 time series with per-frame day of year.

    Config: ``num_frames`` (8; 1-64), ``image_size`` (24 px), ``patch_size_m`` (10; a
    multiple of 10 dividing ``image_size`` x 10), ``output`` (``patch``, ``dense``,
    ``tile``), ``normalisation`` (``dataset``, ``per_tile``), zoo options.
    """

    name = "anysat"
    options = ("variant", "num_frames", "image_size", "patch_size_m", "output", "normalisation")
    variants = VARIANTS
    default_variant = "base"
    input_bands = S2_BANDS

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        patch_m = require_int("patch_size_m", config.get("patch_size_m", 10), S2_PIXEL_M)
        if patch_m % S2_PIXEL_M:
            raise SpecError("patch_size_m", f"must be a positive multiple of 10 m, got {patch_m}")
        size = require_int("image_size", config.get("image_size", 24), patch_m // S2_PIXEL_M)
        if size % (patch_m // S2_PIXEL_M):
            raise SpecError("image_size", f"must be a multiple of patch_size_m / 10 = {patch_m // S2_PIXEL_M} "
                            f"pixels, got {size}")
        output, normalisation = config.get("output", "patch"), config.get("normalisation", "dataset")
        require_choice("output", output, OUTPUTS)
        require_choice("normalisation", normalisation, NORMALISATIONS)
        return {"num_frames": require_int("num_frames", config.get("num_frames", 8), 1, 64), "image_size": size,
                "patch_size_m": patch_m, "output": output, "normalisation": normalisation}

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.config["image_size"]

    @property
    def patch_size(self) -> int:
        """Pixels per patch side."""
        return self.config["patch_size_m"] // S2_PIXEL_M

    @property
    def grid(self) -> tuple[int, int]:
        side = {"patch": self.image_size // self.patch_size, "dense": self.image_size, "tile": 1}[self.config["output"]]
        return side, side

    @property
    def token_semantics(self) -> str:  # type: ignore[override]
        return {"patch": "final patch tokens (AnySat output='patch')",
                "dense": "per pixel its sub-patch token after its patch's final token (AnySat output='dense')",
                "tile": "the final CLS token, one cell per model input (AnySat output='tile')"}[self.config["output"]]

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(REPO, FILE, LICENCE)

    def describe(self) -> ModelDescription:
        cfg = self.config
        normalisation: dict[str, Any] = ({"mean": list(S2_MEAN), "std": list(S2_STD), "formula": "(DN - mean) / std",
                          "source": "AnySat demo notebook MEAN_S2 / STD_S2"} if cfg["normalisation"] == "dataset" else
                         {"formula": "(DN - tile mean) / tile std per band, over the chip's frames and valid pixels",
                          "source": "rs-embed's default (RS_EMBED_ANYSAT_NORM=per_tile_zscore)"})
        normalisation.update(units="Sentinel-2 L2A reflectance x 10000", invalid_pixels="0 after normalisation",
                             side_inputs={"day_of_year": "per frame, 0 = 1 January, from meta frame_dates"},
                             pixel_m="every input pixel is read as 10 m (AnySat's s2 resolution)")
        description = self.description(
            normalisation,
            f"AnySat-Base (Astruc et al. 2025) on {cfg['num_frames']} Sentinel-2 frame(s), {cfg['image_size']} px, "
            f"{cfg['patch_size_m']} m patches; {self.token_semantics}",
            frames=cfg["num_frames"], citation=CITATION)
        dim = 2 * self.variant.dim if cfg["output"] == "dense" else self.variant.dim
        return dataclasses.replace(description, dim=dim, patch_size=self.patch_size)

    def build(self) -> torch.nn.Module:
        return AnySatS2(self.variant.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        # The checkpoint holds a projector per modality; Sentinel-2 uses projector_s2 only.
        kept = {k: t for k, t in state.items() if not k.startswith("projector_") or k.startswith("projector_s2.")}
        load_weights(module, kept, path)

    def model_input(self, chip: Chip) -> ModelInput:
        scale = chip.grid.scale_m
        if not scale > 0 or scale % S2_PIXEL_M:
            raise SpecError("scale_m", f"anysat reads Sentinel-2 pixels as 10 m: the chip's scale_m must be a "
                            f"positive multiple of 10, got {scale:g}")
        data, valid = self.select_bands(chip)
        frames = self.config["num_frames"]
        data = data[None] if data.ndim == 3 else data
        if data.shape[0] != frames:
            raise SpecError("num_frames", f"anysat is configured for {frames} frame(s); the chip has "
                            f"{data.shape[0]} (multi-frame chips are (T, C, H, W))")
        if self.config["normalisation"] == "dataset":
            mean, std = np.asarray(S2_MEAN, np.float32), np.asarray(S2_STD, np.float32)
        else:
            pixels = data[:, :, valid] if valid.any() else data.reshape(*data.shape[:2], -1)
            mean = pixels.mean(axis=(0, 2)).astype(np.float32)
            std = pixels.std(axis=(0, 2)).astype(np.float32)
            std[std == 0] = 1.0
        x = (data - mean[:, None, None]) / std[:, None, None]
        x = np.where(valid, x, 0.0).astype(np.float32)
        return ModelInput(x.reshape(-1, *x.shape[-2:]), valid)

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        dates = frame_dates(chip, self.config["num_frames"])
        if dates is None:
            raise SpecError("frame_dates", f"anysat needs the date of each of the {self.config['num_frames']} "
                            "frames (meta frame_dates; multi-frame chips come from sources.fetch(..., frames=T))")
        return {"doy": [day_of_year(d) for d in dates]}

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        s2 = x.reshape(len(x), self.config["num_frames"], len(S2_BANDS), *x.shape[-2:])
        doy = torch.tensor([s["doy"] for s in sides], dtype=torch.float32, device=x.device)
        tokens, subs = model(s2, doy, self.patch_size)
        output = self.config["output"]
        if output == "dense":
            return dense_grid(tokens, subs)
        if output == "tile":
            return tokens[:, 0, :, None, None]
        n = self.image_size // self.patch_size
        return tokens[:, 1:].transpose(1, 2).reshape(len(x), -1, n, n)

    def embed_prepared(self, chips: list[Chip], preps: list[InputPrep]) -> list[FeatureMap]:
        maps = super().embed_prepared(chips, preps)
        for chip, fmap in zip(chips, maps):
            fmap.meta.update(doy0_values=self.side_inputs(chip, {})["doy"], output=self.config["output"],
                             normalisation=self.config["normalisation"], patch_size_m=self.config["patch_size_m"])
        return maps
