"""Colours from embeddings: the first three principal components of a set of vectors as RGB.

Vectors are scaled to unit length first (the direction is what cosine search compares),
centred on the fitted mean and projected on the top three right singular vectors. Each
component's sign is fixed so that its largest-magnitude loading is positive (an SVD's
signs are arbitrary), and its values are mapped linearly from the 2nd..98th percentile
of the fitted vectors to 0..255 (clipped), so that outliers do not wash out the rest.
Fewer than three components (fewer rows or dimensions) leave the missing channels at 128.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COMPONENTS = 3
LOW_PCT, HIGH_PCT = 2.0, 98.0


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float64."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


@dataclass(frozen=True)
class PcaColours:
    """A fitted projection: ``mean`` (D,), ``components`` (C, D) with C <= 3, per-component
    ``low`` / ``high`` (the values mapped to 0 and 255) and ``explained`` variance ratios."""

    mean: np.ndarray
    components: np.ndarray
    low: np.ndarray
    high: np.ndarray
    explained: np.ndarray
    fit_rows: int

    @classmethod
    def fit(cls, vectors: np.ndarray) -> PcaColours:
        """Fit on ``vectors`` (N, D); N may be 0 (every colour is then grey)."""
        data = unit_rows(vectors)
        n, dim = data.shape
        mean = data.mean(axis=0) if n else np.zeros(dim)
        centred = data - mean
        if n < 2:
            empty = np.zeros(0)
            return cls(mean, np.zeros((0, dim)), empty, empty, empty, n)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        variance = singular ** 2
        keep = min(COMPONENTS, int((variance > variance.sum() * 1e-12).sum()))
        components = vt[:keep]
        signs = np.sign(components[np.arange(keep), np.abs(components).argmax(axis=1)])
        components = components * signs[:, None]
        scores = centred @ components.T
        low, high = (np.percentile(scores, LOW_PCT, axis=0), np.percentile(scores, HIGH_PCT, axis=0))
        total = variance.sum()
        return cls(mean, components, low, high, variance[:keep] / total if total else np.zeros(keep), n)

    def colours(self, vectors: np.ndarray) -> np.ndarray:
        """(N, 3) uint8 RGB of ``vectors`` (N, D)."""
        data = unit_rows(vectors)
        out = np.full((len(data), COMPONENTS), 128, dtype=np.uint8)
        if len(self.components) == 0 or len(data) == 0:
            return out
        scores = (data - self.mean) @ self.components.T
        span = self.high - self.low
        scaled = np.where(span > 0, (scores - self.low) / np.where(span > 0, span, 1.0), 0.5)
        out[:, :len(self.components)] = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"fit_rows": self.fit_rows, "components": len(self.components),
                "explained_variance_ratio": [round(float(v), 6) for v in self.explained]}
