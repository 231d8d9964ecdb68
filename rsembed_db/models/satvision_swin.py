"""The SwinV2 encoder of SatVision-TOA (pytorch-caney's ``SwinTransformerV2ForSimMIM``).

Written from the Swin Transformer V2 paper (Liu et al., CVPR 2022), the SatVision-TOA
paper (arXiv:2411.17000) and the tensor layout of the published checkpoint; module,
parameter and buffer names follow that checkpoint so its ``encoder.*`` tensors load as
they are. This is not timm's SwinV2: patch merging sits at the end of stages 0-2 and
normalises after its reduction, and blocks can carry a third, periodic LayerNorm.

Per block (residual post-norm): ``x = x + norm1(attn(x)); x = x + norm2(mlp(x));
x = norm3(x)`` where ``norm3`` exists every ``extra_norm_period``-th block of a stage.
Attention is scaled cosine attention in (shifted) windows: cos(q, k) * exp(min(logit_scale,
log 100)) plus a continuous relative position bias 16 * sigmoid(cpb_mlp(log-spaced
coordinates)); qkv has no bias of its own but learnable ``q_bias`` and ``v_bias`` (k: 0).
A stage whose token grid is no larger than the window uses one window the size of the
grid and never shifts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rsembed_db.models.layers import Mlp

CPB_HIDDEN = 512  # width of the continuous position bias MLP


def _relative_coords_table(window: int) -> torch.Tensor:
    """(1, 2w-1, 2w-1, 2) log-spaced relative coordinates in [-1, 1] (x 8, log2, / log2 8)."""
    steps = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1)[None]
    table = table / max(window - 1, 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def _relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) index into the (2w-1)^2 relative offsets of every pair of window tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def _windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, window * window, C), windows row-major."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _unwindows(x: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``_windows``: (B * windows, window * window, C) -> (B, H, W, C)."""
    c = x.shape[-1]
    x = x.reshape(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def _shift_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """(windows, w*w, w*w) 0 / -100 mask keeping attention within the regions a cyclic shift joins."""
    regions = torch.zeros(1, resolution, resolution, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for label, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        regions[:, rows, cols, :] = label
    labels = _windows(regions, window)[..., 0]
    differs = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(differs.shape).masked_fill(differs, -100.0)


class WindowAttention(nn.Module):
    relative_coords_table: torch.Tensor  # buffers (register_buffer)
    relative_position_index: torch.Tensor

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, CPB_HIDDEN), nn.ReLU(inplace=True),
                                     nn.Linear(CPB_HIDDEN, heads, bias=False))
        self.register_buffer("relative_coords_table", _relative_coords_table(window))
        self.register_buffer("relative_position_index", _relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n_windows, tokens, dim = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(n_windows, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * scale
        table = self.cpb_mlp(self.relative_coords_table).reshape(-1, self.heads)
        position = table[self.relative_position_index.reshape(-1)].reshape(tokens, tokens, -1).permute(2, 0, 1)
        attn = attn + 16 * torch.sigmoid(position)[None]
        if mask is not None:
            per_image = mask.shape[0]
            attn = attn.reshape(-1, per_image, self.heads, tokens, tokens) + mask[None, :, None]
            attn = attn.reshape(-1, self.heads, tokens, tokens)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(n_windows, tokens, dim)
        return self.proj(out)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float,
                 extra_norm: bool) -> None:
        super().__init__()
        if resolution <= window:  # one window covers the grid: no partition, no shift
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim) if extra_norm else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", _shift_mask(resolution, window, shift) if shift else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        side = self.resolution
        grid = x.reshape(b, side, side, c)
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        attended = _unwindows(self.attn(_windows(grid, self.window), self.attn_mask), self.window, side, side)
        if self.shift:
            attended = torch.roll(attended, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.norm1(attended.reshape(b, length, c))
        x = x + self.norm2(self.mlp(x))
        return self.norm3(x)


class PatchMerging(nn.Module):
    """2 x 2 neighbours concatenated (order: (0,0), (1,0), (0,1), (1,1)), reduced 4C -> 2C, then normalised."""

    def __init__(self, resolution: int, dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        g = x.reshape(b, self.resolution, self.resolution, c)
        merged = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], dim=-1)
        return self.norm(self.reduction(merged.reshape(b, -1, 4 * c)))


class Stage(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, heads: int, window: int, mlp_ratio: float,
                 extra_norm_period: int, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio,
                      bool(extra_norm_period) and (i + 1) % extra_norm_period == 0)
            for i in range(depth)])
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinV2Encoder(nn.Module):
    """``forward``: (B, C, S, S) -> (B, 8 * embed_dim, S / 32, S / 32) last-stage tokens after the final norm."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, depths: Sequence[int],
                 num_heads: Sequence[int], window_size: int, mlp_ratio: float = 4.0, extra_norm_period: int = 0) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        first = img_size // patch_size
        last = len(depths) - 1
        self.layers = nn.ModuleList([
            Stage(embed_dim * 2 ** i, first // 2 ** i, depth, heads, window_size, mlp_ratio, extra_norm_period, i < last)
            for i, (depth, heads) in enumerate(zip(depths, num_heads))])
        self.num_features = embed_dim * 2 ** last
        self.norm = nn.LayerNorm(self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        side = math.isqrt(x.shape[1])
        return x.transpose(1, 2).reshape(len(x), -1, side, side)
