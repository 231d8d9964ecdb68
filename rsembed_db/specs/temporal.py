"""TemporalSpec: the half-open time window ``[start, end)`` an embedding describes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from rsembed_db.errors import SpecError

MIN_YEAR, MAX_YEAR = 1950, 2100


def parse_date(field: str, value: object) -> dt.date:
    """An ISO date (``YYYY-MM-DD``), or a ``date``; SpecError naming ``field`` otherwise."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise SpecError(field, f"must be an ISO date YYYY-MM-DD, got {value!r}")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise SpecError(field, f"must be an ISO date YYYY-MM-DD, got {value!r}") from exc


@dataclass(frozen=True)
class TemporalSpec:
    """A time window. Build with ``TemporalSpec.year(2022)`` or ``TemporalSpec.range(a, b)``.

    Both are the half-open window ``[start, end)``: ``year(2022)`` is
    ``[2022-01-01, 2023-01-01)`` and produces the same storage key as that range.
    """

    start: dt.date
    end: dt.date
    mode: str = "range"

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def year(cls, year: int) -> "TemporalSpec":
        if isinstance(year, bool) or not isinstance(year, int):
            if isinstance(year, str) and year.strip().isdigit():
                year = int(year)
            else:
                raise SpecError("year", f"must be an integer year, got {year!r}")
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise SpecError("year", f"must be within {MIN_YEAR}..{MAX_YEAR}, got {year}")
        return cls(dt.date(year, 1, 1), dt.date(year + 1, 1, 1), mode="year")

    @classmethod
    def range(cls, start: str | dt.date, end: str | dt.date) -> "TemporalSpec":
        return cls(parse_date("start", start), parse_date("end", end), mode="range")

    def validate(self) -> None:
        object.__setattr__(self, "start", parse_date("start", self.start))
        object.__setattr__(self, "end", parse_date("end", self.end))
        if self.mode not in ("year", "range"):
            raise SpecError("mode", f"got {self.mode!r}", ("year", "range"))
        if not self.start < self.end:
            raise SpecError("end", f"must be after start ({self.start}), got {self.end}")
        for name in ("start", "end"):
            year = getattr(self, name).year
            if not MIN_YEAR <= year <= MAX_YEAR + 1:
                raise SpecError(name, f"year must be within {MIN_YEAR}..{MAX_YEAR}, got {year}")

    def contains(self, day: dt.date) -> bool:
        """True when ``day`` lies in ``[start, end)``."""
        return self.start <= day < self.end

    @property
    def midpoint(self) -> dt.date:
        return self.start + (self.end - self.start) / 2

    @property
    def calendar_year(self) -> int | None:
        """The year when the window is exactly one calendar year, else None."""
        if self.start == dt.date(self.start.year, 1, 1) and self.end == dt.date(self.start.year + 1, 1, 1):
            return self.start.year
        return None

    def to_dict(self) -> dict[str, Any]:
        """Canonical form: the window only, so ``year(Y)`` equals its range."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TemporalSpec":
        if not isinstance(data, dict) or "start" not in data or "end" not in data:
            raise SpecError("temporal", f"must be an object with start and end, got {data!r}")
        return cls.range(data["start"], data["end"])
