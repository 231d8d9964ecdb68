"""Input inspection: fetch exactly what a model would receive and report on it.

``inspect_gee_patch`` (the reference library's name; it works with every source)
resolves the model's input contract (its default sensor, patched by ``sensor`` /
``fetch``), builds the same chip grid, fetches from the same source as an embedding
would, and reports value ranges, NaN and fill fractions and per-band statistics,
optionally saving an RGB quicklook PNG (2-98 percentile stretch) and the report.
``check_input`` is the same report applied to every fetch when
``SensorSpec.check_input`` is set (failing the tile when ``check_raise``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rsembed_db.models.base import ModelDescription
from rsembed_db.models.registry import get_embedder
from rsembed_db.sources.bands import normalise_band
from rsembed_db.sources.base import Chip, ImagerySource, TileFailure
from rsembed_db.sources.factory import Imagery, make_source
from rsembed_db.specs.errors import SpecError
from rsembed_db.specs.sensor import FetchSpec, SensorSpec, resolve_sensor
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for

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


def chip_report(chip: Chip, sensor: SensorSpec, value_range: tuple[float, float] | None = None
                ) -> dict[str, Any]:
    """Value range, NaN / invalid / fill fractions, per-band statistics and the issues found."""
    valid = chip.valid.astype(bool)
    bands = {band: _stats(plane[valid], plane, sensor.fill_value) for band, plane in zip(chip.bands, chip.data)}
    finite = chip.data[:, valid][np.isfinite(chip.data[:, valid])]
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
        "nan_fraction": float(np.isnan(chip.data).any(axis=0).mean()),
        "invalid_fraction": invalid,
        "valid_fraction": float(valid.mean()),
        "band_stats": bands,
        "issues": issues,
        "ok": not issues,
    }


def quicklook(chip: Chip, path: str | Path) -> Path:
    """Save an RGB PNG of the chip (B04/B03/B02, else the first three bands, else grey),
    each channel stretched between its 2nd and 98th percentile; invalid pixels black."""
    from PIL import Image

    names = [normalise_band(b) for b in chip.bands]
    if all(b in names for b in RGB):
        planes = [chip.data[names.index(b)] for b in RGB]
    else:
        planes = list(chip.data[:3]) if len(chip.bands) >= 3 else [chip.data[0]] * 3
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


def _save(report: dict[str, Any], chip: Chip, out_dir: str | Path, name: str) -> dict[str, Any]:
    out = Path(out_dir)
    report = {**report, "quicklook": str(quicklook(chip, out / f"{name}.png"))}
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def check_input(chip: Chip, sensor: SensorSpec, name: str,
                description: ModelDescription | None = None) -> dict[str, Any]:
    """``SensorSpec.check_input``: report on a fetched chip, saved to ``check_save_dir`` when set;
    TileFailure listing the issues when ``check_raise`` and any were found."""
    report = chip_report(chip, sensor)
    if description is not None:
        report["model"] = description.name
    if sensor.check_save_dir:
        report = _save(report, chip, sensor.check_save_dir, name)
    if report["issues"] and sensor.check_raise:
        raise TileFailure(f"input check failed: {'; '.join(report['issues'])}")
    return report


def inspect_gee_patch(*, spatial: SpatialSpec, temporal: TemporalSpec, model: str | None = None,
                      sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                      modality: str | None = None, source: str | ImagerySource | None = None,
                      imagery: Imagery = None, imagery_date: str | None = None,
                      model_config: dict[str, Any] | None = None,
                      value_range: tuple[float, float] | None = None,
                      out_dir: str | Path | None = None, name: str = "patch",
                      return_array: bool = False) -> dict[str, Any]:
    """Fetch the patch a model (or a bare ``sensor``) would receive and report on it.

    With ``model`` the model's input contract applies: its default sensor patched by
    ``sensor``/``fetch``, its bands and scale, the same chip grid. ``out_dir`` saves
    ``<name>.png`` (RGB quicklook) and ``<name>.json`` (the report); ``return_array``
    adds the (C, H, W) data and (H, W) valid mask under ``"array"`` / ``"valid"``.
    """
    description = None
    if model is not None:
        embedder = get_embedder(model, **(model_config or {}))
        description = embedder.describe()
        if modality is not None and modality not in description.modalities:
            raise SpecError("modality", f"model {model!r} does not support {modality!r}",
                            description.modalities)
        sensor = resolve_sensor(embedder.default_sensor(), sensor, fetch)
    elif sensor is None:
        raise SpecError("sensor", "give a model (its input contract is used) or a sensor")
    elif fetch is not None:
        sensor = resolve_sensor(sensor, None, fetch)
    counted = make_source(source, imagery, imagery_date)
    grid = chip_grid_for(spatial, sensor.scale_m)
    chip = counted.fetch(grid, temporal, sensor)
    report = chip_report(chip, sensor, value_range)
    report.update(source=counted.name, sensor=sensor.to_dict(), temporal=temporal.to_dict(),
                  spatial=spatial.to_dict(), meta=chip.meta)
    if description is not None:
        report["model"] = {"name": description.name, "bands": list(description.bands),
                           "scale_m": description.scale_m, "image_size": description.image_size,
                           "normalisation": description.normalisation}
    if out_dir is not None:
        report = _save(report, chip, out_dir, name)
    if return_array:
        report.update(array=chip.data, valid=chip.valid)
    return report
