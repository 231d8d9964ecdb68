"""JSON request bodies -> the spec vocabulary; errors name the field as sent.

A spatial is ``{"lon", "lat", "buffer_m"}``, ``{"bbox": [minlon, minlat, maxlon,
maxlat]}``, ``{"h3": "<cell>"}`` or any ``to_dict`` form with ``kind``. A temporal is
``{"year": 2022}`` or ``{"start": "2022-06-01", "end": "2022-09-01"}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from rsembed_db.errors import SpecError
from rsembed_db.models.base import RUNTIME_OPTIONS  # not models.zoo: that imports torch
from rsembed_db.service.errors import error_message
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import (
    BBox,
    H3Cell,
    PointBuffer,
    SpatialSpec,
    spatial_from_dict,
)
from rsembed_db.specs.temporal import TemporalSpec

T = TypeVar("T")


def under(prefix: str, build: Callable[[], T], root: str | None = None) -> T:
    """``build()``, with the field of any SpecError put under ``prefix``; a field already
    rooted at ``root`` (e.g. ``output.pooling``) is re-rooted (``outputs[1].pooling``).
    An empty ``prefix`` leaves bare names (``pooling``), as query parameters are named."""
    try:
        return build()
    except SpecError as exc:
        inner = exc.field or ""
        if root is not None and (inner == root or inner.startswith(f"{root}.")):
            inner = inner[len(root) + 1:]
        field = ".".join(part for part in (prefix, inner) if part) or (root or "body")
        raise SpecError(field, error_message(exc).split(" (allowed: ")[0], exc.allowed) from None


def _object(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(field, f"must be an object, got {type(value).__name__}")
    return value


def _fields(field: str, build: type[T], data: dict[str, Any]) -> T:
    known = [f.name for f in dataclasses.fields(build)]  # type: ignore[arg-type]
    for name in data:
        if name not in known:
            raise SpecError(f"{field}.{name}", "unknown field", known)
    return build(**data)


def spatial(value: Any, field: str = "spatial") -> SpatialSpec:
    data = _object(field or "spatial", value)

    def build() -> SpatialSpec:
        if "kind" in data:
            return spatial_from_dict(data)
        if "bbox" in data:
            box = data["bbox"]
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise SpecError("bbox", f"expected [minlon, minlat, maxlon, maxlat], got {box!r}")
            return BBox(*box)
        if "h3" in data:
            return H3Cell(data["h3"])
        if "lon" in data or "lat" in data:
            if "buffer_m" not in data:
                raise SpecError("buffer_m", "required with lon/lat (half the side of the square ROI, metres)")
            return _fields("spatial", PointBuffer, data)
        raise SpecError("kind", "give lon/lat/buffer_m, bbox, h3 or kind", ("point_buffer", "bbox", "h3", "grid"))
    return under(field, build, "spatial")


def temporal(value: Any, field: str = "temporal") -> TemporalSpec | None:
    """``{"year": Y}``, ``{"start", "end"}``, the documented ``{"mode", "year", "start", "end"}``,
    or nothing (None: the model's default window)."""
    if value is None or value == {}:
        return None
    data = _object(field or "temporal", value)

    def build() -> TemporalSpec:
        if "mode" in data:
            return _fields("temporal", TemporalSpec, data)
        if "year" in data:
            if "start" in data or "end" in data:
                raise SpecError("year", "give either year or start/end, not both")
            return TemporalSpec.year(data["year"])
        if "start" not in data or "end" not in data:
            raise SpecError("start", "a time window is required: year, or start and end (YYYY-MM-DD)")
        return TemporalSpec.range(data["start"], data["end"])
    return under(field, build)


def output(value: Any, field: str = "output") -> OutputSpec:
    if isinstance(value, str):
        value = {"mode": value}
    data = _object(field or "output", value)
    return under(field, lambda: _fields("output", OutputSpec, data), "output")


def sensor(value: Any, field: str = "sensor") -> SensorSpec | None:
    if value is None:
        return None
    return under(field, lambda: SensorSpec.from_dict(_object("sensor", value)), "sensor")


def fetch(value: Any, field: str = "fetch") -> FetchSpec | None:
    if value is None:
        return None
    return under(field, lambda: _fields("fetch", FetchSpec, _object("fetch", value)), "fetch")


def input_prep(value: Any, field: str = "input_prep") -> InputPrepSpec | None:
    """A spec, a shorthand, or None (the reference default: ``tile``, resolved per chip)."""
    if value is None:
        return None
    if isinstance(value, str):
        return under(field, lambda: InputPrepSpec.parse(value), "input_prep")
    return under(field, lambda: _fields("input_prep", InputPrepSpec, _object("input_prep", value)),
                 "input_prep")


def model_config(value: Any) -> dict[str, Any]:
    """Model configuration from JSON; lists become tuples, as on the command line.

    Run-time options (device, weights and cache folders, batch size) are the server's,
    not a client's: a request naming one is refused.
    """
    if value is not None and not isinstance(value, dict):
        raise SpecError("model_config", f"must be a JSON object of settings, got {type(value).__name__}")
    config = dict(value or {})
    for name in RUNTIME_OPTIONS:
        if name in config:
            raise SpecError(f"model_config.{name}", "is a server setting and cannot be set per request")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
