"""FoMo-Net_1: FoMo-Bench's ``MultiSpectralViT`` with one shared embedding for every band.

Written from the FoMo-Bench paper (Bountos, Ouaknine, Rolnick 2023, arXiv:2312.10114) and
the layout of the published checkpoint ``fomo_single_embedding_layer_weights.pt``
(github.com/RolnickLab/FoMo-Bench, MIT). Module names follow that checkpoint.

Each band is cut into ``patch x patch`` patches of one channel; every patch goes through
the same embedding (LayerNorm -> Linear -> LayerNorm) and gets the learned embedding of
its band's modality key (``spectral_embedding``) and of its position
(``pos_embedding[1:]``; entry 0 is never used). The tokens of all bands, band after band,
then pass a pre-norm transformer (attention without qkv bias, GELU MLP) and its final
LayerNorm. No CLS token enters the sequence (``cls_token`` is stored but unused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

MODALITY_KEYS = 37  # entries of FoMo's modality_channels (planet, S1, S2, Landsat, aerial, DEM, Gaofen-2)


class BandPatches(nn.Module):
    """(B, 1, H, W) -> (B, h*w, p*p): one band's patches, row-major, pixels row-major inside."""

    def __init__(self, patch: int) -> None:
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        p = self.patch
        x = x.reshape(b, height // p, p, width // p, p).permute(0, 1, 3, 2, 4)
        return x.reshape(b, (height // p) * (width // p), p * p)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, -1))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(dim_head)) v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.ModuleList([Attention(dim, heads, dim_head), FeedForward(dim, mlp_dim)])
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            attention, feed_forward = cast(nn.ModuleList, layer)
            x = x + attention(x)
            x = x + feed_forward(x)
        return self.norm(x)


class MultiSpectralViT(nn.Module):
    """Tokens (B, C * h * w, D) of a (B, C, S, S) image whose band c has modality key ``keys[c]``."""

    def __init__(self, image_size: int, patch_size: int, dim: int, depth: int, heads: int, mlp_dim: int,
                 dim_head: int = 64) -> None:
        super().__init__()
        patches = (image_size // patch_size) ** 2
        self.to_patch_embedding = nn.Sequential(BandPatches(patch_size), nn.LayerNorm(patch_size ** 2),
                                                nn.Linear(patch_size ** 2, dim), nn.LayerNorm(dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, patches + 1, dim))
        self.spectral_embedding = nn.Parameter(torch.randn(1, MODALITY_KEYS + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim)

    def forward(self, x: torch.Tensor, keys: Sequence[int]) -> torch.Tensor:
        if x.shape[1] != len(keys):
            raise ValueError(f"{x.shape[1]} bands but {len(keys)} modality keys")
        tokens = []
        for band, key in enumerate(keys):
            embedded = self.to_patch_embedding(x[:, band:band + 1])
            tokens.append(embedded + self.spectral_embedding[:, key] + self.pos_embedding[:, 1:embedded.shape[1] + 1])
        return self.transformer(torch.cat(tokens, dim=1))
