"""Validation helpers for the spec vocabulary: each raises SpecError naming the field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from rsembed_db.errors import SpecError

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
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise SpecError(field, f"must be finite, got {value!r}")
    return number
