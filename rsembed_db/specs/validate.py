"""Validation helpers for the spec vocabulary: each raises SpecError naming the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from rsembed_db.errors import SpecError

T = TypeVar("T")
_Option = TypeVar("_Option")


def require_choice(field: str, value: object, allowed: Iterable[_Option]) -> _Option:
    """Return the option of ``allowed`` equal to ``value``; raise SpecError if there is none."""
    options = tuple(allowed)
    if value not in options:
        raise SpecError(field, f"got {value!r}", options)
    return options[options.index(value)]


def require_positive(field: str, value: object) -> float:
    """Return ``value`` as float, raising SpecError unless it is a finite number > 0."""
    number = require_number(field, value)
    if number <= 0:
        raise SpecError(field, f"must be > 0, got {value!r}")
    return number


def require_number(field: str, value: object) -> float:
    """Return ``value`` as a finite float, raising SpecError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(field, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise SpecError(field, "must be finite, got an integer too large for a float") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SpecError(field, f"must be finite, got {value!r}")
    return number


def from_fields(cls: type[T], data: Any, field: str) -> T:
    """``cls(**data)`` for a dataclass, with SpecError naming ``field`` (or ``field.name``)
    for a non-object, an unknown field or a missing required one."""
    if not isinstance(data, dict):
        raise SpecError(field, f"must be an object, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(str(name) for name in data if name not in known)
    if unknown:
        raise SpecError(f"{field}.{unknown[0]}", "unknown field", known)
    required = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise SpecError(f"{field}.{missing[0]}", "required")
    return cls(**data)
