"""OlmoEarth (Ai2): a FlexiViT encoder for multi-temporal Sentinel-2 L2A, via its pip package.

Herzog H., Bastani F., Zhang Y., Tseng G., Redmon J., ... Krishna R., Beukema P. (Team
OlmoEarth), "OlmoEarth: Stable Latent Image Modeling for Multimodal Earth Observation",
arXiv:2511.13655 (2025). The architecture is ``olmoearth-pretrain-minimal`` (pinned in the
``zoo`` extra): the model is built from the published ``config.json`` and loaded from
``weights.pth`` of the Hugging Face repository ``allenai/OlmoEarth-<version>-<size>``, as
the package's own loader does (encoder inputs restricted to Sentinel-2 L2A, Sentinel-1 and
Landsat; training-only heads dropped).

Input: the twelve Sentinel-2 L2A bands in OlmoEarth's band-set order B02 B03 B04 B08 |
B05 B06 B07 B8A B11 B12 | B01 B09 (raw DN, reflectance x 10000), normalised as the
package's ``Normalizer(std_multiplier=2)``: (DN - (mean - 2 std)) / (4 std), no clipping.
``num_frames`` frames (1 by default: one composite dated at the window midpoint); each
frame's timestamp is (day 1-31, month 0-11, year) of ``meta["frame_dates"]``. Frames the
source back-filled from the whole window (``meta["frame_backfilled"]``) are dropped, as
OlmoEarth's reference drops empty time bins (meta ``dropped_bins``).
Output: encoder tokens (B, H/p, W/p, T, band sets, D) averaged over time and band sets:
(D, image_size / patch_size, ...), 64 x 64 for the default 256 px at patch 4. No CLS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import FeatureMap, InputPrep, ModelDescription
from rsembed_db.models.chip_context import frame_dates
from rsembed_db.models.weights import (
    ResolvedWeights,
    WeightSource,
    load_state_dict,
    load_weights,
    resolve_weights,
    weights_dir,
)
from rsembed_db.models.zoo import ModelInput, ZooEmbedder, require_int, standardised
from rsembed_db.sources.base import Chip

# OlmoEarth's Sentinel-2 L2A band order and its normalisation statistics (norm_configs/computed.json).
S2_BANDS = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
S2_MEAN = (1188.9412572078477, 1407.7739105458452, 1513.0573882432757, 2755.481305028308, 1890.9893042634167,
           2483.7812315422448, 2722.728248756412, 2885.570263047681, 2562.852607796968, 1914.1383249044113,
           1115.8494388252218, 3269.812554170875)
S2_STD = (1859.1923971769581, 1727.7387413631088, 1740.7757298757895, 1612.2565699990187, 1754.7320388511766,
          1622.1172720635755, 1621.8226170190276, 1611.3587521042082, 1441.5471830655151, 1328.8914382756407,
          1955.6991794280914, 2651.088425085525)
STD_MULTIPLIER = 2.0
ENCODER_MODALITIES = ("sentinel2_l2a", "sentinel1", "landsat")  # what the published encoders were trained on
TRAINING_ONLY = ("supervision_head.", "location_token_distillation_head.")
BAND_SET_MASK = 3  # mask width: the package reads one entry per band set (3 in v1, 1 from v1.1)
MAX_FRAMES = 12  # the encoders' max_sequence_length
LICENCE = ("OlmoEarth Artifact License (weights; use restrictions apply, see the model card); "
           "olmoearth-pretrain-minimal code Apache-2.0")
CITATION = ("Herzog H., Bastani F., Zhang Y., Tseng G., Redmon J., et al. (Team OlmoEarth), \"OlmoEarth: Stable "
            "Latent Image Modeling for Multimodal Earth Observation\", arXiv:2511.13655 (2025)")


@dataclass(frozen=True)
class Variant:
    model_id: str  # the Hugging Face repository allenai/<model_id> (olmoearth_pretrain_minimal.ModelID)
    dim: int
    size: str  # the package's model size name
    version: str  # the package's model version


def _variant(size: str, version: str, dim: int) -> Variant:
    suffix = {"v1": "v1", "v1.1": "v1_1", "v1.2": "v1_2"}[version]
    return Variant(f"OlmoEarth-{suffix}-{size.capitalize()}", dim, size, version)


DIMS = {"nano": 128, "tiny": 192, "small": 384, "base": 768, "large": 1024}
VARIANTS: dict[str, Variant] = {
    **{size: _variant(size, "v1", DIMS[size]) for size in ("nano", "tiny", "base", "large")},
    **{f"{size}_v1_1": _variant(size, "v1.1", DIMS[size]) for size in ("nano", "tiny", "base")},
    **{f"{size}_v1_2": _variant(size, "v1.2", DIMS[size]) for size in ("nano", "tiny", "small", "base")},
}


class _LatentMIM(Protocol):
    """What ``forward`` reads of olmoearth_pretrain_minimal's ``LatentMIM``."""

    encoder: torch.nn.Module


