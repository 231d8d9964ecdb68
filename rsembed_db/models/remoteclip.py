"""RemoteCLIP: CLIP ViTs fine-tuned on remote-sensing image-text pairs, with text queries.

Liu et al. 2024, "RemoteCLIP: A Vision Language Foundation Model for Remote Sensing",
IEEE TGRS (arXiv:2306.11029). The authors publish OpenCLIP-format state dicts in the
Hugging Face repository ``chendelong/RemoteCLIP`` and load them into
``open_clip.create_model(<variant>)`` with ``load_state_dict`` (their README); this
module builds the same ``open_clip.CLIP`` from open_clip's config for the variant.

Input: Sentinel-2 red, green, blue (B04, B03, B02) digital numbers scaled to [0, 1] by
``rgb_max`` (10000: reflectance), then CLIP's normalisation (OpenAI dataset mean/std,
as ``open_clip.constants`` and the RemoteCLIP preprocessing use). Output tokens:

- ``tokens="patch"`` (default): every patch token after ``ln_post``, projected by the
  visual ``proj`` into the joint image-text space and L2-normalised; the CLS token is
  dropped. A grid of (h, w) = (7, 7) for ViT-B/32 at 224 px.
- ``tokens="global"``: CLIP's own image embedding (the projected CLS token),
  L2-normalised, as one cell covering the model input. This is what RemoteCLIP's
  text-image retrieval was trained on: use it for text search.

``encode_text(prompts)`` maps text to the same space (L2-normalised), so text queries
can search stored image embeddings by cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import torch

from rsembed_db.errors import SpecError
from rsembed_db.models.base import ModelDescription
from rsembed_db.models.vit_tokens import patch_grid
from rsembed_db.models.weights import WeightSource, load_weights
from rsembed_db.models.zoo import RGB, ModelInput, ZooEmbedder, require_zoo, rgb_max, rgb_normalisation, standardised
from rsembed_db.sources.base import Chip
from rsembed_db.specs.validate import require_choice

REPO = "chendelong/RemoteCLIP"
# open_clip.constants OPENAI_DATASET_MEAN / OPENAI_DATASET_STD (CLIP preprocessing).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOKENS = ("patch", "global")


@dataclass(frozen=True)
class Variant:
    dim: int  # joint embedding width
    patch_size: int
    arch: dict[str, Any] = field(default_factory=dict)  # overrides of open_clip's model config


VARIANTS: dict[str, Variant] = {"ViT-B-32": Variant(512, 32), "ViT-L-14": Variant(768, 14)}


class _VisionTower(Protocol):
    proj: torch.Tensor  # (width, D) token projection

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...  # (pooled, tokens)


class _CLIP(Protocol):
    """What is read here of open_clip's ``CLIP`` (its visual tower built with ``output_tokens``)."""

    visual: _VisionTower

    def encode_text(self, text: torch.Tensor) -> torch.Tensor: ...


class RemoteClipEmbedder(ZooEmbedder):
    """RemoteCLIP image tower on Sentinel-2 RGB; ``encode_text`` for text queries.

    Config: ``variant`` (``ViT-B-32`` or ``ViT-L-14``), ``tokens`` (``patch`` or
    ``global``), ``rgb_max`` (10000), plus the zoo options (``models.zoo``).
    """

    name = "remoteclip"
    requires = ("open_clip", "huggingface_hub")
    options = ("variant", "tokens", "rgb_max")
    variants = VARIANTS
    default_variant = "ViT-B-32"
    image_size = 224
    input_bands = RGB

    def resolve_config(self, config: dict[str, Any]) -> dict[str, Any]:
        tokens = config.get("tokens", "patch")
        require_choice("tokens", tokens, TOKENS)
        return {"tokens": tokens, "rgb_max": rgb_max(config.get("rgb_max", 10000.0))}

    @property
    def patch_size(self) -> int:
        # The global embedding is one cell covering the whole input.
        return self.image_size if self.config["tokens"] == "global" else self.variant.patch_size

    @property
    def token_semantics(self) -> str:  # type: ignore[override]
        if self.config["tokens"] == "global":
            return "CLIP image embedding (projected CLS), L2-normalised, one cell per model input"
        return "patch tokens after ln_post, projected by visual.proj, L2-normalised; CLS dropped"

    def published_weights(self) -> WeightSource:
        return WeightSource.hub(REPO, f"RemoteCLIP-{self.config['variant']}.pt", "Apache-2.0 (RemoteCLIP model card)")

    def describe(self) -> ModelDescription:
        return self.description(
            rgb_normalisation(self.config["rgb_max"], CLIP_MEAN, CLIP_STD,
                              "CLIP / open_clip.constants OPENAI_DATASET_MEAN, OPENAI_DATASET_STD"),
            f"RemoteCLIP {self.config['variant']} (Liu et al. 2024) on RGB; {self.token_semantics}; "
            "text queries via encode_text")

    def build(self) -> torch.nn.Module:
        import open_clip

        # open_clip.create_model builds this class from the same config (and warns that no
        # weights were loaded, which would mislead here).
        model = open_clip.CLIP(**{**open_clip.get_model_config(self.config["variant"]), **self.variant.arch})
        model.visual.output_tokens = True
        return model

    def load(self, module: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
        load_weights(module, state, path)

    def model_input(self, chip: Chip) -> ModelInput:
        data, valid = self.select_bands(chip)
        return standardised(data, valid, CLIP_MEAN, CLIP_STD, 1.0 / self.config["rgb_max"], (0.0, 1.0))

    def forward(self, model: torch.nn.Module, x: torch.Tensor, sides: list[dict[str, Any]]) -> torch.Tensor:
        visual = cast(_CLIP, model).visual
        pooled, tokens = visual(x)
        if self.config["tokens"] == "global":
            return _unit(pooled)[:, :, None, None]
        return _unit(patch_grid(tokens @ visual.proj, 0, self.grid), dim=1)

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        """(N, D) float32 L2-normalised text embeddings in the image embeddings' space."""
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise SpecError("text", f"must be a non-empty list of non-empty strings, got {prompts!r}")
        require_zoo(self.name, self.requires)
        import open_clip

        model = cast(_CLIP, self.model())
        tokens = open_clip.get_tokenizer(self.config["variant"])(list(prompts)).to(self.runtime.device)
        with torch.inference_mode():
            return _unit(model.encode_text(tokens).float()).cpu().numpy()


def _unit(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=dim)
