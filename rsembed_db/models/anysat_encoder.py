"""The AnySat encoder (Astruc et al. 2025) on Sentinel-2 time series, written for this
project from the paper and the published reference (github.com/gastruc/AnySat, MIT).

AnySat works on patches of a fixed ground size (``patch_size_m``, a multiple of 10 m)
cut into sub-patches; for Sentinel-2 a sub-patch is one 10 m pixel. Three stages:

1. **Projector** (per modality; here ``projector_s2``): a lightweight temporal attention
   encoder (L-TAE) per pixel. Each date's 10 bands go through an MLP (Linear, GroupNorm
   of 4 groups, ReLU; widths D/8, D/2, D, 2D, D), a GroupNorm of ``n_head`` groups over
   channels and dates, plus a sin-cos encoding of the day of year (period 367, one
   ``D / n_head`` block repeated per head). One learned query per head attends over the
   dates (keys: a linear map to ``n_head x d_k``; values: the head's channel block), the
   heads are concatenated, then a Linear + GroupNorm(4) + ReLU and a GroupNorm(n_head).
2. **Spatial encoder**: per patch, a CLS token and its sub-patch tokens plus a 2-D sin-cos
   position (sub-patch offsets x 10 m) through ViT blocks whose attention adds an image
   relative-position term on the keys (iRPE: Euclidean distance buckets, contextual,
   shared across heads), then a LayerNorm; the CLS is the patch token.
3. **Combiner**: a CLS token and the patch tokens plus a 2-D sin-cos position (patch
   offsets x patch size in 10 m units) through ViT blocks (LayerNorm eps 1e-6) and a last
   cross-attention block in which one learned query per position (plus its position
   encoding and the iRPE term) attends over the tokens, without a residual, then an MLP
   with one.

Outputs (``forward_release`` of the reference): ``tile`` the final CLS (D), ``patch`` the
final patch tokens (n x n x D), ``dense`` each sub-patch's spatial-encoder token
concatenated after its patch's final token (n s x n s x 2D). Parameter names follow the
published ``AnySat.pth`` (``AnyModule``); projectors of other modalities are not built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rsembed_db.models.layers import Mlp

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
S2_PIXEL_M = 10  # AnySat's Sentinel-2 resolution: every s2 input pixel is read as 10 m
DOY_PERIOD = 367
RPE_ALPHA, RPE_BETA, RPE_GAMMA = 1.9, 3.8, 15.2  # iRPE ratio 1.9: (1, 2, 8) x ratio


@dataclass(frozen=True)
class AnySatConfig:
    dim: int = 768
    depth: int = 6
    heads: int = 12
    ltae_heads: int = 16
    ltae_key_dim: int = 8
    mlp_ratio: float = 4.0


def sincos_1d(width: int, positions: torch.Tensor) -> torch.Tensor:
    """(M, width) sin | cos at the MAE frequencies 10000^(-2i / width)."""
    omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32, device=positions.device) / (width / 2.0))
    angles = positions.reshape(-1, 1).float() * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(width: int, side: int, step: float, device: torch.device) -> torch.Tensor:
    """(1 + side^2, width): a zero row (CLS), then for (row i, col j) row-major
    sincos(j * step) | sincos(i * step)."""
    idx = torch.arange(side, dtype=torch.float32, device=device) * step
    grid = torch.cat([sincos_1d(width // 2, idx.repeat(side)), sincos_1d(width // 2, idx.repeat_interleave(side))], 1)
    return torch.cat([torch.zeros(1, width, device=device), grid])


def rpe_buckets(side: int, device: torch.device) -> torch.Tensor:
    """(1 + side^2, 1 + side^2) iRPE bucket of every token pair: the rounded Euclidean
    distance between the two positions, compressed logarithmically beyond alpha and capped
    at beta, offset by int(beta); the CLS row and column take the extra last bucket."""
    rows = torch.arange(side, device=device).repeat_interleave(side)
    cols = torch.arange(side, device=device).repeat(side)
    dist = ((rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2).float().sqrt().round()
    far = dist > RPE_ALPHA
    compressed = (RPE_ALPHA + torch.log(dist.clamp(min=1.0) / RPE_ALPHA) / math.log(RPE_GAMMA / RPE_ALPHA)
                  * (RPE_BETA - RPE_ALPHA)).round().clamp(max=RPE_BETA)
    index = torch.where(far, compressed, dist).long() + int(RPE_BETA)
    extra = 2 * int(RPE_BETA) + 1
    out = torch.full((side * side + 1, side * side + 1), extra, dtype=torch.long, device=device)
    out[1:, 1:] = index
    return out


class KeyRPE(nn.Module):
    """Contextual iRPE on keys, one table shared by the heads:
    ``rpe[b, :, i, j] = q[b, 0, i] . table[:, bucket(i, j)]``.

    The first head's queries give the term of every head: the reference's pure-PyTorch
    path (used when its optional C++ ``rpe_ops`` extension is not built, as in its hub
    entry point) gathers with a one-head index, and the published weights run that way.
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.lookup_table_weight = nn.Parameter(torch.zeros(1, head_dim, 2 * int(RPE_BETA) + 2))

    def forward(self, q: torch.Tensor, side: int) -> torch.Tensor:
        per_bucket = q[:, :1] @ self.lookup_table_weight              # (B, 1, L, buckets)
        buckets = rpe_buckets(side, q.device)                         # (L, L)
        return per_bucket[:, :, torch.arange(len(buckets), device=q.device)[:, None], buckets]


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = t.shape
    return t.reshape(b, n, heads, d // heads).transpose(1, 2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


class Attention(nn.Module):
    """Self-attention with a fused qkv projection, optionally with the key iRPE term."""

    def __init__(self, dim: int, heads: int, rpe: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rpe_k = KeyRPE(dim // heads) if rpe else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        if self.rpe_k is None:
            return self.proj(_merge(F.scaled_dot_product_attention(q, k, v)))
        q = q * q.shape[-1] ** -0.5
        scores = q @ k.transpose(-2, -1) + self.rpe_k(q, math.isqrt(x.shape[1] - 1))
        return self.proj(_merge(scores.softmax(dim=-1) @ v))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float, rpe: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, rpe)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttention(nn.Module):
    """One learned query per position (plus its 2-D position) over all tokens, with iRPE."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.wk, self.wv = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_learned = nn.Parameter(torch.zeros(1, 1, dim))
        self.rpe_k = KeyRPE(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        b, n, d = x.shape
        side = math.isqrt(n - 1)
        q = _heads(self.q_learned + sincos_2d(d, side, scale, x.device)[None], self.heads).expand(b, -1, -1, -1)
        k, v = _heads(self.wk(x), self.heads), _heads(self.wv(x), self.heads)
        scores = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5 + self.rpe_k(q, side)
        return self.proj(_merge(scores.softmax(dim=-1) @ v))


class CrossBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        x = self.attn(self.norm1(x), scale)           # no residual around the cross-attention
        return x + self.mlp(self.norm2(x))


def _norm_act(width: int, groups: int) -> list[nn.Module]:
    return [nn.GroupNorm(groups, width), nn.ReLU()]


class TemporalAttentionEncoder(nn.Module):
    """L-TAE: (B, T, C, H, W) + day of year (B, T) -> (B, D, H, W)."""

    def __init__(self, channels: int, dim: int, heads: int, key_dim: int) -> None:
        super().__init__()
        widths = [channels, dim // 8, dim // 2, dim, 2 * dim, dim]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), *_norm_act(b, 4), nn.Dropout(0.0)]
        self.inconv = nn.Sequential(*layers)
        self.in_norm = nn.GroupNorm(heads, dim)
        self.attention_heads = _TemporalQuery(heads, key_dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), *_norm_act(dim, 4))
        self.out_norm = nn.GroupNorm(heads, dim)
        self.heads, self.dim = heads, dim

    def day_encoding(self, doy: torch.Tensor) -> torch.Tensor:
        """(N, T, D): per head the same ``D / heads`` sin (even) / cos (odd) encoding."""
        width = self.dim // self.heads
        denom = DOY_PERIOD ** (2 * (torch.arange(width, device=doy.device) // 2).float() / width)
        table = doy[..., None].float() / denom
        table = torch.where(torch.arange(width, device=doy.device) % 2 == 0, table.sin(), table.cos())
        return table.repeat(1, 1, self.heads)

    def forward(self, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        out = self.inconv(x.permute(0, 3, 4, 1, 2).reshape(b * h * w * t, c)).reshape(b * h * w, t, self.dim)
        out = self.in_norm(out.transpose(1, 2)).transpose(1, 2)
        out = out + self.day_encoding(doy.repeat_interleave(h * w, dim=0))
        out = self.out_norm(self.mlp(self.attention_heads(out)))
        return out.reshape(b, h, w, self.dim).permute(0, 3, 1, 2)


class _TemporalQuery(nn.Module):
    """One learned query per head over the dates; values are the head's channel block."""

    def __init__(self, heads: int, key_dim: int, dim: int) -> None:
        super().__init__()
        self.Q = nn.Parameter(torch.zeros(heads, key_dim))
        self.fc1_k = nn.Linear(dim, heads * key_dim)
        self.heads, self.key_dim = heads, key_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        keys = self.fc1_k(x).reshape(n, t, self.heads, self.key_dim)
        weights = (torch.einsum("ntha,ha->nht", keys, self.Q) / self.key_dim ** 0.5).softmax(dim=-1)
        values = x.reshape(n, t, self.heads, d // self.heads)
        return torch.einsum("nht,nthc->nhc", weights, values).reshape(n, d)


class S2Projector(nn.Module):
    def __init__(self, cfg: AnySatConfig) -> None:
        super().__init__()
        self.patch_embed = TemporalAttentionEncoder(len(S2_BANDS), cfg.dim, cfg.ltae_heads, cfg.ltae_key_dim)
        self.pad_parameter = nn.Parameter(torch.tensor(0.0), requires_grad=False)  # fills masked dates in training


class SpatialEncoder(nn.Module):
    def __init__(self, cfg: AnySatConfig) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.predictor_blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, 1e-5, rpe=True)
                                              for _ in range(cfg.depth))
        self.predictor_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """(N, s*s, D) sub-patch tokens -> (N, 1 + s*s, D): the patch token, then the sub-patches."""
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = x + sincos_2d(x.shape[-1], scale, S2_PIXEL_M, x.device)
        for block in self.predictor_blocks:
            x = block(x)
        return self.predictor_norm(x)


class AnySatS2(nn.Module):
    """AnySat's ``AnyModule`` for Sentinel-2 time series (``forward_release`` semantics)."""

    def __init__(self, cfg: AnySatConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.projector_s2 = S2Projector(cfg)
        self.spatial_encoder = SpatialEncoder(cfg)
        self.blocks = nn.ModuleList([*(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, 1e-6, rpe=False)
                                       for _ in range(cfg.depth)), CrossBlock(cfg.dim, cfg.heads, cfg.mlp_ratio)])

    def forward(self, s2: torch.Tensor, doy: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``s2`` (B, T, 10, H, W) normalised, H = W a multiple of ``scale`` (pixels per patch
        side); ``doy`` (B, T) day of year, 0 = 1 January. Returns the final tokens
        (B, 1 + n*n, D) (CLS first, patches row-major) and the sub-patch tokens
        (B, n*n, scale*scale, D)."""
        b, _, _, height, width = s2.shape
        n = height // scale
        pixels = self.projector_s2.patch_embed(s2, doy)                               # (B, D, H, W)
        subs = pixels.unfold(2, scale, scale).unfold(3, scale, scale)                  # (B, D, n, n, s, s)
        subs = subs.reshape(b, self.cfg.dim, n * n, scale * scale).permute(0, 2, 3, 1)
        encoded = self.spatial_encoder(subs.reshape(b * n * n, scale * scale, -1), scale)
        patches = encoded[:, 0].reshape(b, n * n, -1)
        position = sincos_2d(self.cfg.dim, n, scale, s2.device)
        x = torch.cat([self.cls_token.expand(b, -1, -1), patches + position[1:]], dim=1)
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1](x, scale), encoded[:, 1:].reshape(b, n * n, scale * scale, -1)


def dense_grid(tokens: torch.Tensor, subs: torch.Tensor) -> torch.Tensor:
    """(B, 2D, n s, n s): each sub-patch's token after its patch's final token."""
    b, patches, per_patch, d = subs.shape
    n, s = math.isqrt(patches), math.isqrt(per_patch)
    both = torch.cat([tokens[:, 1:, None].expand(-1, -1, per_patch, -1), subs], dim=-1)  # (B, n*n, s*s, 2D)
    return both.reshape(b, n, n, s, s, 2 * d).permute(0, 5, 1, 3, 2, 4).reshape(b, 2 * d, n * s, n * s)