class OlmoEarthEmbedder(ZooEmbedder):
    """OlmoEarth v1 / v1.1 / v1.2 encoders on Sentinel-2 L2A time series.

    Config: ``variant`` (default ``base_v1_2``), ``patch_size`` (1-8, default 4),
    ``image_size`` (pixels, a multiple of ``patch_size``, default 256), ``num_frames``
    (1-12, default 1), zoo options. Weights: the Hugging Face cache, or ``config.json``
    and ``weights.pth`` in ``<weights_dir>/<OlmoEarth-...>/``.
    """

    name = "olmoearth"
    requires = ("olmoearth_pretrain_minimal", "huggingface_hub")
    options = ("variant", "patch_size", "image_size", "num_frames")
    variants = VARIANTS
    default_variant = "base_v1_2"
    input_bands = S2_BANDS
    token_semantics = "encoder tokens averaged over time steps and band sets (no CLS)"
    _config_file: Path | None = None  # the published config.json, once ``checkpoint`` found it

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        patch = require_int("patch_size", config.get("patch_size", 4), 1, 8)
        size = require_int("image_size", config.get("image_size", 256), patch)
        if size % patch:
            raise SpecError("image_size", f"must be a multiple of patch_size {patch}, got {size}")
        return {"patch_size": patch, "image_size": size,
                "num_frames": require_int("num_frames", config.get("num_frames", 1), 1, MAX_FRAMES)}

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return int(self.config["image_size"])

    @property
    def patch_size(self) -> int:
        return int(self.config["patch_size"])

    @property
    def frames(self) -> int:
        return int(self.config["num_frames"])

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(f"allenai/{self.variant.model_id}", "weights.pth", LICENCE)

    def describe(self) -> ModelDescription:
        normalisation = {
            "bands": list(S2_BANDS), "mean": list(S2_MEAN), "std": list(S2_STD),
            "formula": "(DN - (mean - 2 std)) / (4 std), no clipping",
            "units": "Sentinel-2 L2A reflectance x 10000",
            "source": "olmoearth-pretrain-minimal Normalizer(std_multiplier=2), norm_configs/computed.json",
            "side_inputs": {"timestamps": "(day 1-31, month 0-11, year) per frame"}}
        description = self.description(
            normalisation, f"OlmoEarth {self.variant.model_id} (Ai2), {self.frames} frame(s), patch "
            f"{self.patch_size}; {self.token_semantics}", citation=CITATION, frames=self.frames)
        return replace(description, patch_size=self.patch_size)

    # -- weights: config.json and weights.pth side by side -----------------------------
    def _folder(self) -> str | None:
        folder = weights_dir(self.runtime.weights_dir)
        return str(folder / self.variant.model_id) if folder is not None else None

    def checkpoint(self) -> tuple[ResolvedWeights, dict[str, torch.Tensor]]:
        resolved = resolve_weights(self.name, self.weights, self._folder(), self.runtime.cache_dir)
        config = WeightSource.hub(self.weights.repo_id or "", "config.json", LICENCE, self.weights.revision)
        config_path = resolve_weights(self.name, config, self._folder(), self.runtime.cache_dir).path
        self._config_file = config_path
        state = load_state_dict(resolved.path, allow_pickle=resolved.origin == "huggingface")
        return resolved, {k: t for k, t in state.items() if not k.startswith(TRAINING_ONLY)}

    def build(self) -> torch.nn.Module:
        """The LatentMIM of the published ``config.json`` once read (``checkpoint``), else the
        package's built-in configuration of the variant (benchmarks)."""
        config_file = self._config_file
        if config_file is not None:
            from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.config import Config

            model = Config.from_dict(json.loads(config_file.read_text())["model"]).build()
        else:
            from olmoearth_pretrain_minimal import OlmoEarthPretrain_v1

            model = OlmoEarthPretrain_v1(self.variant.size, self.variant.version).model
        model.encoder.restrict_input_modalities(list(ENCODER_MODALITIES))
        return model

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, state, path)

    # -- inputs ----------------------------------------------------------------------
    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        frames = data.shape[0] if data.ndim == 4 else 1
        if frames != self.frames:
            raise SpecError("num_frames", f"model configured for {self.frames} frame(s); the chip has {frames} "
                            "(multi-frame chips are (T, C, H, W))")
        kept = self.kept_frames(chip)
        if data.ndim == 4:
            data = data[kept]
        lower = np.asarray(S2_MEAN) - STD_MULTIPLIER * np.asarray(S2_STD)
        return standardised(data, valid, lower, 2 * STD_MULTIPLIER * np.asarray(S2_STD))

    def kept_frames(self, chip: Chip) -> list[int]:
        """Indices of the frames with imagery of their own (not back-filled); all frames
        when every one is back-filled (they are then the same whole-window composite: one is kept)."""
        if self.frames == 1:
            return [0]
        filled = chip.meta.get("frame_backfilled") or [False] * self.frames
        if len(filled) != self.frames:
            raise SpecError("frame_backfilled", f"expected {self.frames} flags, got {filled!r}")
        kept = [i for i, f in enumerate(filled) if not f]
        return kept or [0]

    def side_inputs(self, chip: Chip, prep: dict[str, Any]) -> dict[str, Any]:
        filled = chip.meta.get("frame_backfilled") or []
        if self.frames > 1 and filled and all(filled):  # all the whole-window composite: dated at its midpoint
            dates, kept = frame_dates(chip, 1), [0]
        else:
            dates, kept = frame_dates(chip, self.frames), self.kept_frames(chip)
        if dates is None:
            raise SpecError("frame_dates", f"OlmoEarth needs the date of each of its {self.frames} frame(s) "
                            f"(chip meta input_time / frame_dates), got {chip.meta.get('frame_dates')!r}")
        return {"timestamps": [(dates[i].day, dates[i].month - 1, dates[i].year) for i in kept]}

    def group_key(self, side: dict[str, Any]) -> int:
        return len(side["timestamps"])  # samples with as many kept frames share a batch

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.datatypes import MaskedOlmoEarthSample, MaskValue

        frames = len(sides[0]["timestamps"])
        b, _, height, width = x.shape
        data = x.reshape(b, frames, len(S2_BANDS), height, width).permute(0, 3, 4, 1, 2)  # (B, H, W, T, C)
        mask = torch.full((b, height, width, frames, BAND_SET_MASK), MaskValue.ONLINE_ENCODER.value,
                          dtype=torch.long, device=x.device)
        stamps = torch.as_tensor([s["timestamps"] for s in sides], dtype=torch.long, device=x.device)
        sample = MaskedOlmoEarthSample(timestamps=stamps, sentinel2_l2a=data, sentinel2_l2a_mask=mask)
        encoder = cast(_LatentMIM, model).encoder
        tokens = encoder(sample, patch_size=self.patch_size, fast_pass=True)["tokens_and_masks"].sentinel2_l2a
        return tokens.mean(dim=(3, 4)).permute(0, 3, 1, 2)  # (B, D, H/p, W/p)

    def embed_prepared(self, chips: list[Chip], preps: list[InputPrep]) -> list[FeatureMap]:
        maps = super().embed_prepared(chips, preps)
        for chip, fmap in zip(chips, maps):
            kept = self.kept_frames(chip)
            bins = chip.meta.get("frame_bins") or []
            fmap.meta["n_frames"] = len(kept)
            fmap.meta["dropped_bins"] = [bins[i] for i in range(len(bins)) if i not in kept] if bins else []
        return maps
