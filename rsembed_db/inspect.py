"""``inspect_provider_patch`` / ``inspect_gee_patch`` / ``inspect_model_input``: fetch exactly
what a model would receive and report on it.

The reference library's name; it works with every source. It resolves the model's
input contract (its default sensor, patched by ``sensor`` / ``fetch``), builds the
same chip grid, fetches from the same source as an embedding would, and reports value
ranges, NaN and fill fractions and per-band statistics (``sources.quality``),
optionally saving an RGB quicklook PNG (2-98 percentile stretch) and the report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.producers.catalog import imagery_source, is_product, make_producer, resolve_runtime
from rsembed_db.sources.base import Chip, ImagerySource
from rsembed_db.sources.factory import Imagery, make_source
from rsembed_db.sources.quality import chip_report, save_report
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.sensor import FetchSpec, SensorSpec, resolve_sensor
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import chip_grid_for


def _patch(spatial: SpatialSpec, temporal: TemporalSpec | None, model: str | None, sensor: SensorSpec | None,
           fetch: FetchSpec | None, modality: str | None, backend: str, source: Any, imagery: Imagery,
           imagery_date: str | None, model_config: dict[str, Any] | None) -> tuple[Chip, EmbeddingRequest, Any]:
    """The chip a model (through its producer: same sensor, window, grid and frames) or a
    bare sensor would receive, the model's request, and the producer (or the source)."""
    imagery = imagery or os.environ.get("RSEMBED_IMAGERY")
    if model is not None:
        if is_product(model):
            raise SpecError("model", f"{model!r} is a precomputed product: there is no input patch to inspect")
        producer = make_producer(model, imagery, imagery_date, resolve_runtime(model, model_config, backend),
                                 imagery_source(model, backend, source)).for_request(modality, sensor)
        request = producer.request(spatial, temporal, sensor=sensor, fetch=fetch, modality=modality)
        chip = producer.prepare(request).payload
        return chip, request, producer
    if sensor is None:
        raise SpecError("sensor", "give a sensor (or a model, whose input contract is then used)")
    if fetch is not None:
        sensor = resolve_sensor(sensor, None, fetch)
    if temporal is None:
        raise SpecError("temporal", "give the window to fetch (TemporalSpec.range(...) or .year(...))")
    counted = make_source(source if source is not None else ("gee" if backend == "gee" else None), imagery,
                          imagery_date)
    chip = counted.fetch(chip_grid_for(spatial, sensor.scale_m), temporal, sensor)
    return chip, EmbeddingRequest("", spatial, temporal, sensor=sensor), counted


def inspect_provider_patch(*, spatial: SpatialSpec, temporal: TemporalSpec | None = None,
                           sensor: SensorSpec | None = None, backend: str = "auto", name: str = "patch",
                           value_range: tuple[float, float] | None = None, return_array: bool = False,
                           model: str | None = None, fetch: FetchSpec | None = None, modality: str | None = None,
                           source: str | ImagerySource | None = None, imagery: Imagery = None,
                           imagery_date: str | None = None, model_config: dict[str, Any] | None = None,
                           out_dir: str | Path | None = None) -> dict[str, Any]:
    """Fetch the patch a ``sensor`` (or a ``model``'s input contract) gives and check it,
    without running any model.

    The result (JSON-serialisable unless ``return_array``): ``ok``, ``report`` (shape,
    grid, value range, NaN / invalid / fill fractions, per-band statistics, ``issues``),
    ``sensor``, ``temporal``, ``backend``, ``source``, ``meta`` (scenes and dates), with
    ``model`` its input contract; ``artifacts`` when ``out_dir`` (or the sensor's
    ``check_save_dir``) saves ``<name>.png`` (RGB quicklook, 2-98 % stretch) and
    ``<name>.json``; ``array_chw`` and ``valid`` with ``return_array``.
    """
    chip, request, origin = _patch(spatial, temporal, model, sensor, fetch, modality, backend, source, imagery,
                                   imagery_date, model_config)
    return _report(chip, request, origin, backend, value_range, out_dir, name, return_array)


def _report(chip: Chip, request: EmbeddingRequest, origin: Any, backend: str,
            value_range: tuple[float, float] | None, out_dir: str | Path | None, name: str,
            return_array: bool) -> dict[str, Any]:
    used = request.require_sensor()
    report = chip_report(chip, used, value_range)
    out: dict[str, Any] = {"ok": report["ok"], "report": report, "sensor": used.to_dict(),
                           "temporal": request.temporal.to_dict(), "backend": backend,
                           "source": getattr(origin, "source", origin).name, "spatial": request.spatial.to_dict(),
                           "meta": chip.meta}
    if request.model:
        description = origin.description
        out["model"] = {"name": description.name, "bands": list(description.bands),
                        "scale_m": description.scale_m, "image_size": description.image_size,
                        "normalisation": description.normalisation}
    save_dir = out_dir if out_dir is not None else used.check_save_dir
    if save_dir is not None:
        saved = save_report({k: v for k, v in out.items()}, chip, save_dir, name)
        out["artifacts"] = {"quicklook": saved["quicklook"], "report": str(Path(save_dir) / f"{name}.json")}
    if return_array:
        out.update(array_chw=chip.data, valid=chip.valid)
    return out


inspect_gee_patch = inspect_provider_patch  # the reference's earlier, GEE-era name


def inspect_model_input(model: str, *, spatial: SpatialSpec, temporal: TemporalSpec | None = None,
                        sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                        modality: str | None = None, backend: str = "auto", return_array: bool = False,
                        source: str | ImagerySource | None = None, imagery: Imagery = None,
                        imagery_date: str | None = None, **model_kwargs: Any) -> dict[str, Any]:
    """``inspect_provider_patch`` for ``model``, plus what its network receives after band
    selection and normalisation (``model_input``: shape and per-channel statistics over
    valid pixels; ``model_input_array`` with ``return_array``)."""
    chip, request, producer = _patch(spatial, temporal, model, sensor, fetch, modality, backend, source, imagery,
                                     imagery_date, model_kwargs)
    out = _report(chip, request, producer, backend, None, None, "patch", return_array)
    values, valid = producer.embedder.normalised(chip)
    planes = values.reshape(-1, *values.shape[-2:])[:, valid.astype(bool)]
    out["model_input"] = {"shape": list(values.shape), "dtype": str(values.dtype),
                          "channels": [{"min": float(p.min()), "mean": float(p.mean()), "std": float(p.std()),
                                        "max": float(p.max())} if p.size else None for p in planes]}
    if return_array:
        out["model_input_array"] = values
    return out
