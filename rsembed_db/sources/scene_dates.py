"""Acquisition dates of local scenes.

A scene's date is the first of:

1. the ``date`` given to the source (one date for every scene);
2. an acquisition tag, in this order: ``ACQUISITION_DATE``, ``DATE_ACQUIRED``,
   ``SENSING_TIME``; a tag whose value does not start with a date is skipped;
3. the file name (not its folders): by default the first valid ``YYYYMMDD`` that does
   not follow another digit (``S2A_MSIL1C_20170216T101031_...``), or ``YYYY-MM-DD``;
   a user regex with a named group ``date`` replaces this default;
4. ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``), last because TIFF writers often set
   it to the time the file was written, not the time the scene was acquired.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from rsembed_db.errors import SpecError
from rsembed_db.specs.temporal import MAX_YEAR, MIN_YEAR

ACQUISITION_TAGS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME")
WRITE_TIME_TAG = "TIFFTAG_DATETIME"

_LEADING_DATE = re.compile(r"(\d{4})[-_:/]?(\d{2})[-_:/]?(\d{2})(?!\d)")
_NAME_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})|(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")


def compile_date_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """Compile a user file-name regex; SpecError unless it has a named group ``date``."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise SpecError("date_pattern", f"not a valid regular expression: {exc}") from exc
    if "date" not in compiled.groupindex:
        raise SpecError("date_pattern", f"must contain a named group (?P<date>...), got {pattern!r}")
    return compiled


def date_from_tags(tags: Mapping[str, str], names: tuple[str, ...] = ACQUISITION_TAGS) -> dt.date | None:
    """The date of the first tag in ``names`` whose value starts with a date."""
    for name in names:
        value = tags.get(name)
        day = _leading_date(value.strip()) if value else None
        if day is not None:
            return day
    return None


def date_from_name(name: str, pattern: re.Pattern[str] | None = None) -> dt.date | None:
    """The date in a file name, by ``pattern``'s ``date`` group or the default rule."""
    if pattern is not None:
        match = pattern.search(name)
        return _leading_date(match.group("date")) if match and match.group("date") else None
    for match in _NAME_DATE.finditer(name):
        parts = match.groups()[:3] if match.group(1) else match.groups()[3:]
        day = _make_date(*parts)
        if day is not None:
            return day
    return None


def _leading_date(text: str) -> dt.date | None:
    match = _LEADING_DATE.match(text)
    return _make_date(*match.groups()) if match else None


def _make_date(year: str, month: str, day: str) -> dt.date | None:
    try:
        value = dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    return value if MIN_YEAR <= value.year <= MAX_YEAR else None
