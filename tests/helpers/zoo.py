"""Shared pieces of the model-zoo tests: chips of known content and a fake Hugging Face cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from shapely.geometry import box

from rsembed_db.sources.base import Chip
from rsembed_db.tiling.chip_grid import ChipGrid

CRS = "EPSG:32633"
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def make_chip(bands, size=224, scale=10.0, seed=0, dn=None, date="2022-06-15", frames=None,
              origin=(500000.0, 5800000.0), crs=CRS) -> Chip:
    shape = (len(bands), size, size) if frames is None else (frames, len(bands), size, size)
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 4000, shape).astype(np.float32) if dn is None else np.full(shape, dn, np.float32)
    x0, y0 = origin
    grid = ChipGrid(crs, Affine(scale, 0, x0, 0, -scale, y0), size, size,
                    box(x0, y0 - scale * size, x0 + scale * size, y0))
    return Chip(data, np.ones((size, size), bool), tuple(bands), grid, {"input_time": date})


def hf_file(cache: Path, repo_id: str, filename: str, revision: str) -> Path:
    """Where ``hf_hub_download`` finds ``filename`` of ``repo_id`` at ``revision`` in ``cache``."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    if revision != FAKE_COMMIT and len(revision) != 40:  # a branch: refs/<branch> -> commit
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / revision).write_text(FAKE_COMMIT)
        revision = FAKE_COMMIT
    path = folder / "snapshots" / revision / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
