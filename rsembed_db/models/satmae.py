"""SatMAE: masked-autoencoder ViTs pre-trained on fMoW RGB, fMoW-Sentinel and fMoW-Temporal.

Cong et al. 2022, "SatMAE: Pre-training Transformers for Temporal and Multi-Spectral
Satellite Imagery", NeurIPS (github.com/sustainlab-group/SatMAE). Three families of the
authors' pre-training checkpoints, chosen by ``variant``:

- ``vit_large_patch16`` (default): fMoW-RGB ViT-L/16 (``fmow_pretrain.pth``, Zenodo record
  7369797, the file terratorch's ``satmae_mae_vit_large_patch16`` entry downloads). Its
  encoder has timm's ViT layout and loads into ``vit_large_patch16_224`` once the decoder
  tensors are dropped. Input: Sentinel-2 B04, B03, B02 scaled to [0, 1] by ``rgb_max``,
  then the fMoW RGB statistics (``util/datasets.py`` ``CustomDatasetFromImages``). Output:
  the 14 x 14 last-layer patch tokens, CLS dropped; D = 1024.
- ``multispectral_vit_base`` / ``multispectral_vit_large``: the group-channel ViT-B/L
  pre-trained on fMoW-Sentinel (``pretrain-vit-{base,large}-e199.pth``, Zenodo 7338613),
  image 96, patch 8. Ten Sentinel-2 L1C bands B02 B03 B04 B05 B06 B07 B08 B8A B11 B12
  (fMoW-Sentinel without B01, B09, B10) in groups (B02 B03 B04 B08), (B05 B06 B07 B8A),
  (B11 B12); each band scaled as ``SentinelNormalize`` does: clip((DN - (mean - 2 std)) /
  (4 std) * 255, 0, 255), truncated to an integer, / 255. Output: 12 x 12 patch tokens
  averaged over the three groups; D = 768 / 1024.
- ``temporal_vit_large``: the fMoW-Temporal ViT-L/16 (``pretrain_fmow_temporal.pth``,
  Zenodo 7369797) on three RGB frames (chips (3, C, H, W) with ``meta["frame_dates"]``),
  each with its timestamp (year - 2002, month - 1, UTC hour); RGB as the default variant.
  Output: 14 x 14 patch tokens averaged over the three frames; D = 1024.

No variant is on the Hugging Face hub under the authors' name: put the file in
``weights_dir``. The multi-spectral and temporal encoders are ``satmae_encoders``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.chip_context import centre_lonlat, frame_dates
from rsembed_db.models.vit_tokens import frames_grid, vit_patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import RGB, ModelInput, ZooEmbedder, rgb_max, rgb_normalisation, standardised
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec

FMOW_MEAN = (0.4182007312774658, 0.4214799106121063, 0.3991275727748871)
FMOW_STD = (0.28774282336235046, 0.27541765570640564, 0.2764017581939697)
LICENCE = "not stated for the weights; SatMAE code is CC BY-NC 4.0 (see docs/models/satmae.md)"
WEIGHTS = WeightSource("fmow_pretrain.pth", "https://zenodo.org/record/7369797/files/fmow_pretrain.pth",
                       "not stated; see the SatMAE repository and Zenodo record 7369797",
                       revision="zenodo-7369797")
MAE_DECODER = ("decoder", "mask_token")
CITATION = ("Cong Y., Khanna S., Meng C., Liu P., Rozi E., He Y., Burke M., Lobell D.B., Ermon S., "
            "\"SatMAE: Pre-training Transformers for Temporal and Multi-Spectral Satellite Imagery\", "
            "NeurIPS 2022 (arXiv:2207.08051)")

# fMoW-Sentinel statistics (util/datasets.py SentinelNormalize) of the ten bands the model sees.
SENTINEL_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
SENTINEL_MEAN = (1184.3824625, 1120.77120066, 1136.26026392, 1263.73947144, 1645.40315151, 1846.87040806,
                 1762.59530783, 1972.62420416, 1732.16362238, 1247.91870117)
SENTINEL_STD = (650.2842772, 712.12507725, 965.23119807, 948.9819932, 1108.06650639, 1258.36394548,
                1233.1492281, 1364.38688993, 1310.36996126, 1087.6020813)
CHANNEL_GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))  # (B02 B03 B04 B08) (B05 B06 B07 B8A) (B11 B12)
L1C_COLLECTION = "COPERNICUS/S2_HARMONIZED"
TEMPORAL_FRAMES = 3
MIN_YEAR = 2002  # fMoW-Temporal timestamps count years from 2002
OVERPASS_LOCAL_HOUR = 10.5  # Sentinel-2's descending node: 10:30 local solar time


def _zenodo(record: str, filename: str) -> WeightSource:
    return WeightSource(filename, f"https://zenodo.org/record/{record}/files/{filename}", LICENCE,
                        revision=f"zenodo-{record}")


@dataclass(frozen=True)
class Variant:
    timm_name: str | None  # rgb: timm's ViT; None: an encoder of ``satmae_encoders``
    dim: int
    patch_size: int
    arch: dict[str, Any] = field(default_factory=dict)  # timm overrides, or depth / num_heads
    kind: str = "rgb"  # "rgb", "multispectral" or "temporal"
    image_size: int = 224
    weights: WeightSource = WEIGHTS


VARIANTS: dict[str, Variant] = {
    "vit_large_patch16": Variant("vit_large_patch16_224", 1024, 16),
    "multispectral_vit_base": Variant(None, 768, 8, {"depth": 12, "num_heads": 12}, "multispectral", 96,
                                      _zenodo("7338613", "pretrain-vit-base-e199.pth")),
    "multispectral_vit_large": Variant(None, 1024, 8, {"depth": 24, "num_heads": 16}, "multispectral", 96,
                                       _zenodo("7338613", "pretrain-vit-large-e199.pth")),
    "temporal_vit_large": Variant(None, 1024, 16, {"depth": 24, "num_heads": 16}, "temporal", 224,
                                  _zenodo("7369797", "pretrain_fmow_temporal.pth")),
}


def sentinel_normalise(data: np.ndarray, valid: np.ndarray) -> ModelInput:
    """SatMAE's ``SentinelNormalize`` on (C, H, W) DN of ``SENTINEL_BANDS``: [0, 1] in steps of
    1/255; invalid pixels take the value of the band mean (127/255)."""
    shape = (-1, 1, 1)
    mean, std = np.asarray(SENTINEL_MEAN, np.float32).reshape(shape), np.asarray(SENTINEL_STD, np.float32).reshape(shape)
    scaled = np.clip((data - (mean - 2 * std)) / (4 * std) * 255.0, 0.0, 255.0)
    x = np.floor(scaled).astype(np.float32) / 255.0
    x[:, ~valid] = np.float32(127.0 / 255.0)
    return ModelInput(x, valid)


class SatMaeEmbedder(ZooEmbedder):
    """SatMAE on Sentinel-2: fMoW-RGB ViT-L/16 (default), multi-spectral group-channel
    ViT-B/L (``multispectral_vit_base`` / ``_large``) or three-frame temporal ViT-L/16
    (``temporal_vit_large``).

    Config: ``variant``, ``rgb_max`` (10000; RGB and temporal variants), plus the zoo
    options (``models.zoo``). The weights are not on the Hugging Face hub: put the
    variant's file in ``weights_dir``.
    """

    name = "satmae"
    citation = CITATION
    requires = ("timm",)
    options = ("variant", "rgb_max")
    variants = VARIANTS
    default_variant = "vit_large_patch16"

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        if self.variant.kind == "multispectral":
            if "rgb_max" in config:
                raise SpecError("rgb_max", "applies to the RGB and temporal variants only; the multi-spectral "
                                "variants scale each band with the fMoW-Sentinel statistics")
            return {}
        return {"rgb_max": rgb_max(config.get("rgb_max", 10000.0))}

    @property
    def kind(self) -> str:
        return str(self.variant.kind)

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return int(self.variant.image_size)

    @property
    def bands(self) -> tuple[str, ...]:
        return SENTINEL_BANDS if self.kind == "multispectral" else RGB

    @property
    def frames(self) -> int:
        return TEMPORAL_FRAMES if self.kind == "temporal" else 1

    def published_weights(self) -> WeightSource:
        return self.variant.weights

    def default_sensor(self) -> SensorSpec:
        if self.kind == "multispectral":  # fMoW-Sentinel is top-of-atmosphere (L1C, with B10)
            return SensorSpec(collection=L1C_COLLECTION, bands=self.bands, scale_m=self.scale_m, composite="median")
        return super().default_sensor()

    def describe(self) -> ModelDescription:
        variant = self.config["variant"]
        if self.kind == "multispectral":
            normalisation = {
                "bands": list(SENTINEL_BANDS), "mean": list(SENTINEL_MEAN), "std": list(SENTINEL_STD),
                "formula": "floor(clip((DN - (mean - 2 std)) / (4 std) * 255, 0, 255)) / 255",
                "units": "Sentinel-2 L1C top-of-atmosphere reflectance x 10000",
                "channel_groups": [[SENTINEL_BANDS[i] for i in g] for g in CHANNEL_GROUPS],
                "source": "SatMAE util/datasets.py SentinelNormalize (fMoW-Sentinel, bands B1 B9 B10 dropped)"}
            summary = (f"SatMAE {variant} (Cong et al. 2022), fMoW-Sentinel group-channel MAE pre-training; "
                       "patch tokens of the last layer, CLS dropped, mean over the 3 channel groups")
        else:
            normalisation = rgb_normalisation(self.config["rgb_max"], FMOW_MEAN, FMOW_STD,
                                              "SatMAE util/datasets.py CustomDatasetFromImages (fMoW RGB)")
            summary = f"SatMAE {variant} (Cong et al. 2022), fMoW-RGB MAE pre-training; {self.token_semantics}"
            if self.kind == "temporal":
                normalisation["side_inputs"] = {"timestamps": "(year - 2002, month 0-11, UTC hour of the 10:30 "
                                                "local-solar-time overpass at the chip centre) per frame"}
                summary = (f"SatMAE {variant} (Cong et al. 2022), fMoW-Temporal MAE pre-training on "
                           f"{TEMPORAL_FRAMES} frames; {self.token_semantics}, mean over frames")
        return self.description(normalisation, summary, frames=self.frames, tiled_grid_seams=True)

    def build(self) -> torch.nn.Module:
        from rsembed_db.models.satmae_encoders import GroupChannelEncoder, TemporalEncoder

        v = self.variant
        if self.kind == "multispectral":
            return GroupChannelEncoder(self.image_size, v.patch_size, CHANNEL_GROUPS, v.dim, **v.arch)
        if self.kind == "temporal":
            return TemporalEncoder(self.image_size, v.patch_size, len(RGB), v.dim, **v.arch)
        import timm

        return timm.create_model(v.timm_name, pretrained=False, num_classes=0, global_pool="token",
                                 img_size=self.image_size, **v.arch)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, state, path, drop=MAE_DECODER)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        frames = data.shape[0] if data.ndim == 4 else 1
        if frames != self.frames:
            raise SpecError("frames", f"SatMAE {self.config['variant']} takes {self.frames} frame(s); the chip has "
                            f"{frames} (multi-frame chips are (T, C, H, W))")
        if self.kind == "multispectral":
            return sentinel_normalise(data, valid)
        return standardised(data, valid, FMOW_MEAN, FMOW_STD, 1.0 / self.config["rgb_max"], (0.0, 1.0))

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        if self.kind != "temporal":
            return {}
        dates = frame_dates(chip, self.frames)
        if dates is None:
            raise SpecError("frame_dates", f"SatMAE {self.config['variant']} needs the date of each of its "
                            f"{self.frames} frames (chip meta frame_dates), got {chip.meta.get('frame_dates')!r}")
        lon, _ = centre_lonlat(chip)
        hour = int((OVERPASS_LOCAL_HOUR - lon / 15.0) % 24)
        return {"timestamps": [(d.year - MIN_YEAR, d.month - 1, hour) for d in dates]}

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        if self.kind == "multispectral":
            return frames_grid(model(x), 1, len(CHANNEL_GROUPS), self.grid)
        if self.kind == "temporal":
            frames = x.reshape(len(x), self.frames, len(RGB), *x.shape[-2:])
            stamps = torch.as_tensor([s["timestamps"] for s in sides], dtype=torch.float32, device=x.device)
            return frames_grid(model(frames, stamps), 1, self.frames, self.grid)
        return vit_patch_grid(model, x, self.grid)
