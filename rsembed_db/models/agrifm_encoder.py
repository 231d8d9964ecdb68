"""The AgriFM encoder (Li et al. 2026): a Video Swin Transformer with synchronised
spatio-temporal down-sampling, written for this project from the paper and the published
reference (github.com/flyakon/AgriFM, ``AgriFM/models/video_swin_transformer.py`` and
``configs/cropland_mapping.py``, Apache-2.0).

- Patch embedding: a (B, T, C, H, W) stack is zero-padded to multiples of the patch
  (4 frames x 2 x 2 px) and projected by a Conv3d to ``embed_dim`` (no norm).
- Four stages of Swin blocks over 3-D windows (8 frames x 7 x 7; a window side never
  exceeds the feature map's, and then that axis is not shifted): pre-norm window
  attention with a learned relative-position bias per head, shifted by half a window on
  odd blocks (cyclic roll, cross-window pairs masked with -100), then a GELU MLP.
- Between stages a patch merging that halves time and space together: 2 x 2 spatial
  neighbours concatenated (4C), each the mean of 2 consecutive frames (an odd frame
  count is zero-padded first), LayerNorm(4C), Linear(4C -> 2C, no bias).
- A final LayerNorm over channels; frames are folded into channels (``cat`` fusion):
  (B, C * D, H / 16, W / 16), C = 8 x ``embed_dim``.

Relative-position indices are sliced to the window's token count as the reference does
(``index[:N, :N]``), which is exact when only the time side of the window shrinks.
Parameter names follow the published checkpoint (``patch_emd``, ``backbone``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rsembed_db.models.layers import Mlp

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class AgriFMConfig:
    """The encoder of ``configs/cropland_mapping.py``."""

    in_chans: int = 10
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    patch_size: Triple = (4, 2, 2)
    window_size: Triple = (8, 7, 7)
    mlp_ratio: float = 4.0

    @property
    def out_dim(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


def fitted_window(size: Triple, window: Triple, shift: Triple) -> tuple[Triple, Triple]:
    """The window and shift for a (D, H, W) map: an axis no longer than the window uses the
    axis length and no shift."""
    d, h, w = ((s, 0) if s <= win else (win, sh) for s, win, sh in zip(size, window, shift))
    return (d[0], h[0], w[0]), (d[1], h[1], w[1])


def to_windows(x: torch.Tensor, window: Triple) -> torch.Tensor:
    """(B, D, H, W, C) -> (B * windows, wd * wh * ww, C), windows in (d, h, w) order."""
    b, d, h, w, c = x.shape
    x = x.reshape(b, d // window[0], window[0], h // window[1], window[1], w // window[2], window[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window[0] * window[1] * window[2], c)


def from_windows(windows: torch.Tensor, window: Triple, b: int, d: int, h: int, w: int) -> torch.Tensor:
    x = windows.reshape(b, d // window[0], h // window[1], w // window[2], *window, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def shift_mask(size: Triple, window: Triple, shift: Triple, device: torch.device) -> torch.Tensor:
    """(windows, N, N): 0 within a region of the rolled map, -100 across regions."""
    regions = torch.zeros((1, *size, 1), device=device)
    label = 0
    for ds in (slice(-window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for hs in (slice(-window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            for ws in (slice(-window[2]), slice(-window[2], -shift[2]), slice(-shift[2], None)):
                regions[:, ds, hs, ws] = label
                label += 1
    ids = to_windows(regions, window).squeeze(-1)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def relative_index(window: Triple) -> torch.Tensor:
    """(N, N) index into the bias table of every token pair of a full window."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(s) for s in window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel += torch.tensor([s - 1 for s in window])
    rel *= torch.tensor([(2 * window[1] - 1) * (2 * window[2] - 1), 2 * window[2] - 1, 1])
    return rel.sum(-1)


class WindowAttention(nn.Module):
    relative_position_index: torch.Tensor  # buffer (register_buffer)

    def __init__(self, dim: int, window: Triple, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1), heads))
        self.register_buffer("relative_position_index", relative_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index[:n, :n].reshape(-1)]
        scores = scores + bias.reshape(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            windows = mask.shape[0]
            scores = (scores.reshape(bw // windows, windows, self.heads, n, n) + mask[None, :, None]).reshape(
                bw, self.heads, n, n)
        return self.proj((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: Triple, shift: Triple, mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, d, h, w, _ = x.shape
        window, shift = fitted_window((d, h, w), self.window, self.shift)
        y = self.norm1(x)
        pads = [(window[i] - size % window[i]) % window[i] for i, size in enumerate((d, h, w))]
        y = F.pad(y, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        _, dp, hp, wp, _ = y.shape
        shifted = any(s > 0 for s in shift)
        if shifted:
            y = torch.roll(y, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        y = from_windows(self.attn(to_windows(y, window), mask if shifted else None), window, b, dp, hp, wp)
        if shifted:
            y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
        x = x + y[:, :d, :h, :w]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Halve time (mean of 2 frames, odd counts zero-padded) and space (2 x 2 -> 4C), then
    LayerNorm(4C) and Linear(4C -> 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, d, h, w, _ = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2, 0, d % 2))
        frames = (x[:, 0::2] + x[:, 1::2]) / 2
        merged = torch.cat([frames[:, :, 0::2, 0::2], frames[:, :, 1::2, 0::2], frames[:, :, 0::2, 1::2],
                            frames[:, :, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(merged))


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: Triple, mlp_ratio: float, merge: bool) -> None:
        super().__init__()
        self.window, self.shift = window, (window[0] // 2, window[1] // 2, window[2] // 2)
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, (0, 0, 0) if i % 2 == 0 else self.shift, mlp_ratio)
                                    for i in range(depth))
        self.downsample = PatchMerging(dim) if merge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> the same, or merged."""
        _, d, h, w, _ = x.shape
        window, shift = fitted_window((d, h, w), self.window, self.shift)
        pd, ph, pw = (-(-size // win) * win for size, win in zip((d, h, w), window))
        mask = shift_mask((pd, ph, pw), window, shift, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, cfg: AgriFMConfig) -> None:
        super().__init__()
        self.patch = cfg.patch_size
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, embed_dim, T', H', W')."""
        x = x.transpose(1, 2)
        pads = [(p - size % p) % p for p, size in zip(self.patch, x.shape[2:])]
        return self.proj(F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0])))


class Backbone(nn.Module):
    def __init__(self, cfg: AgriFMConfig) -> None:
        super().__init__()
        last = len(cfg.depths) - 1
        self.layers = nn.ModuleList(Stage(cfg.embed_dim * 2 ** i, depth, heads, cfg.window_size, cfg.mlp_ratio,
                                          merge=i < last)
                                    for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)))
        self.norm = nn.LayerNorm(cfg.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, C' * D', H', W') (frames folded into channels)."""
        x = x.permute(0, 2, 3, 4, 1)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x).permute(0, 4, 1, 2, 3)
        b, c, d, h, w = x.shape
        return x.reshape(b, c * d, h, w)


class AgriFMEncoder(nn.Module):
    """AgriFM's ``PretrainingSwinTransformer3DEncoder`` with the Sentinel-2 patch embedding:
    (B, T, 10, H, W) normalised -> (B, C * D', H / 16, W / 16) ``encoder_features``."""

    def __init__(self, cfg: AgriFMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_emd = PatchEmbed(cfg)
        self.backbone = Backbone(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.patch_emd(x))
