"""SatMAE's multi-spectral (group-channel) and temporal ViT encoders, run without masking.

Written from the SatMAE paper (Cong et al. 2022, NeurIPS, arXiv:2207.08051) and the
layout of the authors' published checkpoints (github.com/sustainlab-group/SatMAE,
``models_mae_group_channels.py`` / ``models_mae_temporal.py``; CC BY-NC 4.0, see
docs/models/satmae.md). Module and parameter names follow the checkpoints, so the MAE
encoder tensors load as they are; the transformer blocks are timm's ``Block``
(qkv bias, LayerNorm eps 1e-6, MLP ratio 4), as in the reference.

The authors' ``forward_encoder(x, mask_ratio=0)`` still passes the tokens through
``random_masking``, which keeps them all but in a random order. These encoders skip the
masking step, so tokens come out in a fixed order (CLS, then group- or frame-major,
patches row-major) and their grid is spatially correct and deterministic; attention is
order-independent, so the token values are those of the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

CHANNEL_EMBED = 256  # width of the group-channel encoding (the rest of D is the 2-D position)
TIME_EMBED = 384  # width of the timestamp encoding: 3 x 128 for (year, month, hour)


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M, dim) sine-cosine encoding of M positions: sin in the first half, cos in the second,
    frequencies 1 / 10000^(2i/dim) (MAE's ``get_1d_sincos_pos_embed_from_grid``)."""
    if dim % 2:
        raise ValueError(f"sin-cos width must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.reshape(-1, 1).to(torch.float64) * omega.to(positions.device)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, side: int) -> torch.Tensor:
    """(1 + side^2, dim) fixed position encoding of a side x side patch grid, row-major, with a
    zero row for the CLS token first. The first half of the width encodes the column, the
    second half the row (MAE's ``get_2d_sincos_pos_embed``, whose meshgrid puts x first)."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    grid = torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), grid]).float()


def _blocks(dim: int, depth: int, num_heads: int) -> nn.ModuleList:
    from timm.models.vision_transformer import Block

    norm = partial(nn.LayerNorm, eps=1e-6)
    return nn.ModuleList([Block(dim, num_heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth)])


class GroupChannelEncoder(nn.Module):
    """Multi-spectral SatMAE: one patch embedding per channel group, tokens group-major.

    Each token carries a fixed 2-D position encoding (width D - 256) concatenated with a
    fixed 1-D encoding of its group (width 256). Output: (B, 1 + G * L, D) after the final
    norm, CLS first, then group 0's L patches row-major, group 1's...
    """

    def __init__(self, img_size: int, patch_size: int, groups: Sequence[Sequence[int]], embed_dim: int,
                 depth: int, num_heads: int) -> None:
        from timm.layers import PatchEmbed

        super().__init__()
        self.groups = [list(g) for g in groups]
        self.patch_embed = nn.ModuleList([PatchEmbed(img_size, patch_size, len(g), embed_dim) for g in self.groups])
        side = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim - CHANNEL_EMBED, side)[None], requires_grad=False)
        channels = sincos_1d(CHANNEL_EMBED, torch.arange(len(self.groups))).float()
        self.channel_embed = nn.Parameter(channels[None], requires_grad=False)
        self.blocks = _blocks(embed_dim, depth, num_heads)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([embed(x[:, g]) for embed, g in zip(self.patch_embed, self.groups)], dim=1)
        b, groups, length, dim = tokens.shape  # (B, G, L, D)
        position = self.pos_embed[:, None, 1:].expand(-1, groups, -1, -1)
        channel = self.channel_embed[:, :, None].expand(-1, -1, length, -1)
        tokens = (tokens + torch.cat([position, channel], dim=-1)).reshape(b, groups * length, dim)
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class TemporalEncoder(nn.Module):
    """Temporal SatMAE: one shared patch embedding per frame, tokens frame-major.

    Each token carries a fixed 2-D position encoding (width D - 384) concatenated with its
    frame's timestamp encoding: 1-D sin-cos (width 128 each) of year - 2002, month (0-11)
    and hour (0-23). Input (B, T, C, H, W) and timestamps (B, T, 3); output
    (B, 1 + T * L, D) after the final norm, CLS first, then frame 0's patches row-major...
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, depth: int,
                 num_heads: int) -> None:
        from timm.layers import PatchEmbed

        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        side = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim - TIME_EMBED, side)[None], requires_grad=False)
        self.blocks = _blocks(embed_dim, depth, num_heads)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        b, frames = x.shape[:2]
        tokens = self.patch_embed(x.flatten(0, 1))  # (B*T, L, D)
        length = tokens.shape[1]
        width = TIME_EMBED // 3
        stamps = timestamps.reshape(-1, 3)
        time = torch.cat([sincos_1d(width, stamps[:, i]) for i in range(3)], dim=1).to(self.pos_embed.dtype)
        position = self.pos_embed[:, 1:].expand(b * frames, -1, -1)
        encoding = torch.cat([position, time[:, None].expand(-1, length, -1)], dim=-1)
        tokens = (tokens + encoding).reshape(b, frames * length, -1)
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
