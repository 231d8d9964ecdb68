"""Exact, order-independent cross-correlation: float64 GEMMs on fixed-point operands.

The filters are rounded to multiples of ``2**-FILTER_BITS`` and the inputs (clamped to
``+-INPUT_LIMIT``) are split into a coarse part on a ``2**-hi_bits`` grid and a fine
remainder on a ``2**-lo_bits`` grid. The two grids are chosen from the filters' largest
L1 norm so that every product and every partial sum of the two dot products
``w . x_hi`` and ``w . x_lo`` is an integer multiple of its grid step below ``2**53``
steps: float64 holds each of them exactly. A matrix product of such operands is
therefore *exact* whatever its summation order, blocking, FMA use or thread count, and
the response ``fl(w . x_hi + w . x_lo)`` is the correctly rounded float64 value of the
exact dot product of the rounded filters with the rounded inputs. Reproducibility holds
by construction: the same inputs give the same bits with any BLAS, batch composition,
chunking or number of threads.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

FILTER_BITS = 30  # filters are rounded to multiples of 2**-30 (|error| <= 4.7e-10)
INPUT_LIMIT = 4096.0  # inputs are clamped to +-4096 (standardised: never reached by real data)
_MANTISSA = 2.0**53
_BAND_PIXELS = 4096  # output pixels per im2col band (36 taps x 4096 x 8 B = 1.2 MB per part)
_BLOCK = 1 << 17  # float64 responses per GEMM block (1 MiB: two blocks stay in L2)


class ExactCorrelation:
    """'Valid' cross-correlation of (C, H+k-1, W+k-1) inputs with (F, C, k, k) filters."""

    def __init__(self, filters: np.ndarray) -> None:
        count, channels, k, _ = filters.shape
        steps = np.round(np.asarray(filters, np.float64) * 2.0**FILTER_BITS).reshape(count, -1)
        self.kernel_size, self.count = k, count
        self.weights = torch.from_numpy(steps * 2.0**-FILTER_BITS)  # (F, C*k*k), in im2col's (c, i, j) order
        # Largest sum of |w| of one filter, in grid steps: integers below 2**53, so fsum is exact.
        l1 = max(math.fsum(abs(v) for v in row) for row in steps.tolist()) * 2.0**-FILTER_BITS
        self._buffers = threading.local()
        self.hi_bits = _largest_bits(l1 * INPUT_LIMIT)
        self.lo_bits = _largest_bits(l1 * 2.0 ** -(self.hi_bits + 1))

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` clamped and rounded to the input grid, as (coarse, fine) float64 parts."""
        x = np.clip(x, -INPUT_LIMIT, INPUT_LIMIT)
        hi = np.round(x * 2.0**self.hi_bits) * 2.0**-self.hi_bits
        lo = np.round((x - hi) * 2.0**self.lo_bits) * 2.0**-self.lo_bits  # x - hi is exact
        return hi, lo

    def relu_pair(self, padded: np.ndarray, bias: float, out: torch.Tensor) -> None:
        """``out`` (2F, H*W) float32 = [relu(z - bias); relu(-z - bias)] of a padded
        (C, H+k-1, W+k-1) input, z its float64 responses, each rounded once to float32."""
        k = self.kernel_size
        height, width = padded.shape[1] - k + 1, padded.shape[2] - k + 1
        rows = max(1, _BAND_PIXELS // width)
        hi, lo = self.split(padded)
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            window = slice(r0, r1 + k - 1)
            self._fill(self._columns(hi[:, window]), self._columns(lo[:, window]), bias,
                       out[:, r0 * width:r1 * width])

    def relu_pair_at(self, padded: np.ndarray, pixels: np.ndarray, bias: float) -> np.ndarray:
        """(2F, n) float32: ``relu_pair``'s columns at ``pixels`` (n flat indices into the
        H*W output) only, the same values computed for the selected pixels alone."""
        k, (channels, _, padded_width) = self.kernel_size, padded.shape
        width = padded_width - k + 1
        taps = (np.arange(k)[:, None] * padded_width + np.arange(k)).reshape(-1)  # (k*k,) in (i, j) order
        origins = pixels // width * padded_width + pixels % width
        hi, lo = (part.reshape(channels, -1) for part in self.split(padded))
        out = np.empty((2 * self.count, len(pixels)), dtype=np.float32)
        for p0 in range(0, len(pixels), _BAND_PIXELS):
            index = taps[:, None] + origins[None, p0:p0 + _BAND_PIXELS]
            hi_columns, lo_columns = (torch.from_numpy(part[:, index].reshape(channels * k * k, -1))
                                      for part in (hi, lo))
            self._fill(hi_columns, lo_columns, bias, torch.from_numpy(out[:, p0:p0 + _BAND_PIXELS]))
        return out

    def _fill(self, hi_columns: torch.Tensor, lo_columns: torch.Tensor, bias: float, out: torch.Tensor) -> None:
        """``out`` (2F, P) from the (C*k*k, P) columns of the two input parts, in blocks that
        stay in cache."""
        count, pixels = self.count, hi_columns.shape[1]
        step = max(1, _BLOCK // count)
        scratch = self._scratch(2 * count * min(step, pixels))
        for p0 in range(0, pixels, step):
            p1 = min(pixels, p0 + step)
            size = count * (p1 - p0)
            z = scratch[:size].view(count, p1 - p0)
            fine = scratch[size:2 * size].view(count, p1 - p0)
            torch.mm(self.weights, hi_columns[:, p0:p1], out=z)
            torch.mm(self.weights, lo_columns[:, p0:p1], out=fine)
            z.add_(fine)  # both sums are exact: this is the one rounding
            _relu_pair(z, fine, bias, out[:count, p0:p1], out[count:, p0:p1])

    def _scratch(self, size: int) -> torch.Tensor:
        """A float64 buffer of ``size`` elements, kept per thread: reused, it stays in cache."""
        buffer = getattr(self._buffers, "scratch", None)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers.scratch = torch.from_numpy(np.empty(size))
        return buffer

    def _columns(self, window: np.ndarray) -> torch.Tensor:
        """(C*k*k, h*w) patches of a (C, h+k-1, w+k-1) window, in (c, i, j) order."""
        k = self.kernel_size
        view = sliding_window_view(window, (k, k), axis=(1, 2))  # (C, h, w, k, k)
        return torch.from_numpy(np.array(view.transpose(0, 3, 4, 1, 2), order="C").reshape(-1, view.shape[1] * view.shape[2]))


def _relu_pair(z: torch.Tensor, spare: torch.Tensor, bias: float, positive: torch.Tensor,
               negative: torch.Tensor) -> None:
    """``positive = relu(z - bias)``, ``negative = relu(-z - bias)`` in float32 from float64 ``z``
    (``spare``: a float64 buffer of its shape). Rounding keeps signs, so clamping after the
    one rounding to float32 equals rounding relu(...) computed in float64."""
    if bias:
        torch.add(z, bias, out=spare)
        negative.copy_(spare)
        torch.neg(negative, out=negative)  # -(z + bias) = -z - bias exactly
        positive.copy_(z.sub_(bias))
    else:
        positive.copy_(z)
        torch.neg(positive, out=negative)  # negation is exact: -round(z) = round(-z)
    positive.clamp_min_(0.0)
    negative.clamp_min_(0.0)


def _largest_bits(bound: float) -> int:
    """Largest b >= 0 with bound * 2**(FILTER_BITS + b) <= 2**53."""
    bits = 0
    if bound * 2.0**FILTER_BITS > _MANTISSA:
        raise ValueError(f"filters too large for an exact correlation: L1 bound {bound}")
    while bound * 2.0 ** (FILTER_BITS + bits + 1) <= _MANTISSA:
        bits += 1
    return bits
