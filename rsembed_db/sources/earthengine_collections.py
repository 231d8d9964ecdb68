"""The Earth Engine collections the ``gee`` source knows: ids, band names, filters, units.

``SensorSpec.collection`` may name a collection by its Earth Engine id or a short
name (``s2``, ``s1``, ``landsat``...); ``find_collection`` lists every accepted name
in its error. Units follow the local-file convention (values as the models expect
Sentinel-2: reflectance x 10000):

- Sentinel-2 (``COPERNICUS/S2_SR_HARMONIZED``, ``COPERNICUS/S2_HARMONIZED``): values
  as stored, reflectance x 10000; the harmonised collections already shift scenes of
  processing baseline 04.00+ into the older range. Cloud filter:
  ``CLOUDY_PIXEL_PERCENTAGE <= cloudy_pct``. Bands ``B1``..``B12``, ``B8A``; any
  spelling of ``sources.bands`` works (``B04``, ``RED``...).
- Sentinel-1 GRD: IW mode, scenes carrying every requested polarisation, optional
  ``orbitProperties_pass`` filter (``SensorSpec.orbit``). ``use_float_linear=True``
  reads ``COPERNICUS/S1_GRD_FLOAT`` (linear power), else ``COPERNICUS/S1_GRD`` (dB).
- Landsat 8/9 Collection 2 Level 2: ``SR_B*`` scaled by the USGS factors
  (x 0.0000275 - 0.2) and then x 10000, so reflectance x 10000 like Sentinel-2;
  ``ST_B10`` in kelvin (x 0.00341802 + 149). ``B<n>`` means Landsat band n;
  ``BLUE``, ``RED``, ``NIR``, ``SWIR_1``... are the Landsat bands of those names.
  Cloud filter: ``CLOUD_COVER <= cloudy_pct``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rsembed_db.errors import SpecError
from rsembed_db.sources.bands import normalise_band
from rsembed_db.specs.sensor import SensorSpec

_NUMBERED = re.compile(r"B(\d+)(A?)")
Numbering = Callable[[int, str], str]


@dataclass(frozen=True)
class EECollection:
    """One sensor family on Earth Engine."""

    names: tuple[str, ...]  # accepted spellings of SensorSpec.collection (first: canonical id)
    ids: tuple[str, ...]  # collections merged for a fetch
    bands: tuple[str, ...]
    numbering: Numbering  # band number (+ "A") -> Earth Engine band name
    aliases: dict[str, str] = field(default_factory=dict)
    cloud_property: str | None = None
    scales: dict[str, tuple[float, float]] = field(default_factory=dict)  # band -> (gain, offset)
    linear_ids: tuple[str, ...] | None = None  # SAR: linear-power variant of ``ids``

    @property
    def sar(self) -> bool:
        return self.linear_ids is not None

    def collection_ids(self, sensor: SensorSpec) -> tuple[str, ...]:
        """The Earth Engine ids to read for ``sensor`` (linear or dB for SAR)."""
        if self.linear_ids is not None and sensor.use_float_linear:
            return self.linear_ids
        return self.ids

    def band_name(self, name: str) -> str:
        """The Earth Engine band of a requested name; SpecError listing what exists."""
        key = re.sub(r"[\s\-]+", "_", name.strip()).upper()
        if key in self.bands:
            return key
        if key in self.aliases:
            return self.aliases[key]
        match = _NUMBERED.fullmatch(normalise_band(key))
        candidate = self.numbering(int(match.group(1)), match.group(2)) if match else None
        if candidate in self.bands:
            return candidate
        raise SpecError("bands", f"{self.names[0]} has no band {name!r}",
                        [*self.bands, *sorted(self.aliases)])

    def filters(self, ee, sensor: SensorSpec, bands: tuple[str, ...]) -> list:
        """The metadata filters of this family for ``sensor``."""
        out = []
        if self.cloud_property is not None:
            out.append(ee.Filter.lte(self.cloud_property, float(sensor.cloudy_pct)))
        if self.sar:
            if sensor.s1_require_iw:
                out.append(ee.Filter.eq("instrumentMode", "IW"))
            out += [ee.Filter.listContains("transmitterReceiverPolarisation", b)
                    for b in bands if b in _POLARISATIONS]
            if sensor.orbit is not None:
                out.append(ee.Filter.eq("orbitProperties_pass", sensor.orbit))
        return out


_POLARISATIONS = ("VV", "VH", "HH", "HV")
_S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
_LANDSAT_SR = tuple(f"SR_B{n}" for n in range(1, 8))
_LANDSAT_GAIN, _LANDSAT_OFFSET = 0.0000275 * 10000, -0.2 * 10000


def _s2_numbering(number: int, suffix: str) -> str:
    return f"B{number}{suffix}"


def _landsat_numbering(number: int, suffix: str) -> str:
    return "ST_B10" if (number, suffix) == (10, "") else f"SR_B{number}{suffix}"


def _landsat(names: tuple[str, ...], ids: tuple[str, ...]) -> EECollection:
    return EECollection(
        names=names, ids=ids, bands=(*_LANDSAT_SR, "ST_B10", "QA_PIXEL"), numbering=_landsat_numbering,
        aliases={"COASTAL": "SR_B1", "BLUE": "SR_B2", "GREEN": "SR_B3", "RED": "SR_B4", "NIR": "SR_B5",
                 "SWIR_1": "SR_B6", "SWIR_2": "SR_B7", "THERMAL": "ST_B10"},
        cloud_property="CLOUD_COVER",
        scales={**{b: (_LANDSAT_GAIN, _LANDSAT_OFFSET) for b in _LANDSAT_SR}, "ST_B10": (0.00341802, 149.0)},
    )


LC08, LC09 = "LANDSAT/LC08/C02/T1_L2", "LANDSAT/LC09/C02/T1_L2"
COLLECTIONS: tuple[EECollection, ...] = (
    EECollection(("COPERNICUS/S2_SR_HARMONIZED", "s2", "s2_sr", "s2_l2a", "sentinel-2", "sentinel-2-l2a"),
                 ("COPERNICUS/S2_SR_HARMONIZED",), (*_S2_BANDS, "SCL"), _s2_numbering,
                 cloud_property="CLOUDY_PIXEL_PERCENTAGE"),
    EECollection(("COPERNICUS/S2_HARMONIZED", "s2_l1c", "sentinel-2-l1c"),
                 ("COPERNICUS/S2_HARMONIZED",), (*_S2_BANDS, "B10"), _s2_numbering,
                 cloud_property="CLOUDY_PIXEL_PERCENTAGE"),
    EECollection(("COPERNICUS/S1_GRD", "COPERNICUS/S1_GRD_FLOAT", "s1", "s1_grd", "sentinel-1"),
                 ("COPERNICUS/S1_GRD",), (*_POLARISATIONS, "angle"), _s2_numbering,
                 linear_ids=("COPERNICUS/S1_GRD_FLOAT",)),
    _landsat((LC08, "landsat8", "landsat-8", "l8"), (LC08,)),
    _landsat((LC09, "landsat9", "landsat-9", "l9"), (LC09,)),
    _landsat(("landsat", "landsat-8-9", "landsat_8_9"), (LC08, LC09)),
)


def find_collection(name: str) -> EECollection:
    """The family ``SensorSpec.collection`` names (case-insensitive); SpecError otherwise."""
    wanted = name.strip().lower()
    for collection in COLLECTIONS:
        if wanted in (n.lower() for n in collection.names):
            return collection
    raise SpecError("collection", f"{name!r} is not an Earth Engine collection rsembed-db knows; "
                    "pass sensor=SensorSpec(<collection>, bands) with one of these",
                    [n for c in COLLECTIONS for n in c.names])
