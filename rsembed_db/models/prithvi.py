"""Prithvi-EO-2.0 (TL variants): a multi-temporal ViT for six HLS bands at 30 m.

Szwarcman et al. 2024, "Prithvi-EO-2.0: A Versatile Multi-Temporal Foundation Model for
Earth Observation Applications" (arXiv:2412.02732), IBM / NASA / Jülich. The
architecture is terratorch's ``PrithviViT`` (the encoder of ``PrithviMAE``) built with
the hyper-parameters of its ``prithvi_eo_v2_300_tl`` / ``prithvi_eo_v2_600_tl`` configs;
the weights are the MAE checkpoints published on the Hugging Face hub
(``ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL``, ``...-600M-TL``), of which the encoder
tensors are loaded (the 3D sin-cos position encoding is recomputed for ``num_frames``).

Input: the HLS bands BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2 (Sentinel-2 B02, B03,
B04, B8A, B11, B12) in reflectance x 10000, standardised with the means and standard
deviations of the models' ``config.json`` (terratorch ``PRITHVI_V2_MEAN/STD``).
``num_frames`` frames (1-4; pre-training used 4): the sources split the window into that
many bins (``sources.frames``) and the chip carries them as (T, C, H, W) data with
``meta["frame_dates"]`` (each frame's median acquisition date), the frames' time input;
one composite is one frame dated ``input_time``.
The TL models also take the acquisition date (year, day of year) per frame and the
chip centre (lat, lon); either can be switched off (``time``/``location`` False), as
their pre-training dropped them at random. Output: last-layer patch tokens (after the
final norm), CLS dropped, averaged over frames: (D, 14, 14) for 300M (patch 16) and
(D, 16, 16) for 600M (patch 14).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.chip_context import centre_lonlat, frame_dates
from rsembed_db.models.vit_tokens import frames_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import (
    ModelInput,
    ZooEmbedder,
    import_keeping_torch_settings,
    require_flag,
    require_int,
    standardised,
)
from rsembed_db.sources.base import Chip

HLS_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")  # BLUE GREEN RED NIR_NARROW SWIR_1 SWIR_2
HLS_MEAN = (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0)
HLS_STD = (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0)
MAE_DECODER = ("decoder", "mask_token", "pos_embed")


@dataclass(frozen=True)
class Variant:
    repo_id: str
    filename: str
    dim: int
    patch_size: int
    arch: dict[str, Any]  # PrithviViT embed_dim, depth, num_heads


VARIANTS: dict[str, Variant] = {
    "300m_tl": Variant("ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL", "Prithvi_EO_V2_300M_TL.pt", 1024, 16,
                       {"embed_dim": 1024, "depth": 24, "num_heads": 16}),
    "600m_tl": Variant("ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL", "Prithvi_EO_V2_600M_TL.pt", 1280, 14,
                       {"embed_dim": 1280, "depth": 32, "num_heads": 16}),
}


class _PrithviViT(Protocol):
    """What ``forward`` reads of terratorch's ``PrithviViT``."""

    def forward_features(self, x: torch.Tensor, temporal_coords: torch.Tensor | None = None,
                         location_coords: torch.Tensor | None = None) -> list[torch.Tensor]: ...


class PrithviEmbedder(ZooEmbedder):
    """Prithvi-EO-2.0 300M/600M TL on six HLS-equivalent Sentinel-2 bands at 30 m.

    Config: ``variant`` (``300m_tl``, ``600m_tl``), ``num_frames`` (1), ``time`` and
    ``location`` (True: feed the date and centre to the TL encoders), zoo options.
    """

    name = "prithvi"
    requires = ("terratorch", "huggingface_hub")
    options = ("variant", "num_frames", "time", "location")
    variants = VARIANTS
    default_variant = "300m_tl"
    image_size = 224
    input_bands = HLS_BANDS
    scale_m = 30.0

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"num_frames": require_int("num_frames", config.get("num_frames", 1), 1, 4),
                "time": require_flag("time", config.get("time", True)),
                "location": require_flag("location", config.get("location", True))}

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(self.variant.repo_id, self.variant.filename, "Apache-2.0 (Prithvi-EO-2.0 model card)")

    def describe(self) -> ModelDescription:
        cfg = self.config
        return self.description(
            {"mean": list(HLS_MEAN), "std": list(HLS_STD), "formula": "(DN - mean) / std",
             "units": "HLS surface reflectance x 10000",
             "source": "Prithvi-EO-2.0 config.json (terratorch PRITHVI_V2_MEAN/STD)",
             "side_inputs": {"time": "(year, day of year) per frame" if cfg["time"] else None,
                             "location": "(lat, lon) of the chip centre" if cfg["location"] else None}},
            f"Prithvi-EO-2.0 {cfg['variant'].upper()} (Szwarcman et al. 2024), "
            f"{cfg['num_frames']} frame(s); {self.token_semantics}, mean over frames",
            frames=cfg["num_frames"])

    def build(self) -> torch.nn.Module:
        PrithviViT = import_keeping_torch_settings("terratorch.models.backbones.prithvi_mae").PrithviViT  # noqa: N806

        v = self.variant
        return PrithviViT(img_size=self.image_size, patch_size=(1, v.patch_size, v.patch_size),
                          num_frames=self.config["num_frames"], in_chans=len(HLS_BANDS), mlp_ratio=4.0,
                          coords_encoding=["time", "location"], coords_scale_learn=True, **v.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        encoder = {k.removeprefix("encoder."): t for k, t in state.items() if not k.startswith("decoder.")}
        load_weights(module, encoder, path, may_miss=("pos_embed",), drop=MAE_DECODER)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        frames = self.config["num_frames"]
        if (data.shape[0] if data.ndim == 4 else 1) != frames:
            raise SpecError("num_frames", f"model configured for {frames} frame(s); the chip has "
                            f"{data.shape[0] if data.ndim == 4 else 1} (multi-frame chips are (T, C, H, W))")
        return standardised(data, valid, HLS_MEAN, HLS_STD)

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        dates = frame_dates(chip, self.config["num_frames"]) if self.config["time"] else None
        lon, lat = centre_lonlat(chip)
        return {"time": None if dates is None else [(d.year, d.timetuple().tm_yday) for d in dates],
                "location": (lat, lon) if self.config["location"] else None}

    def group_key(self, side: dict[str, Any]) -> tuple[bool, bool]:
        return side["time"] is None, side["location"] is None

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        frames, channels = self.config["num_frames"], len(HLS_BANDS)
        cube = x.reshape(len(x), frames, channels, *x.shape[-2:]).transpose(1, 2)  # (B, C, T, H, W)
        time = _stack([s["time"] for s in sides], x.device)
        location = _stack([s["location"] for s in sides], x.device)
        vit = cast(_PrithviViT, model)
        tokens = vit.forward_features(cube, temporal_coords=time, location_coords=location)[-1]
        return frames_grid(tokens, 1, frames, self.grid)


def _stack(values: list[Any], device: torch.device) -> torch.Tensor | None:
    """A float tensor of per-sample side inputs, or None when they are absent (one group)."""
    if values[0] is None:
        return None
    return torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)
