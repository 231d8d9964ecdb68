"""Canonical JSON and storage keys.

Floats are rounded to ``FLOAT_DECIMALS`` places before hashing so that noise below
1e-9 (degrees or metres) never changes a key: 8 decimals of a degree is about 1 mm.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FLOAT_DECIMALS = 8
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode  # json.dumps, minus set-up


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        rounded = round(value, FLOAT_DECIMALS)
        # -0.0 and 0.0 must hash alike; integral floats keep one spelling.
        return 0.0 if rounded == 0 else rounded
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return _normalise(value.item())
    raise TypeError(f"cannot canonicalise {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, rounded floats."""
    if isinstance(value, dict) and all(type(k) is str and type(v) is str for k, v in value.items()):
        return _ENCODE(value)  # nothing to normalise (e.g. an H3 cell spec): skip the walk
    return _ENCODE(_normalise(value))


def sha256_key(value: Any) -> str:
    """Hex sha256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
