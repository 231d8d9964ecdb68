"""The THOR encoder (v1, ALiBi, patch-size embedding), written from the published
architecture (Forgaard et al. 2026, arXiv:2601.16011; FM4CS/THOR, MIT, and its TerraTorch
extension FM4CS/thor_terratorch_ext, Apache-2.0) for inference at one ground cover.

Facts it follows (names are the checkpoint's):
- one patch embedding per input channel, ``ind_patch_embed.patch_embed.<name>``
  (``Conv2d(1, D, 16, stride 16)``; Sentinel-1 IW and EW share ``S1:VV``/``S1:VH``), its
  kernel resized at run time to the 8 px patch by FlexiViT's pseudo-inverse resize
  (bicubic, antialiased resize matrix);
- each channel is first resampled (bilinear) to ``ground_cover / GSD`` pixels, so 10 m
  bands give 36 x 36 patches, 20 m bands 18 x 18 and 60 m bands 6 x 6 over 2880 m;
- the tokens of a spectral group (same sensor and GSD) are the mean of its channels'
  tokens (``subsetmean``), plus ``[sin-cos(patch size x GSD / (4 x 10 m)) | band_embed[group]]``
  (widths D - B and B; ``band_embed`` a fixed 1-D sin-cos table over THOR's group index);
- groups follow each other in the sequence (group-major, row-major inside); no CLS;
- position enters only as a 2-D ALiBi bias: minus the slope of each head times the
  Euclidean distance between patch centres in metres, divided by the largest patch
  size in metres (slopes as in ALiBi for the head count, buffer ``encoder_slopes``);
- timm pre-norm blocks (qkv bias, LayerNorm eps 1e-6) take the bias as attention mask;
  the final ``norm`` is not applied to the features THOR's wrapper returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

KERNEL = 16  # patch size of the stored patch-embedding kernels
REF_PATCH = 4  # FlexiViT reference patch size of the patch-size embedding
MIN_GSD = 10  # smallest GSD of THOR's channel table (m)


@dataclass(frozen=True)
class Channel:
    """One input channel: THOR's name, its patch-embedding name, GSD (m), group and group index."""

    name: str
    embed_name: str
    gsd: int
    group: str
    group_index: int


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi's head slopes: 2^(-8/n)^(i+1) for n a power of two, else the closest power's
    slopes followed by every other slope of twice that count."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_two(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


def sincos(width: int, positions: torch.Tensor) -> torch.Tensor:
    """(M, width): sin then cos of ``positions`` x 1 / 10000^(2i / width), float32."""
    freq = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32, device=positions.device) / (width / 2))
    angles = positions.reshape(-1, 1).float() * freq
    return torch.cat((angles.sin(), angles.cos()), dim=1)


def pi_resize_matrix(old: int, new: int) -> torch.Tensor:
    """(new*new, old*old) pseudo-inverse of the bicubic antialiased resize old -> new (FlexiViT)."""
    basis = torch.eye(old * old).reshape(old * old, 1, old, old)
    resized = F.interpolate(basis, (new, new), mode="bicubic", antialias=True).reshape(old * old, new * new)
    return torch.linalg.pinv(resized)


class ChannelPatchEmbed(nn.Module):
    """Holds ``patch_embed``: one ``Conv2d(1, D, 16, 16)`` per patch-embedding name."""

    def __init__(self, names: Sequence[str], dim: int) -> None:
        super().__init__()
        self.patch_embed = nn.ModuleDict({n: nn.Conv2d(1, dim, KERNEL, KERNEL) for n in dict.fromkeys(names)})


class ThorEncoder(nn.Module):
    """THOR's encoder for a fixed channel list (input order) at ``ground_cover`` metres."""

    encoder_slopes: torch.Tensor  # buffers (register_buffer)
    pinv: torch.Tensor

    def __init__(self, channels: Sequence[Channel], dim: int, depth: int, heads: int, band_dim: int,
                 ground_cover: int, patch_size: int) -> None:
        super().__init__()
        self.channels = list(channels)
        self.ground_cover, self.patch_size = ground_cover, patch_size
        self.groups = sorted({(c.group_index, c.group, c.gsd) for c in self.channels})
        self.pos_dim = dim - band_dim
        self.ind_patch_embed = ChannelPatchEmbed([c.embed_name for c in self.channels], dim)
        self.band_embed = nn.ParameterDict({
            group: nn.Parameter(sincos(band_dim, torch.tensor([float(index)]))[0], requires_grad=False)
            for index, group, _ in self.groups})
        self.register_buffer("encoder_slopes", torch.tensor(alibi_slopes(heads)))
        self.register_buffer("pinv", pi_resize_matrix(KERNEL, patch_size), persistent=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(dim)

    def group_sides(self) -> list[tuple[str, int]]:
        """(group name, patches per side) in sequence order."""
        return [(group, self.ground_cover // gsd // self.patch_size) for _, group, gsd in self.groups]

    def _embed_channel(self, x: torch.Tensor, channel: Channel) -> torch.Tensor:
        """(B, N, D) tokens of one (B, 1, S, S) channel resampled to its own GSD."""
        side = self.ground_cover // channel.gsd
        x = F.interpolate(x, (side, side), mode="bilinear")
        conv = cast(nn.Conv2d, self.ind_patch_embed.patch_embed[channel.embed_name])
        kernel = (conv.weight.reshape(conv.out_channels, -1) @ self.pinv.T).reshape(
            conv.out_channels, 1, self.patch_size, self.patch_size)
        return F.conv2d(x, kernel, conv.bias, stride=self.patch_size).flatten(2).transpose(1, 2)

    def _alibi(self, device: torch.device) -> torch.Tensor:
        """(1, heads, N, N) additive attention bias over all groups' patch centres."""
        points = []
        for _, _, gsd in self.groups:
            side = self.ground_cover // gsd // self.patch_size
            line = (torch.arange(side, dtype=torch.float32, device=device) * self.patch_size + self.patch_size / 2) * gsd
            points.append(torch.cartesian_prod(line, line))
        largest = max(self.patch_size * gsd for _, _, gsd in self.groups)
        centres = torch.cat(points) / largest
        distance = torch.cdist(centres, centres)
        return -(distance[None] * self.encoder_slopes[:, None, None])[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) last-block tokens (no final norm) of a (B, C, S, S) input, C = channels in order."""
        per_group: dict[str, list[torch.Tensor]] = {}
        for index, channel in enumerate(self.channels):
            per_group.setdefault(channel.group, []).append(self._embed_channel(x[:, index:index + 1], channel))
        sequence = []
        for _, group, gsd in self.groups:
            tokens = torch.stack(per_group[group], dim=-1).mean(dim=-1)
            size = torch.tensor([self.patch_size * gsd / (REF_PATCH * MIN_GSD)], device=x.device)
            extra = torch.cat((sincos(self.pos_dim, size).to(tokens.dtype), self.band_embed[group][None].to(tokens.dtype)),
                              dim=1)
            sequence.append(tokens + extra)
        tokens = torch.cat(sequence, dim=1)
        bias = self._alibi(x.device).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens, bias)
        return tokens
