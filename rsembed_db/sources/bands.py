"""Band names: one canonical spelling per Sentinel-2 band, plus common aliases.

``B2``, ``b02`` and ``B02`` all mean ``B02``; ``B8A`` keeps its letter. Names are
upper-cased and spaces or hyphens become underscores, so ``red edge 1`` is
``RED_EDGE_1``, an alias of ``B05``; STAC asset keys such as ``rededge1``, ``nir08``
and ``swir16`` are aliases too. Names that are neither aliases nor ``B<n>``
pass through upper-cased (``VV``, ``SCL``).
"""

from __future__ import annotations

import re

BAND_ALIASES: dict[str, str] = {
    "COASTAL": "B01",
    "BLUE": "B02",
    "GREEN": "B03",
    "RED": "B04",
    "RED_EDGE_1": "B05",
    "RED_EDGE_2": "B06",
    "RED_EDGE_3": "B07",
    "NIR": "B08",
    "NIR_NARROW": "B8A",
    "WATER_VAPOUR": "B09",
    "CIRRUS": "B10",
    "SWIR_1": "B11",
    "SWIR_2": "B12",
    # STAC asset keys / eo common names (Earth Search and others)
    "REDEDGE1": "B05",
    "REDEDGE2": "B06",
    "REDEDGE3": "B07",
    "NIR08": "B8A",
    "NIR09": "B09",
    "SWIR16": "B11",
    "SWIR22": "B12",
}

_NUMBERED = re.compile(r"B0*(\d+)(A?)")


def normalise_band(name: str) -> str:
    """The canonical spelling of a band name (see the module docstring)."""
    text = re.sub(r"[\s\-]+", "_", name.strip()).upper()
    text = BAND_ALIASES.get(text, text)
    match = _NUMBERED.fullmatch(text)
    if match is None:
        return text
    number, suffix = int(match.group(1)), match.group(2)
    return f"B{number}{suffix}" if suffix else f"B{number:02d}"
