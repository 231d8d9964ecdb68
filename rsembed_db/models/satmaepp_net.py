"""The SatMAE++ group-channel encoder (Sentinel-2, 10 bands), written from the published
architecture (Noman et al. 2024; techmn/satmae_pp ``models_mae_group_channels.py``,
Apache-2.0) and run **without masking**, so tokens keep their spatial order.

Facts it follows (names are the checkpoint's): ``patch_embed`` is one timm ``PatchEmbed``
per channel group; every token of group g at patch l gets ``[pos_embed[1 + l] |
channel_embed[g]]`` added (a fixed 2-D sin-cos table of width D - C and a fixed 1-D
sin-cos table of width C over the group index, both stored in the checkpoint); the CLS
token gets no position embedding; the sequence is CLS, then group-major G x L patch
tokens; pre-norm timm ``Block``s (qkv bias, LayerNorm eps 1e-6) and a final ``norm``.
The MAE pre-training shuffles tokens (``random_masking``) even at mask ratio 0; this
encoder never does.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn


def sincos_1d(width: int, positions: np.ndarray) -> np.ndarray:
    """(M, width): sin then cos of ``positions`` times 1 / 10000^(2i / width), i < width / 2."""
    freq = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2))
    angles = np.outer(positions.reshape(-1).astype(np.float64), freq)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(width: int, side: int) -> np.ndarray:
    """(side * side, width) row-major table: first half encodes the column, second the row (MAE's)."""
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return np.concatenate([sincos_1d(width // 2, cols), sincos_1d(width // 2, rows)], axis=1)


class GroupChannelViT(nn.Module):
    """Encoder of SatMAE++'s group-channel MAE at a fixed input size."""

    def __init__(self, img_size: int, patch_size: int, groups: tuple[tuple[int, ...], ...], dim: int, depth: int,
                 heads: int, channel_dim: int) -> None:
        super().__init__()
        self.groups = groups
        self.patch_embed = nn.ModuleList(PatchEmbed(img_size, patch_size, len(g), dim) for g in groups)
        side = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        table = np.concatenate([np.zeros((1, dim - channel_dim)), sincos_2d(dim - channel_dim, side)])
        self.pos_embed = nn.Parameter(torch.tensor(table, dtype=torch.float32)[None], requires_grad=False)
        channels = sincos_1d(channel_dim, np.arange(len(groups)))
        self.channel_embed = nn.Parameter(torch.tensor(channels, dtype=torch.float32)[None], requires_grad=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(dim)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 + G * L, D) after the final norm: CLS, then group-major, row-major patches."""
        tokens = torch.stack([embed(x[:, list(g)]) for embed, g in zip(self.patch_embed, self.groups)], dim=1)
        _, groups, length, _ = tokens.shape
        pos = self.pos_embed[:, 1:].unsqueeze(1).expand(-1, groups, -1, -1)
        channel = self.channel_embed.unsqueeze(2).expand(-1, -1, length, -1)
        tokens = (tokens + torch.cat((pos, channel), dim=-1)).flatten(1, 2)
        tokens = torch.cat((self.cls_token.expand(len(x), -1, -1), tokens), dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
