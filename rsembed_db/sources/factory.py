"""Source strings -> imagery sources: ``local:<path>``, ``gee[:<project>]``, ``stac:<url>[#collection]``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.sources.base import ImagerySource
from rsembed_db.sources.counting import CountingSource
from rsembed_db.sources.earthengine import EarthEngineSource
from rsembed_db.sources.local import LocalImagerySource
from rsembed_db.sources.stac import StacImagerySource

SOURCE_ENV = "RSEMBED_SOURCE"
USAGE = ("local:<path>[,<path>...] (files or folders), gee or gee:<cloud project>, "
         "stac:<API url>[#<collection>]")
Imagery = str | Path | Sequence[str | Path] | None


def _stac_modifier(url: str) -> Any:
    """Planetary Computer asset URLs must be signed: its ``sign_inplace`` when installed."""
    if "planetarycomputer.microsoft.com" not in url:
        return None
    try:
        import planetary_computer
    except ImportError as exc:
        raise SpecError("source", "Planetary Computer assets need signing: "
                        "pip install planetary-computer") from exc
    return planetary_computer.sign_inplace


def parse_source(spec: str, imagery_date: str | None = None) -> ImagerySource:
    """The imagery source a source string names; SpecError with the accepted forms."""
    kind, _, rest = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "local" and rest:
        return LocalImagerySource([p for p in rest.split(",") if p], date=imagery_date)
    if kind == "gee":
        return EarthEngineSource(project=rest or None)
    if kind == "stac" and rest:
        url, _, collection = rest.partition("#")
        return StacImagerySource(url, collection or None, modifier=_stac_modifier(url))
    raise SpecError("source", f"unknown imagery source {spec!r}; expected {USAGE}")


def make_source(source: str | ImagerySource | None = None, imagery: Imagery = None,
                imagery_date: str | None = None, cache_size: int = 0) -> CountingSource:
    """A counted source: ``source`` (a string or an instance), else local ``imagery``, else
    ``$RSEMBED_SOURCE``.

    ``cache_size`` chips are kept for fetches repeated with the same grid, window and sensor.
    """
    if isinstance(source, CountingSource):
        return source
    if source is None and imagery is None:
        source = os.environ.get(SOURCE_ENV) or None
    if source is None:
        if imagery is None:
            raise SpecError("imagery", "this model computes from imagery: pass --imagery PATH (a "
                            f"GeoTIFF, several, or a directory) or --source ({USAGE}); or set "
                            f"RSEMBED_IMAGERY / {SOURCE_ENV}")
        inner: ImagerySource = LocalImagerySource(imagery, date=imagery_date)
    elif isinstance(source, str):
        inner = parse_source(source, imagery_date)
    else:
        inner = source
    return CountingSource(inner, cache_size=cache_size)
