"""ViT token semantics: drop the prefix (CLS) tokens, lay patch tokens out as (D, h, w)."""

from __future__ import annotations

from typing import Protocol, cast

import torch


class TimmViT(Protocol):
    """What is read here of a timm ``VisionTransformer`` (torchgeo's ScaleMAE is one too)."""

    num_prefix_tokens: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...


def patch_grid(tokens: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, D, h, w) from (B, prefix + h*w, D) tokens in row-major patch order."""
    h, w = grid
    patches = tokens[:, prefix:]
    if patches.shape[1] != h * w:
        raise ValueError(f"expected {prefix} + {h}x{w} tokens, got {tokens.shape[1]}")
    return patches.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)


def vit_patch_grid(model: torch.nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, D, h, w) patch tokens of a timm ``VisionTransformer`` (``TimmViT``) for a (B, C, S, S) batch."""
    vit = cast(TimmViT, model)
    return patch_grid(vit.forward_features(x), vit.num_prefix_tokens, grid)


def frames_grid(tokens: torch.Tensor, prefix: int, frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, D, h, w) mean over frames of (B, prefix + T*h*w, D) tokens ordered (t, h, w)."""
    h, w = grid
    patches = tokens[:, prefix:]
    if patches.shape[1] != frames * h * w:
        raise ValueError(f"expected {prefix} + {frames}x{h}x{w} tokens, got {tokens.shape[1]}")
    b, _, d = patches.shape
    return patches.reshape(b, frames, h * w, d).mean(dim=1).transpose(1, 2).reshape(b, d, h, w)
