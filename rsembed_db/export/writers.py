"""Export writers: the results of an output's items x models as npz, NetCDF or Parquet.

Array layout (npz and NetCDF), per model label ``m`` (the model name, suffixed ``_2``...
when a model appears twice):

- ``names`` (N,): item names; ``key__m`` (N,): storage keys; ``ok__m`` (N,): computed;
- ``embedding__m``: (N, D) pooled or (N, D, H, W) grids, NaN where an item failed; when
  grid sizes differ between items, one array per item, ``embedding__m__<i>``;
  ``transform__m`` (N, 6): the grids' affine transforms (CRS in the manifest);
- with ``save_inputs``: ``input__m`` (N, C, H, W) model-ready chips, ``input_valid__m``
  and ``input_bands__m``, split per item the same way when sizes differ.

NetCDF names dimensions ``item`` and ``<variable>_d<axis>``. Parquet holds one row per
item x model: ``item``, ``name``, ``model``, ``key``, ``ok``, ``error``, ``embedding``
(flattened float32) and ``embedding_shape`` (and ``input``/``input_shape`` with inputs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from rsembed_db.export.hdf5 import HDF5_LOCK
from rsembed_db.sources.base import Chip

EXTENSIONS = {"npz": ".npz", "netcdf": ".nc", "parquet": ".parquet"}
Arrays = dict[str, tuple[np.ndarray, tuple[str, ...]]]


@dataclass
class ModelResult:
    """One item x model: the storage key and the embedding, or why there is none."""

    key: str
    embedding: np.ndarray | xr.DataArray | None = None
    error: str | None = None
    from_store: bool = False
    chip: Chip | None = None


@dataclass
class ItemResult:
    index: int
    name: str
    models: dict[str, ModelResult]


def _values(embedding: np.ndarray | xr.DataArray) -> np.ndarray:
    return np.asarray(embedding.values if isinstance(embedding, xr.DataArray) else embedding, np.float32)


def _stack(name: str, arrays: list[np.ndarray | None], fill: float | bool) -> Arrays:
    """One (N, ...) array when every present array has one shape (gaps filled), else one per item."""
    shapes = {a.shape for a in arrays if a is not None}
    if len(shapes) > 1:
        return {f"{name}__{i}": (a, tuple(f"{name}__{i}_d{k}" for k in range(a.ndim)))
                for i, a in enumerate(arrays) if a is not None}
    if not shapes:
        return {}
    shape = shapes.pop()
    template = next(a for a in arrays if a is not None)
    stacked = np.stack([a if a is not None else np.full(shape, fill, template.dtype) for a in arrays])
    return {name: (stacked, ("item", *(f"{name}_d{k}" for k in range(1, stacked.ndim))))}


def collect(items: list[ItemResult], labels: list[str], save_inputs: bool, save_embeddings: bool) -> Arrays:
    """Every array of the layout above."""
    out: Arrays = {"names": (np.array([item.name for item in items]), ("item",))}
    for label in labels:
        results = [item.models[label] for item in items]
        out[f"key__{label}"] = (np.array([r.key for r in results]), ("item",))
        out[f"ok__{label}"] = (np.array([r.embedding is not None for r in results]), ("item",))
        if save_embeddings:
            out.update(_stack(f"embedding__{label}",
                              [_values(r.embedding) if r.embedding is not None else None for r in results],
                              np.nan))
            grids = [r.embedding for r in results if isinstance(r.embedding, xr.DataArray)]
            if grids:
                transforms = [list(r.embedding.attrs["transform"]) if isinstance(r.embedding, xr.DataArray)
                              else [np.nan] * 6 for r in results]
                out[f"transform__{label}"] = (np.array(transforms, np.float64), ("item", "affine"))
        if save_inputs:
            chips = [r.chip for r in results]
            out.update(_stack(f"input__{label}", [c.data if c is not None else None for c in chips], np.nan))
            out.update(_stack(f"input_valid__{label}",
                              [c.valid if c is not None else None for c in chips], False))
            bands = next((c.bands for c in chips if c is not None), None)
            if bands is not None:
                out[f"input_bands__{label}"] = (np.array(bands), (f"input_bands__{label}_d0",))
    return out


def write_npz(path: Path, arrays: Arrays) -> None:
    with open(path, "wb") as fh:
        # allow_pickle named (its default): numpy's stubs would match it against the ** arrays
        np.savez(fh, allow_pickle=True, **{name: array for name, (array, _) in arrays.items()})


def write_netcdf(path: Path, arrays: Arrays) -> None:
    data = {name: (dims, array.astype(np.uint8) if array.dtype == bool else array)
            for name, (array, dims) in arrays.items() if name != "names"}
    names, _ = arrays["names"]
    with HDF5_LOCK:
        xr.Dataset(data, coords={"item": names}).to_netcdf(path, engine="netcdf4")


def parquet_table(items: list[ItemResult], labels: list[str], save_inputs: bool,
                  save_embeddings: bool) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in ("item", "name", "model", "key", "ok", "error")}
    if save_embeddings:
        rows |= {"embedding": [], "embedding_shape": []}
    if save_inputs:
        rows |= {"input": [], "input_shape": []}
    for item in items:
        for label in labels:
            result = item.models[label]
            rows["item"].append(item.index)
            rows["name"].append(item.name)
            rows["model"].append(label)
            rows["key"].append(result.key)
            rows["ok"].append(result.embedding is not None)
            rows["error"].append(result.error)
            if save_embeddings:
                values = _values(result.embedding) if result.embedding is not None else None
                rows["embedding"].append(None if values is None else values.ravel())
                rows["embedding_shape"].append(None if values is None else list(values.shape))
            if save_inputs:
                data = result.chip.data if result.chip is not None else None
                rows["input"].append(None if data is None else data.ravel())
                rows["input_shape"].append(None if data is None else list(data.shape))
    types = {"item": pa.int32(), "embedding": pa.list_(pa.float32()), "input": pa.list_(pa.float32()),
             "embedding_shape": pa.list_(pa.int32()), "input_shape": pa.list_(pa.int32())}
    return pa.table({name: pa.array(values, type=types.get(name)) for name, values in rows.items()})


def writer_for(fmt: str) -> Callable[[Path, list[ItemResult], list[str], bool, bool], None]:
    """``write(path, items, labels, save_inputs, save_embeddings)`` for a file format."""
    if fmt == "parquet":
        return lambda path, items, labels, inputs, embeddings: pq.write_table(
            parquet_table(items, labels, inputs, embeddings), path)
    write = {"npz": write_npz, "netcdf": write_netcdf}[fmt]
    return lambda path, items, labels, inputs, embeddings: write(
        path, collect(items, labels, inputs, embeddings))
