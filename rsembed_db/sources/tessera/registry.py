"""Tessera tile indexes: which tiles are published, and how to check their files.

Two published forms, both Parquet, rows matched on the tile centre in hundredths of a degree:

- geotessera 0.7 ``registry.parquet`` (``lon, lat, year, hash, scales_hash, file_size, ...``;
  hashes are SHA-256) with ``landmasks.parquet`` (``lon, lat, hash, file_size``);
- geotessera 0.8+ ``npy/<dataset>/manifest.parquet`` (``version, variant, year, lon, lat,
  grid_size, scales_size, ...``: sizes, no hashes) with ``landmasks/<version>/landmasks.parquet``
  (``lon, lat, file_size``). A manifest's ``version`` / ``variant`` columns must name the
  configured dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsembed_db.errors import SpecError
from rsembed_db.sources.tessera.datasets import Dataset, Recorded, check_recorded, normalise_version
from rsembed_db.sources.tessera.layout import TileId


@dataclass(frozen=True)
class FileCheck:
    """What a published file must match: its SHA-256 and/or its size in bytes (None: unknown)."""

    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class _Columns:
    required: tuple[str, ...]
    npy_hash: str | None
    scales_hash: str | None
    npy_size: str
    scales_size: str


_REGISTRY = _Columns(("lon", "lat", "year", "hash"), "hash", "scales_hash", "file_size", "scales_size")
_MANIFEST = _Columns(("lon", "lat", "year", "grid_size"), None, None, "grid_size", "scales_size")


class TileIndex:
    """Lookups over an embeddings index and its landmasks index (loaded one year at a time)."""

    def __init__(self, embeddings: Path, landmasks: Path | None, kind: str, dataset: Dataset) -> None:
        self.embeddings_path, self.landmasks_path = Path(embeddings), landmasks
        self.kind, self.dataset = kind, dataset
        self._columns = _REGISTRY if kind == "registry" else _MANIFEST
        self._years: dict[int, dict[tuple[int, int], tuple[FileCheck, FileCheck]]] = {}
        self._landmasks: dict[tuple[int, int], FileCheck] | None = None
        self._where = None
        if kind == "manifest":
            self._where = self._dataset_filter()

    @property
    def verifies(self) -> str:
        return "SHA-256" if self.kind == "registry" else "size"

    def files(self, tile: TileId, year: int) -> tuple[FileCheck, FileCheck] | None:
        """(npy, scales) checks of a published tile; None when the index does not list it."""
        if year not in self._years:
            cols = self._columns
            where = pc.field("year") == year
            if self._where is not None:
                where = where & self._where
            table = _read(self.embeddings_path, cols.required, where)
            n = table.num_rows
            npy_hash = _column(table, cols.npy_hash, n)
            scales_hash = _column(table, cols.scales_hash, n)
            npy_size, scales_size = _column(table, cols.npy_size, n), _column(table, cols.scales_size, n)
            self._years[year] = {key: (FileCheck(_hex(npy_hash[i]), _int(npy_size[i])),
                                       FileCheck(_hex(scales_hash[i]), _int(scales_size[i])))
                                 for i, key in enumerate(_keys(table))}
        return self._years[year].get(tile.registry_key)

    def landmask(self, tile: TileId) -> FileCheck | None:
        """The landmask's check; None when the landmasks index does not list it (FileCheck() if
        there is no landmasks index)."""
        if self.landmasks_path is None:
            return FileCheck()
        if self._landmasks is None:
            table = _read(self.landmasks_path, ("lon", "lat"), None)
            n = table.num_rows
            hashes, sizes = _column(table, "hash", n), _column(table, "file_size", n)
            self._landmasks = {key: FileCheck(_hex(hashes[i]), _int(sizes[i])) for i, key in enumerate(_keys(table))}
        return self._landmasks.get(tile.registry_key)

    def _dataset_filter(self):
        """Rows of the configured dataset; SpecError when the manifest lists only other datasets."""
        names = pq.read_schema(self.embeddings_path).names
        if "version" not in names:
            return None
        table = pq.read_table(self.embeddings_path, columns=[c for c in ("version", "variant") if c in names])
        pairs = {(str(v), None if w is None else str(w)) for v, w in zip(
            table["version"].to_pylist(),
            table["variant"].to_pylist() if "variant" in names else [None] * table.num_rows)}
        wanted = self.dataset
        mine = {p for p in pairs if _version(p[0]) == wanted.version and p[1] in (None, wanted.variant)}
        if not mine and pairs:
            version, variant = sorted(pairs, key=str)[0]
            check_recorded(str(self.embeddings_path), Recorded(_version(version), variant,
                                                              "its version / variant columns"), wanted)
        where = pc.field("version").isin(sorted({p[0] for p in mine}))
        if "variant" in names:
            where = where & (pc.field("variant").isin([wanted.variant]) | pc.field("variant").is_null())
        return where


def _version(text: str) -> str:
    try:
        return normalise_version(text)
    except SpecError:
        return text


def _read(path: Path, columns: tuple[str, ...], where):
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as exc:
        raise SpecError("tessera.registry", f"cannot read {path}: {exc}") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise SpecError("tessera.registry", f"{path} lacks column(s) {', '.join(missing)}; "
                        f"expected {', '.join(columns)} (geotessera registry / manifest)")
    optional = [c for c in ("hash", "scales_hash", "file_size", "scales_size", "grid_size")
                if c in schema.names and c not in columns]
    return pq.read_table(path, columns=list(columns) + optional, filters=where)


def _column(table, name: str | None, n: int) -> list:
    if name is None or name not in table.column_names:
        return [None] * n
    return table[name].to_pylist()


def _hex(value) -> str | None:
    return None if value is None else str(value).lower()


def _int(value) -> int | None:
    return None if value is None else int(value)


def _keys(table) -> list[tuple[int, int]]:
    lon = np.round(table["lon"].to_numpy() * 100).astype(np.int64)
    lat = np.round(table["lat"].to_numpy() * 100).astype(np.int64)
    return list(zip(lon.tolist(), lat.tolist()))
