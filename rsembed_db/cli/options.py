"""Option parsing shared by CLI commands."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from rsembed_db.errors import SpecError
from rsembed_db.specs.temporal import TemporalSpec

DEFAULT_DB = "rsembed.lance"
DbOption = Annotated[str, typer.Option("--db", help="Database path or URI (s3://...); default $RSEMBED_DB, else "
                                                  "./rsembed.lance.", envvar="RSEMBED_DB")]


def temporal_from_options(year: int | None, start: str | None, end: str | None) -> TemporalSpec | None:
    """``--year Y`` or ``--start D --end D``, at most one of the two; neither: None (the
    model's default window, with a warning, or an error naming ``temporal``)."""
    if year is not None and (start or end):
        raise SpecError("year", "give either --year or --start/--end, not both")
    if year is not None:
        return TemporalSpec.year(year)
    if bool(start) != bool(end):
        raise SpecError("end" if start else "start", "give both --start and --end (YYYY-MM-DD), or --year Y")
    return TemporalSpec.range(start, end) if start and end else None


def parse_config(items: list[str] | None) -> dict[str, Any]:
    """``--config key=value`` pairs; values are JSON when they parse as JSON, else strings."""
    config: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise SpecError("config", f"expected key=value, got {item!r}")
        try:
            config[name] = json.loads(raw)
        except json.JSONDecodeError:
            config[name] = raw
        if isinstance(config[name], list):
            config[name] = tuple(config[name])
    return config


def parse_lonlat(text: str) -> tuple[float, float]:
    """``LON,LAT`` -> floats."""
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise SpecError("near", f"expected LON,LAT (e.g. 12.6,52.5), got {text!r}") from exc
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise SpecError("near", f"lon must be in [-180, 180] and lat in [-90, 90], got {text!r}")
    return lon, lat
