"""``load_export``: read what ``export_batch`` wrote back into arrays (the reference's reader API).

A file (``.npz``, ``.nc``, ``.parquet`` or its ``.manifest.json``) is a combined export; a
directory is a per-item export (one file per ROI, in manifest order). Items that failed
for a model are NaN in its ``embeddings``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsembed_db.errors import NotFound, SpecError
from rsembed_db.export.manifest import manifest_path
from rsembed_db.export.writers import EXTENSIONS


@dataclass
class ModelResult:
    """One model of an export: ``embeddings`` (N, D) or (N, D, H, W), NaN where an item failed."""

    name: str
    status: str
    embeddings: np.ndarray | None
    inputs: np.ndarray | None
    meta: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class ExportResult:
    """A loaded export: its layout, ROIs, window, per-model results and raw manifest(s)."""

    layout: str
    spatials: list[dict[str, Any]]
    temporal: dict[str, Any] | None
    n_items: int
    status: str
    models: dict[str, ModelResult]
    manifest: dict[str, Any]

    def embedding(self, model: str) -> np.ndarray:
        """(N, ...) embeddings of ``model``; KeyError if absent, ValueError if it failed everywhere."""
        result = self.models[model]
        if result.embeddings is None:
            raise ValueError(f"model {model!r} failed for every item: {result.error}")
        return result.embeddings

    @property
    def ok_models(self) -> list[str]:
        return [name for name, result in self.models.items() if result.status == "ok"]

    @property
    def failed_models(self) -> list[str]:
        return [name for name, result in self.models.items() if result.status == "failed"]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    if path.suffix == ".nc":
        import xarray as xr

        from rsembed_db.export.hdf5 import HDF5_LOCK

        with HDF5_LOCK, xr.open_dataset(path, engine="netcdf4") as ds:
            out = {str(name): ds[name].values for name in ds.data_vars}
            out["names"] = ds["item"].values
            return out
    if path.suffix == ".parquet":
        return _parquet_arrays(path)
    raise SpecError("path", f"{path} is not an export file (.npz, .nc, .parquet or its .manifest.json)")


def _parquet_arrays(path: Path) -> dict[str, np.ndarray]:
    """The npz layout rebuilt from the one-row-per-item-and-model Parquet file."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    items = sorted({row["item"]: row["name"] for row in rows}.items())
    index = {item: i for i, (item, _) in enumerate(items)}
    out: dict[str, np.ndarray] = {"names": np.array([name for _, name in items])}
    for label in dict.fromkeys(row["model"] for row in rows):
        mine = sorted((row for row in rows if row["model"] == label), key=lambda row: index[row["item"]])
        out[f"key__{label}"] = np.array([row["key"] for row in mine])
        out[f"ok__{label}"] = np.array([row["ok"] for row in mine])
        for part in ("embedding", "input"):
            arrays = [np.asarray(row[part], np.float32).reshape(row[f"{part}_shape"])
                      if row.get(part) is not None else None for row in mine]
            present = [a for a in arrays if a is not None]
            if present and len({a.shape for a in present}) == 1:
                out[f"{part}__{label}"] = np.stack([a if a is not None else np.full(present[0].shape, np.nan, np.float32)
                                                    for a in arrays])
    return out


def _stack(arrays: dict[str, np.ndarray], name: str, count: int) -> np.ndarray | None:
    """``name`` as one (N, ...) array, also when it was written per item (``name__<i>``)."""
    if name in arrays:
        return arrays[name]
    parts = {int(key.rsplit("__", 1)[1]): value for key, value in arrays.items() if key.startswith(f"{name}__")}
    if not parts:
        return None
    out = np.empty(count, dtype=object)  # items of different sizes: one array (or None) per item
    for i in range(count):
        out[i] = parts.get(i)
    return out


def _load_file(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if path.name.endswith(".manifest.json"):
        manifest = json.loads(path.read_text())
        data = Path(manifest["path"])
        if not data.is_absolute() and not data.exists():
            data = path.parent / data.name
        return _arrays(data), manifest
    manifest_file = manifest_path(path)
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    return _arrays(path), manifest


def _results(arrays: dict[str, np.ndarray], manifest: dict[str, Any], count: int) -> dict[str, ModelResult]:
    labels = [key.split("__", 1)[1] for key in arrays if key.startswith("ok__")]
    described = {m.get("label"): m for m in manifest.get("models", [])}
    out = {}
    for label in labels:
        ok = np.asarray(arrays[f"ok__{label}"]).astype(bool)
        status = "ok" if ok.all() else "failed" if not ok.any() else "partial"
        errors = [m["models"][label].get("error") for m in manifest.get("items", [])
                  if label in m.get("models", {}) and m["models"][label].get("error")]
        out[label] = ModelResult(
            name=described.get(label, {}).get("name", label), status=status,
            embeddings=_stack(arrays, f"embedding__{label}", count) if ok.any() else None,
            inputs=_stack(arrays, f"input__{label}", count),
            meta=[{"key": str(key), "ok": bool(flag)} for key, flag in zip(arrays[f"key__{label}"], ok)],
            error=errors[0] if errors and not ok.any() else None)
    return out


def load_export(path: str | Path) -> ExportResult:
    """Read a combined export (a file) or a per-item export (a directory)."""
    path = Path(path)
    if not path.exists():
        raise NotFound("path", f"{path} does not exist")
    if path.is_dir():
        return _load_items(path)
    arrays, manifest = _load_file(path)
    count = len(arrays["names"])
    return ExportResult("combined", [item["spatial"] for item in manifest.get("items", [])],
                        manifest.get("specs", {}).get("temporal"), count, manifest.get("status", "ok"),
                        _results(arrays, manifest, count), manifest)


def _load_items(directory: Path) -> ExportResult:
    manifests = sorted((json.loads(p.read_text()) for p in directory.glob("*.manifest.json")),
                       key=lambda m: m["items"][0]["index"])
    if not manifests:
        raise SpecError("path", f"{directory} holds no export manifests (*.manifest.json)")
    loaded = []
    for manifest in manifests:
        data = Path(manifest["path"])
        data = data if data.exists() else directory / data.name
        if data.suffix not in EXTENSIONS.values():
            raise SpecError("path", f"{directory}: format {manifest.get('format')!r} has no files to load")
        loaded.append(_arrays(data))
    merged: dict[str, np.ndarray] = {"names": np.concatenate([a["names"] for a in loaded])}
    for key in loaded[0]:
        if key != "names" and all(key in a for a in loaded):
            shapes = {a[key].shape[1:] for a in loaded}
            if len(shapes) == 1:
                merged[key] = np.concatenate([a[key] for a in loaded])
    items = [item for manifest in manifests for item in manifest["items"]]
    statuses = {m["status"] for m in manifests}
    status = statuses.pop() if len(statuses) == 1 else "partial"
    combined = {**manifests[0], "items": items}
    return ExportResult("per_item", [item["spatial"] for item in items], manifests[0].get("specs", {}).get("temporal"),
                        len(items), status, _results(merged, combined, len(items)), {"items": manifests})
