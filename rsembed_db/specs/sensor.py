"""SensorSpec (full source control) and FetchSpec (light override of a model's default)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import from_fields, require_choice, require_number, require_positive

COMPOSITES = ("median", "mosaic")
ORBITS = ("ASCENDING", "DESCENDING")
# check_* only control input inspection; they never change the values computed.
_NOT_IN_KEY = ("check_input", "check_raise", "check_save_dir")
# Fields added after keys were first stored: in the key only when they differ from these defaults.
_KEYED_WHEN_SET = {"s1_require_iw": True, "s1_relax_iw_on_empty": True}


@dataclass(frozen=True)
class SensorSpec:
    """Which imagery to fetch and how to composite it over the time window."""

    collection: str
    bands: tuple[str, ...]
    scale_m: float = 10
    cloudy_pct: float = 30
    fill_value: float = 0.0
    composite: str = "median"
    modality: str | None = None
    orbit: str | None = None
    use_float_linear: bool = True
    s1_require_iw: bool = True
    s1_relax_iw_on_empty: bool = True
    check_input: bool = False
    check_raise: bool = True
    check_save_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.bands, (list, str)):
            object.__setattr__(self, "bands", (self.bands,) if isinstance(self.bands, str) else tuple(self.bands))
        if not isinstance(self.bands, tuple):
            raise SpecError("bands", f"must be a list of band names, got {self.bands!r}")
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.collection, str) or not self.collection.strip():
            raise SpecError("collection", f"must be a non-empty string, got {self.collection!r}")
        if not self.bands or not all(isinstance(b, str) and b.strip() for b in self.bands):
            raise SpecError("bands", f"must be a non-empty list of band names, got {self.bands!r}")
        if len(set(self.bands)) != len(self.bands):
            raise SpecError("bands", f"must not repeat a band, got {list(self.bands)}")
        require_positive("scale_m", self.scale_m)
        pct = require_number("cloudy_pct", self.cloudy_pct)
        if not 0 <= pct <= 100:
            raise SpecError("cloudy_pct", f"must be within [0, 100], got {self.cloudy_pct!r}")
        require_number("fill_value", self.fill_value)
        require_choice("composite", self.composite, COMPOSITES)
        if self.orbit is not None:
            orbit = self.orbit.strip().upper() if isinstance(self.orbit, str) else self.orbit
            require_choice("orbit", orbit, ORBITS)
            object.__setattr__(self, "orbit", orbit)
        for name in ("use_float_linear", "s1_require_iw", "s1_relax_iw_on_empty", "check_input", "check_raise"):
            if not isinstance(getattr(self, name), bool):
                raise SpecError(name, f"must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Canonical form: every field that changes the fetched values."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_IN_KEY
               and not (f.name in _KEYED_WHEN_SET and getattr(self, f.name) == _KEYED_WHEN_SET[f.name])}
        out["bands"] = list(self.bands)
        out["scale_m"] = float(self.scale_m)
        out["cloudy_pct"] = float(self.cloudy_pct)
        out["fill_value"] = float(self.fill_value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SensorSpec":
        """From the fields of ``to_dict`` (``collection`` and ``bands`` required); SpecError
        naming ``sensor.<field>`` for an unknown or missing one."""
        return from_fields(cls, data, "sensor")


@dataclass(frozen=True)
class FetchSpec:
    """Override a few fields of the model's default sensor; None keeps the default."""

    scale_m: float | None = None
    cloudy_pct: float | None = None
    fill_value: float | None = None
    composite: str | None = None

    def __post_init__(self) -> None:
        if self.scale_m is not None:
            require_positive("fetch.scale_m", self.scale_m)
        if self.cloudy_pct is not None:
            pct = require_number("fetch.cloudy_pct", self.cloudy_pct)
            if not 0 <= pct <= 100:
                raise SpecError("fetch.cloudy_pct", f"must be within [0, 100], got {pct}")
        if self.fill_value is not None:
            require_number("fetch.fill_value", self.fill_value)
        if self.composite is not None:
            require_choice("fetch.composite", self.composite, COMPOSITES)


def resolve_sensor(default: SensorSpec, sensor: SensorSpec | None = None,
                   fetch: FetchSpec | None = None) -> SensorSpec:
    """The sensor a request really uses: ``sensor`` replaces the default, ``fetch`` patches it."""
    if sensor is not None and fetch is not None:
        raise SpecError("fetch", "cannot be combined with sensor; put the overrides in sensor")
    if sensor is not None:
        return sensor
    if fetch is None:
        return default
    patch = {f.name: getattr(fetch, f.name) for f in fields(fetch) if getattr(fetch, f.name) is not None}
    return replace(default, **patch)
