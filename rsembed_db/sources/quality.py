"""Input quality: value ranges, NaN and fill fractions, per-band statistics, quicklooks.

``chip_report`` describes a fetched chip; ``check_input`` applies it to every fetch
when ``SensorSpec.check_input`` is set (failing the tile when ``check_raise``);
``inspect_gee_patch`` (``rsembed_db.inspect``) applies it to one patch on request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rsembed_db.errors import BadInput
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.base import Chip
from rsembed_db.specs.sensor import SensorSpec

RGB = ("B04", "B03", "B02")
STRETCH = (2.0, 98.0)
MAX_FILL_FRACTION = 0.5


def _stats(values: np.ndarray, plane: np.ndarray, fill_value: float) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"nan_fraction": float(np.isnan(plane).mean()),
                           "fill_value_fraction": float((plane == fill_value).mean())}
    if finite.size:
        p_low, p_high = np.percentile(finite, STRETCH)
        out.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()),
                   std=float(finite.std()), p2=float(p_low), p98=float(p_high))
    return out


def _by_band(data: np.ndarray) -> np.ndarray:
    """(C, H, W) as given; a multi-frame (T, C, H, W) chip as (C, T, H, W)."""
    return data if data.ndim == 3 else np.moveaxis(data, 0, 1)


def chip_report(chip: Chip, sensor: SensorSpec, value_range: tuple[float, float] | None = None
                ) -> dict[str, Any]:
    """Value range, NaN / invalid / fill fractions, per-band statistics (over all frames of a
    multi-frame chip) and the issues found."""
    valid = chip.valid.astype(bool)
    per_band = _by_band(chip.data)
    bands = {band: _stats(plane[..., valid], plane, sensor.fill_value) for band, plane in zip(chip.bands, per_band)}
    finite = chip.data[..., valid][np.isfinite(chip.data[..., valid])]
    issues = []
    invalid = 1.0 - float(valid.mean())
    if invalid > MAX_FILL_FRACTION:
        issues.append(f"{invalid:.0%} of the pixels are fill (no valid imagery)")
    for band, stats in bands.items():
        if stats["nan_fraction"]:
            issues.append(f"band {band} holds NaN")
        if "std" in stats and stats["std"] == 0:
            issues.append(f"band {band} is constant ({stats['min']:g})")
    if value_range is not None and finite.size:
        outside = float(((finite < value_range[0]) | (finite > value_range[1])).mean())
        if outside:
            issues.append(f"{outside:.1%} of the values lie outside {list(value_range)}")
    grid = chip.grid
    return {
        "shape": list(chip.data.shape),
        "bands": list(chip.bands),
        "dtype": str(chip.data.dtype),
        "grid": {"crs": grid.crs, "transform": list(grid.transform)[:6], "width": grid.width,
                 "height": grid.height, "scale_m": grid.scale_m},
        "value_range": [float(finite.min()), float(finite.max())] if finite.size else None,
        "nan_fraction": float(np.isnan(chip.data).reshape(-1, *valid.shape).any(axis=0).mean()),
        "invalid_fraction": invalid,
        "valid_fraction": float(valid.mean()),
        "band_stats": bands,
        "issues": issues,
        "ok": not issues,
    }


def quicklook(chip: Chip, path: str | Path) -> Path:
    """Save an RGB PNG of the chip (B04/B03/B02, else the first three bands, else grey; of
    a multi-frame chip its first real frame), each channel stretched between its 2nd and
    98th percentile; invalid pixels black."""
    from PIL import Image

    names = [normalise_band(b) for b in chip.bands]
    data = chip.data if chip.data.ndim == 3 else chip.data[_first_real_frame(chip)]
    if all(b in names for b in RGB):
        planes = [data[names.index(b)] for b in RGB]
    else:
        planes = list(data[:3]) if len(chip.bands) >= 3 else [data[0]] * 3
    valid = chip.valid.astype(bool)
    channels = []
    for plane in planes:
        values = plane[valid & np.isfinite(plane)]
        low, high = np.percentile(values, STRETCH) if values.size else (0.0, 1.0)
        scaled = np.clip((plane - low) / max(high - low, 1e-12), 0, 1) * 255
        channels.append(np.where(valid, np.nan_to_num(scaled), 0).astype(np.uint8))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack(channels, axis=-1), mode="RGB").save(path)
    return path


def _first_real_frame(chip: Chip) -> int:
    """The first frame of a multi-frame chip that is not back-filled."""
    return next((i for i, filled in enumerate(chip.meta.get("frame_backfilled", [])) if not filled), 0)


def save_report(report: dict[str, Any], chip: Chip, out_dir: str | Path, name: str) -> dict[str, Any]:
    out = Path(out_dir)
    report = {**report, "quicklook": str(quicklook(chip, out / f"{name}.png"))}
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def check_input(chip: Chip, sensor: SensorSpec, name: str, model: str | None = None) -> dict[str, Any]:
    """``SensorSpec.check_input``: report on a fetched chip, saved to ``check_save_dir`` when set;
    BadInput (a TileFailure) listing the issues when ``check_raise`` and any were found."""
    report = chip_report(chip, sensor)
    if model is not None:
        report["model"] = model
    if sensor.check_save_dir:
        report = save_report(report, chip, sensor.check_save_dir, name)
    if report["issues"] and sensor.check_raise:
        raise BadInput(f"input check failed: {'; '.join(report['issues'])}")
    return report
