"""TESSERA dataset versions and variants, and the ``tessera_metadata.json`` sidecar.

Each (version, variant) is its own embedding space: vectors of different datasets must
never be mixed. geotessera 0.8+ publishes them under per-dataset directories and records
which one a local directory holds in ``tessera_metadata.json`` (``dataset_version``,
``dataset_version_path``, ``dataset_variant``); the 0.7 layout holds version 1.0
(``v1``, variant ``vultr``) only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.sources.tessera.layout import EMBEDDINGS_DIR, MIRROR

SIDECAR = "tessera_metadata.json"


@dataclass(frozen=True)
class Dataset:
    """A published dataset: ``version`` in path form (``v1``, ``v1.1``, ``v2``) and ``variant``."""

    version: str
    variant: str

    @property
    def label(self) -> str:
        return f"{self.version} {self.variant}"

    @property
    def npy_dir(self) -> str | None:
        """Directory under ``npy/`` of the current mirror (None: published as Zarr only)."""
        return _KNOWN[(self.version, self.variant)][0]

    @property
    def zarr_dir(self) -> str | None:
        """Store directory under ``zarr/`` of the current mirror."""
        return _KNOWN[(self.version, self.variant)][1]

    @property
    def landmask_dir(self) -> str:
        """Directory under ``landmasks/`` (landmasks belong to the version, not the variant)."""
        return self.version


# (version path, variant) -> (npy dir, zarr dir), as geotessera 0.11 lists them.
_KNOWN: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("v1", "vultr"): ("v1", "v1"),
    ("v1.1", "dclimate"): (None, "v1.1-dclimate"),
    ("v1.1", "cambridge"): ("v1.1-cam", "v1.1"),
    ("v2", "2B-L~beta1"): ("v2-2B-L~beta1", "v2-2B-L~beta1"),
    ("v2", "2B-L~beta2"): ("v2-2B-L~beta2", "v2-2B-L~beta2"),
}
DEFAULT_VARIANTS = {"v1": "vultr", "v1.1": "dclimate", "v2": "2B-L~beta1"}
DEFAULT = Dataset("v1", "vultr")
_VERSION_FORMS = {"1": "v1", "1.0": "v1", "1.1": "v1.1", "2": "v2", "2.0": "v2"}


def normalise_version(text: str, field: str = "tessera.version") -> str:
    """``1.0``, ``v1``, ``1`` -> ``v1``; ``1.1`` -> ``v1.1``; ``2.0`` -> ``v2``."""
    raw = str(text).strip().lower()
    version = _VERSION_FORMS.get(raw.removeprefix("v"))
    if version is None:
        raise SpecError(field, f"unknown TESSERA dataset version {text!r}", sorted(DEFAULT_VARIANTS))
    return version


def dataset_for(version: str, variant: str | None = None) -> Dataset:
    """The dataset of a configured version and variant (the version's default variant if None)."""
    version = normalise_version(version)
    variant = DEFAULT_VARIANTS[version] if variant in (None, "") else str(variant).strip()
    if (version, variant) not in _KNOWN:
        allowed = sorted(v for ver, v in _KNOWN if ver == version)
        raise SpecError("tessera.variant", f"TESSERA {version} has no variant {variant!r}", allowed)
    return Dataset(version, variant)


def npy_dataset(directory: str) -> Dataset | None:
    """The dataset published under ``npy/<directory>`` (None if unknown)."""
    return next((Dataset(*k) for k, (npy, _) in _KNOWN.items() if npy == directory), None)


def zarr_dataset(directory: str) -> Dataset | None:
    """The dataset published as the store ``zarr/<directory>`` (None if unknown)."""
    return next((Dataset(*k) for k, (_, store) in _KNOWN.items() if store == directory), None)


@dataclass(frozen=True)
class Recorded:
    """What a directory or store says it holds, and where it says so."""

    version: str
    variant: str | None  # None: the record names no variant
    source: str


def read_sidecar(directory: Path) -> Recorded | None:
    """The dataset ``<directory>/tessera_metadata.json`` records; None when absent or unusable
    (geotessera accepts a missing or incomplete sidecar too)."""
    path = Path(directory) / SIDECAR
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    raw = meta.get("dataset_version_path") or meta.get("dataset_version")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        version = normalise_version(raw)
    except SpecError:
        return Recorded(raw, meta.get("dataset_variant"), str(path))
    return Recorded(version, meta.get("dataset_variant") or None, str(path))


def check_recorded(where: str, recorded: Recorded | None, wanted: Dataset) -> None:
    """One SpecError naming the config field when ``recorded`` is another dataset than ``wanted``."""
    if recorded is None:
        return
    same_version = recorded.version == wanted.version
    if same_version and recorded.variant in (None, wanted.variant):
        return
    field = "tessera.version" if not same_version else "tessera.variant"
    holds = f"{recorded.version} {recorded.variant}" if recorded.variant else recorded.version
    fix = f"--config version={recorded.version}"
    if recorded.variant:
        fix += f" --config variant={recorded.variant}"
    raise SpecError(field, f"{where} holds TESSERA {holds} embeddings ({recorded.source}), but the "
                           f"configuration asks for {wanted.label}; datasets are separate embedding spaces "
                           f"and are never mixed. Set {fix} to use them (stored under that dataset's key), "
                           f"or point dir/url at {wanted.label} data")


def write_sidecar(directory: Path, dataset: Dataset, **extra: Any) -> None:
    """``tessera_metadata.json`` as geotessera 0.8+ writes it into a download directory."""
    number = dataset.version.removeprefix("v")
    meta: dict[str, Any] = {"dataset_version": number if "." in number else f"{number}.0",
                            "dataset_version_path": dataset.version, "dataset_variant": dataset.variant,
                            "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(), **extra}
    if dataset.npy_dir:
        suffix = "" if dataset.variant == DEFAULT_VARIANTS["v1"] else f".{dataset.variant}"
        meta.update(dataset_path=dataset.npy_dir, embeddings_subdir=EMBEDDINGS_DIR,
                    s3_embeddings_subdir=EMBEDDINGS_DIR + suffix,
                    source_url_prefix=f"{MIRROR}/npy/{dataset.npy_dir}/")
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / SIDECAR).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
