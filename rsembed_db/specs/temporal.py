"""TemporalSpec: the half-open time window ``[start, end)`` an embedding describes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast, overload

from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice

MIN_YEAR, MAX_YEAR = 1950, 2100
MODES = ("year", "range")


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


def parse_year(field: str, value: object) -> int:
    """An integer year within ``MIN_YEAR..MAX_YEAR`` (digit strings accepted)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer year, got {value!r}")
    if not MIN_YEAR <= value <= MAX_YEAR:
        raise SpecError(field, f"must be within {MIN_YEAR}..{MAX_YEAR}, got {value}")
    return value


class _YearField:
    """``TemporalSpec.year``: the constructor when read from the class, the field when read
    from an instance (a data descriptor, so the instance value lives in its ``__dict__``)."""

    @overload
    def __get__(self, obj: None, owner: type[TemporalSpec]) -> Callable[[int], TemporalSpec]: ...

    @overload
    def __get__(self, obj: TemporalSpec, owner: type[TemporalSpec]) -> int | None: ...

    def __get__(self, obj: TemporalSpec | None, owner: type[TemporalSpec]) -> Callable[[int], TemporalSpec] | int | None:
        return owner.of_year if obj is None else obj.__dict__.get("year")

    def __set__(self, obj: TemporalSpec, value: int | None) -> None:
        obj.__dict__["year"] = value


@dataclass(frozen=True)
class TemporalSpec:
    """A time window, as the reference vocabulary documents it:
    ``TemporalSpec(mode="year"|"range", year=None, start=None, end=None)``.

    Build with ``TemporalSpec.year(2022)`` (``mode="year"``, ``year=2022``, ``start`` and
    ``end`` None) or ``TemporalSpec.range("2022-06-01", "2022-09-01")`` (``mode="range"``,
    ISO date strings). Both mean the half-open window ``[start, end)``: ``year(2022)`` is
    ``[2022-01-01, 2023-01-01)`` and produces the same storage key as that range. Code
    that needs dates reads ``start_date`` / ``end_date``.

    ``TemporalSpec.year`` is the constructor on the class and the ``year`` field on an
    instance (``TemporalSpec.year(2022).year == 2022``).
    """

    mode: str
    if TYPE_CHECKING:  # what the ``_YearField`` descriptor installed below the class gives
        year: _YearField = _YearField()
    else:
        year: int | None = None
    start: str | None = None
    end: str | None = None

    def __post_init__(self) -> None:
        require_choice("temporal.mode", self.mode, MODES)
        if self.mode == "year":
            if self.year is None:
                raise SpecError("year", "is required when mode is 'year'")
            for name in ("start", "end"):
                if getattr(self, name) is not None:
                    raise SpecError(name, "must be omitted when mode is 'year' (the window is the calendar year)")
            object.__setattr__(self, "year", parse_year("year", self.year))
            return
        if self.year is not None:
            raise SpecError("year", "must be omitted when mode is 'range' (give start and end)")
        for name in ("start", "end"):
            if getattr(self, name) is None:
                raise SpecError(name, "is required when mode is 'range' (an ISO date YYYY-MM-DD)")
        start, end = parse_date("start", self.start), parse_date("end", self.end)
        if not start < end:
            raise SpecError("end", f"must be after start ({start}), got {end}")
        for name, day in (("start", start), ("end", end)):
            if not MIN_YEAR <= day.year <= MAX_YEAR + 1:
                raise SpecError(name, f"year must be within {MIN_YEAR}..{MAX_YEAR}, got {day.year}")
        object.__setattr__(self, "start", start.isoformat())
        object.__setattr__(self, "end", end.isoformat())

    @classmethod
    def of_year(cls, year: int) -> TemporalSpec:
        """The calendar year ``[Y-01-01, Y+1-01-01)``; also spelt ``TemporalSpec.year(Y)``."""
        return cls("year", year=year)

    @classmethod
    def range(cls, start: str | dt.date, end: str | dt.date) -> TemporalSpec:
        """The half-open window ``[start, end)`` between two ISO dates."""
        return cls("range", start=cast(str, start), end=cast(str, end))

    @property
    def start_date(self) -> dt.date:
        """First day of the window (inclusive)."""
        if self.year is not None:
            return dt.date(self.year, 1, 1)
        return dt.date.fromisoformat(cast(str, self.start))

    @property
    def end_date(self) -> dt.date:
        """Day after the window (exclusive)."""
        if self.year is not None:
            return dt.date(self.year + 1, 1, 1)
        return dt.date.fromisoformat(cast(str, self.end))

    def contains(self, day: dt.date) -> bool:
        """True when ``day`` lies in ``[start, end)``."""
        return self.start_date <= day < self.end_date

    @property
    def midpoint(self) -> dt.date:
        return self.start_date + (self.end_date - self.start_date) / 2

    @property
    def calendar_year(self) -> int | None:
        """The year when the window is exactly one calendar year, else None."""
        start, end = self.start_date, self.end_date
        if start == dt.date(start.year, 1, 1) and end == dt.date(start.year + 1, 1, 1):
            return start.year
        return None

    def to_dict(self) -> dict[str, Any]:
        """Canonical form: the window only, so ``year(Y)`` equals its range."""
        return {"start": self.start_date.isoformat(), "end": self.end_date.isoformat()}

    def describe(self) -> dict[str, Any]:
        """The documented fields (``mode``, ``year``, ``start``, ``end``) as given."""
        return {"mode": self.mode, "year": self.year, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemporalSpec:
        """A window from ``{"start", "end"}``, or the documented fields (``mode``...)."""
        if isinstance(data, dict) and "mode" in data:
            unknown = set(data) - {"mode", "year", "start", "end"}
            if unknown:
                raise SpecError("temporal", f"unknown fields {sorted(unknown)}", ("mode", "year", "start", "end"))
            return cls(**data)
        if isinstance(data, dict) and set(data) == {"year"}:
            return cls.of_year(data["year"])
        if not isinstance(data, dict) or "start" not in data or "end" not in data:
            raise SpecError("temporal", f"must be an object with start and end (or year), got {data!r}")
        return cls.range(data["start"], data["end"])


TemporalSpec.year = _YearField()
