"""A second acquisition of the bundled scene with a known change, for change-detection tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from tests.conftest import SCENE

# Where the scene "changes" (lon/lat): the eastern part of examples/region.geojson.
CHANGED_BOX = (12.615, 52.46, 12.69, 52.52)


def changed_scene(folder: Path, date: str = "20210615") -> Path:
    """A copy of the bundled scene named with ``date`` (YYYYMMDD) whose pixels inside
    ``CHANGED_BOX`` are mirrored left-right and brightened by 40 %: the texture and level
    change there, everywhere else the copy is identical."""
    out = folder / f"havelland_s2l1c_{date}_changed.tif"
    with rasterio.open(SCENE) as src:
        profile, data = src.profile, src.read()
        rows, cols = rasterio.transform.rowcol(src.transform, *_corners(src.crs))
    r0, r1 = sorted(rows)
    c0, c1 = sorted(cols)
    r0, c0 = max(r0, 0), max(c0, 0)
    block = data[:, r0:r1, c0:c1].astype(np.float64)
    data[:, r0:r1, c0:c1] = np.clip(block[:, :, ::-1] * 1.4, 0, np.iinfo(data.dtype).max).astype(data.dtype)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        with rasterio.open(SCENE) as src:
            dst.descriptions = src.descriptions
    return out


def _corners(crs) -> tuple[list[float], list[float]]:
    from pyproj import Transformer

    to_scene = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    xs, ys = to_scene.transform([CHANGED_BOX[0], CHANGED_BOX[2]], [CHANGED_BOX[3], CHANGED_BOX[1]])
    return list(xs), list(ys)
