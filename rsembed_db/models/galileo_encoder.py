"""The Galileo encoder (Tseng et al. 2025), written for this project from the paper and the
published reference (github.com/nasaharvest/galileo, ``single_file_galileo.py``, MIT).

Galileo tokenises four input families, each split into channel groups: space-time
(Sentinel-1, five Sentinel-2 groups, NDVI), space (SRTM, Dynamic World, WorldCereal), time
(ERA5, TerraClimate, VIIRS) and static (LandScan, location, static DW / WC). A token is
one group's patch (space-time, space) or one group's vector (time, static), projected to
D and summed with four D/4-wide encodings concatenated: a learned per-group channel
embedding, the 1-D sin-cos position of the time step, a frozen sin-cos month table, and
a 2-D sin-cos position of the patch scaled by the patch's ground size over 10 m. Masked
groups are dropped before a ViT of pre-norm blocks (separate q/k/v projections) and a
final LayerNorm.

This module runs the space-time family with its Sentinel-2 groups visible and every
other group masked, which is what the reference does for an S2-only input (masked
tokens take no part in attention, so leaving them out gives the same tokens). It holds
every tensor of the published encoder (all groups' projections), so checkpoints load
strictly; parameter names follow the published ``encoder.pt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsembed_db.models.layers import Mlp

# Channel groups in the published order (their index selects the channel embedding).
SPACE_TIME_GROUPS: dict[str, tuple[str, ...]] = {
    "S1": ("VV", "VH"),
    "S2_RGB": ("B02", "B03", "B04"),
    "S2_Red_Edge": ("B05", "B06", "B07"),
    "S2_NIR_10m": ("B08",),
    "S2_NIR_20m": ("B8A",),
    "S2_SWIR": ("B11", "B12"),
    "NDVI": ("NDVI",),
}
SPACE_GROUPS = {"SRTM": 2, "DW": 9, "WC": 5}
TIME_GROUPS = {"ERA5": 2, "TC": 3, "VIIRS": 1}
STATIC_GROUPS = {"LS": 1, "location": 3, "DW_static": 9, "WC_static": 5}
S2_GROUPS = ("S2_RGB", "S2_Red_Edge", "S2_NIR_10m", "S2_NIR_20m", "S2_SWIR")
S2_BANDS = tuple(b for g in S2_GROUPS for b in SPACE_TIME_GROUPS[g])  # B02 ... B12, 10 bands
BASE_GSD_M = 10.0


@dataclass(frozen=True)
class GalileoConfig:
    """Encoder hyper-parameters (the published ``config.json`` ``model.encoder``)."""

    embedding_size: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    max_sequence_length: int = 24
    max_patch_size: int = 8


def sincos_1d(width: int, positions: torch.Tensor) -> torch.Tensor:
    """(M, width) sin | cos of ``positions`` at Galileo's frequencies 10000^(-i / (2 * width))."""
    omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32, device=positions.device) / width / 2.0)
    angles = positions.reshape(-1, 1).float() * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def spatial_encoding(width: int, side: int, scale: torch.Tensor) -> torch.Tensor:
    """(B, side, side, width): for patch (row i, col j) sincos(j * s) | sincos(i * s), with
    ``s`` each sample's patch ground size in units of 10 m."""
    idx = torch.arange(side, dtype=torch.float32, device=scale.device)
    cols = idx.repeat(side)            # j of row-major (i, j)
    rows = idx.repeat_interleave(side)  # i
    out = [torch.cat([sincos_1d(width // 2, cols * s), sincos_1d(width // 2, rows * s)], dim=1) for s in scale]
    return torch.stack(out).reshape(len(scale), side, side, width)


def month_table(width: int) -> torch.Tensor:
    """(12, width): month m (0 = January) as sin(2 pi m / 12) in the first half, cos in the second."""
    angles = torch.arange(12, dtype=torch.float32) * (2 * math.pi / 12)
    half = width // 2
    return torch.cat([angles.sin()[:, None].repeat(1, half), angles.cos()[:, None].repeat(1, half)], dim=1)


def _resize_matrix(old: int, new: int) -> torch.Tensor:
    """(old*old, new*new): each old-kernel basis vector resized bicubically (antialiased)."""
    eye = torch.eye(old * old).reshape(old * old, 1, old, old)
    return F.interpolate(eye, size=(new, new), mode="bicubic", antialias=True).reshape(old * old, new * new)


class PatchProjection(nn.Module):
    """One group's patch embedding: a conv with kernel = stride = ``max_patch_size``,
    resized for smaller patches by the pseudo-inverse of the bicubic resize (FlexiViT)."""

    def __init__(self, channels: int, dim: int, max_patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=max_patch, stride=max_patch)
        self._pinv: dict[int, torch.Tensor] = {}

    def weight_for(self, patch: int) -> torch.Tensor:
        weight = self.proj.weight
        old = weight.shape[-1]
        if patch == old:
            return weight
        if patch not in self._pinv:
            self._pinv[patch] = torch.linalg.pinv(_resize_matrix(old, patch))
        pinv = self._pinv[patch].to(weight)
        return torch.einsum("nk,oik->oin", pinv, weight.flatten(2)).reshape(*weight.shape[:2], patch, patch)

    def forward(self, x: torch.Tensor, patch: int) -> torch.Tensor:
        """(N, C, H, W) -> (N, D, H / patch, W / patch)."""
        return F.conv2d(x, self.weight_for(patch), self.proj.bias, stride=patch)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GalileoEncoder(nn.Module):
    """The Galileo encoder; ``encode_s2`` runs it on Sentinel-2 time series."""

    def __init__(self, cfg: GalileoConfig) -> None:
        super().__init__()
        dim, quarter = cfg.embedding_size, cfg.embedding_size // 4
        self.cfg = cfg
        self.pos_embed = nn.Parameter(sincos_1d(quarter, torch.arange(cfg.max_sequence_length)), requires_grad=False)
        self.month_embed = nn.Embedding.from_pretrained(month_table(quarter), freeze=True)
        self.s_t_channel_embed = nn.Parameter(torch.zeros(len(SPACE_TIME_GROUPS), quarter))
        self.sp_channel_embed = nn.Parameter(torch.zeros(len(SPACE_GROUPS), quarter))
        self.t_channel_embed = nn.Parameter(torch.zeros(len(TIME_GROUPS), quarter))
        self.st_channel_embed = nn.Parameter(torch.zeros(len(STATIC_GROUPS), quarter))
        self.blocks = nn.ModuleList(Block(dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.space_time_embed = nn.ModuleDict(
            {g: PatchProjection(len(bands), dim, cfg.max_patch_size) for g, bands in SPACE_TIME_GROUPS.items()})
        self.space_embed = nn.ModuleDict(
            {g: PatchProjection(n, dim, cfg.max_patch_size) for g, n in SPACE_GROUPS.items()})
        self.time_embed = nn.ModuleDict({g: nn.Linear(n, dim) for g, n in TIME_GROUPS.items()})
        self.static_embed = nn.ModuleDict({g: nn.Linear(n, dim) for g, n in STATIC_GROUPS.items()})
        self.norm = nn.LayerNorm(dim)

    def encode_s2(self, s2: torch.Tensor, months: torch.Tensor, patch: int, input_res_m: torch.Tensor
                  ) -> torch.Tensor:
        """Sentinel-2 tokens after the encoder and its final norm.

        ``s2`` (B, T, 10, H, W) normalised, bands in ``S2_BANDS`` order; ``months`` (B, T)
        0-11; ``patch`` pixels per patch side (1..max_patch_size); ``input_res_m`` (B,)
        metres per input pixel. Returns (B, h, w, T * 5, D), tokens ordered (t, group).
        """
        b, t, c, height, width = s2.shape
        if t > self.cfg.max_sequence_length:
            raise ValueError(f"at most {self.cfg.max_sequence_length} time steps, got {t}")
        h, w = height // patch, width // patch
        if h != w:
            raise ValueError(f"the patch grid must be square, got {h}x{w}")
        frames = s2.reshape(b * t, c, height, width)
        index = {band: i for i, band in enumerate(S2_BANDS)}
        position = self.pos_embed[:t]                                          # (T, D/4)
        month = self.month_embed(months)                                       # (B, T, D/4)
        space = spatial_encoding(self.cfg.embedding_size // 4, h, input_res_m * patch / BASE_GSD_M)
        groups = list(SPACE_TIME_GROUPS)
        tokens = []
        for group in S2_GROUPS:
            channels = [index[band] for band in SPACE_TIME_GROUPS[group]]
            projected = self.space_time_embed[group](frames[:, channels], patch)  # (B*T, D, h, w)
            projected = projected.reshape(b, t, -1, h, w).permute(0, 3, 4, 1, 2)  # (B, h, w, T, D)
            channel = self.s_t_channel_embed[groups.index(group)].expand(b, h, w, t, -1)
            encoding = torch.cat([channel, position.expand(b, h, w, t, -1), month[:, None, None].expand(b, h, w, t, -1),
                                  space[:, :, :, None].expand(b, h, w, t, -1)], dim=-1)
            tokens.append(projected + encoding)
        x = torch.stack(tokens, dim=4).reshape(b, h * w * t * len(S2_GROUPS), -1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x).reshape(b, h, w, t * len(S2_GROUPS), -1)


def normalisation_constants(bands: tuple[str, ...], mean: dict[str, float], std: dict[str, float],
                            multiplier: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Galileo's shift and divisor per band: x' = (x - (mean - m * std)) / (2 * m * std)."""
    shift = np.array([mean[b] - multiplier * std[b] for b in bands], np.float32)
    div = np.array([2 * multiplier * std[b] for b in bands], np.float32)
    return shift, div
