"""``inspect_gee_patch``: fetch exactly what a model would receive and report on it.

The reference library's name; it works with every source. It resolves the model's
input contract (its default sensor, patched by ``sensor`` / ``fetch``), builds the
same chip grid, fetches from the same source as an embedding would, and reports value
ranges, NaN and fill fractions and per-band statistics (``sources.quality``),
optionally saving an RGB quicklook PNG (2-98 percentile stretch) and the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.producers.catalog import get_embedder
from rsembed_db.sources.base import ImagerySource
from rsembed_db.sources.factory import Imagery, make_source
from rsembed_db.sources.quality import chip_report, save_report
from rsembed_db.specs.sensor import FetchSpec, SensorSpec, resolve_sensor
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for


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
    ``sensor``/``fetch``, its bands and scale, its frame count, the same chip grid. ``out_dir`` saves
    ``<name>.png`` (RGB quicklook) and ``<name>.json`` (the report); ``return_array``
    adds the (C, H, W) data ((T, C, H, W) for multi-frame models) and (H, W) valid mask
    under ``"array"`` / ``"valid"``.
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
    chip = counted.fetch(grid, temporal, sensor, frames=description.frames if description is not None else 1)
    report = chip_report(chip, sensor, value_range)
    report.update(source=counted.name, sensor=sensor.to_dict(), temporal=temporal.to_dict(),
                  spatial=spatial.to_dict(), meta=chip.meta)
    if description is not None:
        report["model"] = {"name": description.name, "bands": list(description.bands),
                           "scale_m": description.scale_m, "image_size": description.image_size,
                           "normalisation": description.normalisation}
    if out_dir is not None:
        report = save_report(report, chip, out_dir, name)
    if return_array:
        report.update(array=chip.data, valid=chip.valid)
    return report
