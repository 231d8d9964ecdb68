"""THOR 1.0: a multi-sensor ViT whose spectral groups stay separate, on Sentinel-2 or Sentinel-1.

Forgaard et al. 2026, "THOR: A Versatile Foundation Model for Earth Observation Climate
and Society Applications" (arXiv:2601.16011; github.com/FM4CS/THOR, MIT; TerraTorch
extension FM4CS/thor_terratorch_ext, Apache-2.0). No package publishes it for this
torch, so the encoder is written in this project (``models.thor_net``); the weights are
``thor_v1_vit_<size>.pt`` of the Hugging Face repositories ``FM4CS/THOR-1.0-<size>``,
whose ``encoder.*`` tensors are loaded.

Input (``modality``):
- ``s2`` (default): Sentinel-2 L2A reflectance (THOR pre-trained on S2MSI2A), by default all
  twelve bands THOR takes (``bands`` picks a subset), in THOR's spectral groups: 10 m
  (B02 B03 B04 B08), 20 m (B05 B06 B07 B8A B11 B12), 60 m (B01 B09);
  ``clamp((DN / 10000 - mean) / std, -5, 5)`` with THOR's pre-training statistics.
- ``s1``: Sentinel-1 IW VV, VH backscatter in **dB** (``COPERNICUS/S1_GRD``), one group,
  ``clamp((dB - mean) / std, -5, 5)`` with THOR's IW 10 m statistics.
The chip is resized (or tiled) to 288 px, a 2880 m ground cover at 10 m; each band is
resampled to its own GSD inside the model; patch 8. Output: the last block's tokens (no
final norm, as THOR's encoder wrapper returns them), one (D, n, n) map per group, each
upsampled (bilinear) to the finest group's 36 x 36 grid, then merged by ``group_merge``:
``concat`` (default; the groups stay separate in the channel dimension, D x groups),
``mean`` or ``sum`` (D; the rs-embed reference library's default is ``mean``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import DEFAULT_COLLECTION, ModelInput, ZooEmbedder, require_bands
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.validate import require_choice

if TYPE_CHECKING:
    from rsembed_db.models.thor_net import ThorEncoder

MODALITIES = ("s2", "s1")
MERGES = ("concat", "mean", "sum")
GROUND_COVER = 2880  # metres: 288 px at 10 m, THOR's default ground cover
S1_COLLECTION = "COPERNICUS/S1_GRD"  # decibels
# Rsembed band -> (THOR channel, patch-embedding name, GSD m, group, THOR group index,
# mean, std): thor/data/thor_dataset_base.py NORMALIZATION (S2 in reflectance, S1 IW 10 m in dB).
THOR_BANDS: dict[str, tuple[str, str, int, str, int, float, float]] = {
    "B02": ("S2:Blue", "S2:Blue", 10, "group0", 0, 0.176620, 0.264520),
    "B03": ("S2:Green", "S2:Green", 10, "group0", 0, 0.195923, 0.252949),
    "B04": ("S2:Red", "S2:Red", 10, "group0", 0, 0.213948, 0.259180),
    "B08": ("S2:NIR", "S2:NIR", 10, "group0", 0, 0.308133, 0.226434),
    "B05": ("S2:RE1", "S2:RE1", 20, "group1", 1, 0.263378, 0.272771),
    "B06": ("S2:RE2", "S2:RE2", 20, "group1", 1, 0.300818, 0.248175),
    "B07": ("S2:RE3", "S2:RE3", 20, "group1", 1, 0.313144, 0.235432),
    "B8A": ("S2:RE4", "S2:RE4", 20, "group1", 1, 0.320993, 0.223274),
    "B11": ("S2:SWIR1", "S2:SWIR1", 20, "group1", 1, 0.221550, 0.171606),
    "B12": ("S2:SWIR2", "S2:SWIR2", 20, "group1", 1, 0.175772, 0.156223),
    "B01": ("S2:CoastAerosal", "S2:CoastAerosal", 60, "group2", 2, 0.182569, 0.282463),
    "B09": ("S2:WaterVapor", "S2:WaterVapor", 60, "group2", 2, 0.322589, 0.235857),
    "VV": ("S1:IW-VV", "S1:VV", 10, "group3", 3, -12.9850, 5.0062),
    "VH": ("S1:IW-VH", "S1:VH", 10, "group3", 3, -20.6958, 5.8688),
}
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S1_BANDS = ("VV", "VH")
S2_SCALE = 10000.0
CLAMP = 5.0  # THOR clamps standardised inputs to +-5 sigma
ENCODER = "encoder."
IGNORED = ("decoder_", "decode_", "ref_pos_embed", "pos_embed")  # THOR's loader skips these
COMPUTED = ("band_embed.", "encoder_slopes")  # fixed sin-cos table and ALiBi slopes
CITATION = ("Forgaard, T., Reksten, J. H., Waldeland, A. U., Marsocci, V., Longépé, N., Kampffmeyer, M., "
            "Salberg, A.-B. (2026). THOR: A Versatile Foundation Model for Earth Observation Climate and Society "
            "Applications. arXiv:2601.16011")


@dataclass(frozen=True)
class Variant:
    dim: int
    patch_size: int
    depth: int
    heads: int
    band_dim: int  # width of the group embedding

    def files(self, size: str) -> tuple[str, str]:
        return f"FM4CS/THOR-1.0-{size}", f"thor_v1_vit_{size}.pt"


VARIANTS: dict[str, Variant] = {
    "tiny": Variant(192, 8, 12, 3, 32),
    "small": Variant(384, 8, 12, 6, 64),
    "base": Variant(768, 8, 12, 12, 128),
    "large": Variant(1024, 8, 24, 16, 256),
}


def _groups(bands: tuple[str, ...]) -> list[tuple[int, str, int]]:
    """(THOR group index, group, GSD) of ``bands``, in sequence order."""
    return sorted({(THOR_BANDS[b][4], THOR_BANDS[b][3], THOR_BANDS[b][2]) for b in bands})


class ThorEmbedder(ZooEmbedder):
    """THOR 1.0 tiny/small/base/large on Sentinel-2 (12 bands, 3 groups) or Sentinel-1 (VV, VH).

    Config: ``variant`` (``base``), ``modality`` (``s2``, ``s1``), ``bands`` (``s2``: any of
    the twelve), ``group_merge`` (``concat``, ``mean``, ``sum``), zoo options.
    """

    name = "thor"
    requires = ("timm", "huggingface_hub")
    options = ("variant", "modality", "bands", "group_merge")
    variants = VARIANTS
    default_variant = "base"
    image_size = GROUND_COVER // 10
    modalities = MODALITIES
    citation = CITATION

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        modality, merge = config.get("modality", "s2"), config.get("group_merge", "concat")
        require_choice("modality", modality, MODALITIES)
        require_choice("group_merge", merge, MERGES)
        if modality == "s1":
            if "bands" in config:
                raise SpecError("bands", "applies to modality 's2' only; s1 takes VV and VH")
            return {"modality": modality, "group_merge": merge}
        return {"modality": modality, "bands": require_bands(config.get("bands", S2_BANDS), S2_BANDS),
                "group_merge": merge}

    @property
    def bands(self) -> tuple[str, ...]:
        return S1_BANDS if self.config["modality"] == "s1" else tuple(self.config["bands"])

    @property
    def groups(self) -> list[tuple[int, str, int]]:
        return _groups(self.bands)

    @property
    def grid(self) -> tuple[int, int]:
        side = max(GROUND_COVER // gsd // self.patch_size for _, _, gsd in self.groups)
        return side, side

    @property
    def out_dim(self) -> int:
        return self.variant.dim * (len(self.groups) if self.config["group_merge"] == "concat" else 1)

    @property
    def token_semantics(self) -> str:  # type: ignore[override]
        names = ", ".join(f"{group} ({gsd} m)" for _, group, gsd in self.groups)
        return (f"last-block tokens (no final norm, no CLS) per spectral group [{names}], each (D, n, n) upsampled "
                f"to {self.grid[0]} x {self.grid[1]}, merged by {self.config['group_merge']}")

    def published_weights(self) -> WeightSource:
        repo, filename = self.variant.files(self.config["variant"])
        return WeightSource.hub(repo, filename, "Apache-2.0 (THOR 1.0 model card); code MIT (FM4CS/THOR)")

    def default_sensor(self) -> SensorSpec:
        if self.config["modality"] == "s1":
            return SensorSpec(collection=S1_COLLECTION, bands=S1_BANDS, scale_m=10.0, composite="median",
                              modality="s1", use_float_linear=False)
        return SensorSpec(collection=DEFAULT_COLLECTION, bands=self.bands, scale_m=10.0, composite="median",
                          modality="s2")

    def describe(self) -> ModelDescription:
        s1 = self.config["modality"] == "s1"
        normalisation = {
            "mean": [THOR_BANDS[b][5] for b in self.bands], "std": [THOR_BANDS[b][6] for b in self.bands],
            "formula": "clamp((dB - mean) / std, -5, 5)" if s1 else "clamp((DN / 10000 - mean) / std, -5, 5)",
            "units": "Sentinel-1 IW sigma0 in dB" if s1 else "Sentinel-2 L2A reflectance x 10000",
            "thor_channels": [THOR_BANDS[b][0] for b in self.bands],
            "groups": {group: [b for b in self.bands if THOR_BANDS[b][3] == group] for _, group, _ in self.groups},
            "ground_cover_m": GROUND_COVER,
            "source": "FM4CS/THOR thor/data/thor_dataset_base.py NORMALIZATION and clamp_5_sigma"}
        description = self.description(
            normalisation, f"THOR 1.0 {self.config['variant']} (Forgaard et al. 2026), {self.config['modality']}; "
            f"{self.token_semantics}")
        return replace(description, dim=self.out_dim)  # D x groups when the groups are concatenated

    def build(self) -> torch.nn.Module:
        from rsembed_db.models.thor_net import Channel, ThorEncoder

        v = self.variant
        channels = [Channel(*THOR_BANDS[b][:5]) for b in self.bands]
        return ThorEncoder(channels, v.dim, v.depth, v.heads, v.band_dim, GROUND_COVER, v.patch_size)

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        if any(k.startswith(ENCODER) for k in state):  # THOR checkpoints prefix keys by sub-model
            state = {k.removeprefix(ENCODER): t for k, t in state.items() if k.startswith(ENCODER)}
        # Tensors of channels and groups this input does not use (Sentinel-3...) are left out.
        names = set(module.state_dict())
        kept = {k: t for k, t in state.items() if k in names and not k.startswith(IGNORED)}
        load_weights(module, kept, path, may_miss=COMPUTED)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        if data.ndim != 3:
            raise SpecError("frames", f"THOR takes one composite; the chip has {data.shape[0]} frames")
        mean = np.asarray([THOR_BANDS[b][5] for b in self.bands], np.float32)[:, None, None]
        std = np.asarray([THOR_BANDS[b][6] for b in self.bands], np.float32)[:, None, None]
        if self.config["modality"] == "s1":
            self._require_decibels(data, valid)
            x = data
        else:
            x = data / np.float32(S2_SCALE)
        x = np.clip((x - mean) / std, -CLAMP, CLAMP).astype(np.float32)
        x[:, ~valid] = 0.0
        return ModelInput(x, valid)

    @staticmethod
    def _require_decibels(data: np.ndarray, valid: np.ndarray) -> None:
        values = data[:, valid]
        values = values[np.isfinite(values) & (values != 0)]
        if values.size and np.mean(values < 0) <= 0.5:
            raise SpecError("sensor.use_float_linear", "THOR's Sentinel-1 input is backscatter in dB; these values "
                            "look linear: fetch COPERNICUS/S1_GRD (use_float_linear=False)")

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        tokens = model(x)
        h, w = self.grid
        maps, start = [], 0
        for _, side in cast("ThorEncoder", model).group_sides():
            group = tokens[:, start:start + side * side].transpose(1, 2).reshape(len(x), -1, side, side)
            maps.append(group if side == h else F.interpolate(group, (h, w), mode="bilinear"))
            start += side * side
        if start != tokens.shape[1]:
            raise ValueError(f"expected {start} tokens over the groups, got {tokens.shape[1]}")
        merge = self.config["group_merge"]
        if merge == "concat":
            return torch.cat(maps, dim=1)
        stacked = torch.stack(maps)
        return stacked.mean(dim=0) if merge == "mean" else stacked.sum(dim=0)
