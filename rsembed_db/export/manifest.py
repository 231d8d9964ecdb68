"""Export manifests: the request fingerprint that makes ``resume`` safe, and what ran.

A manifest sits next to each output (``<output>.manifest.json``) and is written after
the output, atomically, so an output without one is never trusted. Its
``fingerprint`` hashes the storage keys of every item x model in the output (the keys
already hash model + config, window, ROI, pooling, resolved sensor and input prep)
plus the format, the saved parts and the output mode: ``resume`` skips an output
only when its manifest says ``ok`` with the same fingerprint.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from rsembed_db.specs.canonical import sha256_key

LAYOUT_VERSION = 1
_PACKAGES = ("rsembed-db", "numpy", "torch", "xarray", "pyarrow", "lancedb", "rasterio", "netCDF4")


def fingerprint(keys: list[dict[str, str]], fmt: str, save_inputs: bool, save_embeddings: bool,
                grid: bool) -> str:
    """sha256 over the per-item {model label: storage key} maps and the output's settings."""
    return sha256_key({"layout": LAYOUT_VERSION, "keys": keys, "format": fmt, "save_inputs": save_inputs,
                       "save_embeddings": save_embeddings, "grid": grid})


def versions() -> dict[str, str]:
    """Python and the versions of the packages that shape the values."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def manifest_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.manifest.json")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see all or nothing.

    The file gets the permissions any new file gets (0666 less the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}{path.suffix}"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, default=str)))


def reusable(path: Path, expected: str) -> dict[str, Any] | None:
    """The manifest at ``path`` when it is complete (``ok``) for fingerprint ``expected``."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != expected or manifest.get("status") != "ok":
        return None
    return manifest
