"""The TerraFM encoder, written from the published architecture (arXiv:2506.06281 and the
authors' ``terrafm.py``, Apache-2.0): a ViT whose patch embedding has one convolution
per input source.

Facts it follows (module and parameter names are the checkpoint's): ``patch_embed`` holds
``conv2d_s2_l1c``, ``conv2d_s2_l2a`` (12 -> 3D channels) and ``conv2d_s1`` (2 -> 3D), a learned
(1, 3D) embedding per source (``s2_l1c_embed``, ``s2_l2a_embed``, ``s1_embed``) added to
the convolution's tokens, and ``projection`` = ``proj1`` (3D -> 3D, no bias), ``norm_input``
(LayerNorm, eps 1e-5), ``proj2`` (3D -> 3D), ``proj3`` (3D -> D). Then a CLS token, a
learned position embedding (1, 1 + N, D), pre-norm blocks (timm ``Block``: qkv bias,
LayerNorm eps 1e-6, GELU MLP x4) and a final ``norm``.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

SOURCES = ("s2_l1c", "s2_l2a", "s1")
SOURCE_CHANNELS = {"s2_l1c": 12, "s2_l2a": 12, "s1": 2}


class TokenProjection(nn.Module):
    """3D-wide source tokens to the D-wide model width."""

    def __init__(self, wide: int, dim: int) -> None:
        super().__init__()
        self.proj1 = nn.Linear(wide, wide, bias=False)
        self.norm_input = nn.LayerNorm(wide)
        self.proj2 = nn.Linear(wide, wide)
        self.proj3 = nn.Linear(wide, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj3(self.proj2(self.norm_input(self.proj1(tokens))))


class SourcePatchEmbed(nn.Module):
    """One patch convolution and one learned embedding per source, then a shared projection."""

    def __init__(self, dim: int, patch_size: int) -> None:
        super().__init__()
        wide = 3 * dim
        for source in SOURCES:
            setattr(self, f"conv2d_{source}", nn.Conv2d(SOURCE_CHANNELS[source], wide, patch_size, patch_size))
            setattr(self, f"{source}_embed", nn.Parameter(torch.zeros(1, wide)))
        self.projection = TokenProjection(wide, dim)

    def forward(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """(B, N, D) row-major patch tokens of a (B, C, H, W) input from ``source``."""
        conv: nn.Conv2d = getattr(self, f"conv2d_{source}")
        if x.shape[1] != conv.in_channels:
            raise ValueError(f"source {source!r} takes {conv.in_channels} channels, got {x.shape[1]}")
        tokens = conv(x).flatten(2).transpose(1, 2) + getattr(self, f"{source}_embed")
        return self.projection(tokens)


class TerraFM(nn.Module):
    """TerraFM backbone at a fixed input size (no position-embedding interpolation)."""

    def __init__(self, img_size: int, patch_size: int, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.patch_embed = SourcePatchEmbed(dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (img_size // patch_size) ** 2, dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """(B, 1 + N, D) tokens after the final norm: CLS first, then the patches row-major."""
        tokens = self.patch_embed(x, source)
        tokens = torch.cat((self.cls_token.expand(len(x), -1, -1), tokens), dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
