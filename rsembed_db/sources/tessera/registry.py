"""Tessera Parquet registries: which tiles exist, and their SHA-256 hashes.

``registry.parquet`` has a row per (year, tile) with ``lon``, ``lat`` (tile centre),
``year``, ``hash`` (SHA-256 of the ``.npy``) and ``scales_hash``; ``landmasks.parquet``
a row per tile with ``lon``, ``lat`` and ``hash``. Rows are matched on the centre in
hundredths of a degree, as geotessera does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsembed_db.errors import SpecError
from rsembed_db.sources.tessera.layout import TileId

_EMBEDDING_COLUMNS = ("lon", "lat", "year", "hash", "scales_hash")
_LANDMASK_COLUMNS = ("lon", "lat", "hash")


class TesseraRegistry:
    """Hash lookups over the two registries (embeddings loaded one year at a time)."""

    def __init__(self, embeddings: Path, landmasks: Path) -> None:
        self.embeddings_path, self.landmasks_path = Path(embeddings), Path(landmasks)
        self._years: dict[int, dict[tuple[int, int], tuple[str, str]]] = {}
        self._landmasks: dict[tuple[int, int], str] | None = None

    def embedding_hashes(self, tile: TileId, year: int) -> tuple[str, str] | None:
        """(npy hash, scales hash) of a published tile, or None when not published."""
        if year not in self._years:
            table = _read(self.embeddings_path, _EMBEDDING_COLUMNS,
                          pc.field("year") == year)
            keys = _keys(table)
            self._years[year] = dict(zip(keys, zip(table["hash"].to_pylist(),
                                                   table["scales_hash"].to_pylist())))
        return self._years[year].get(tile.registry_key)

    def landmask_hash(self, tile: TileId) -> str | None:
        if self._landmasks is None:
            table = _read(self.landmasks_path, _LANDMASK_COLUMNS, None)
            self._landmasks = dict(zip(_keys(table), table["hash"].to_pylist()))
        return self._landmasks.get(tile.registry_key)


def _read(path: Path, columns: tuple[str, ...], where):
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as exc:
        raise SpecError("tessera.registry", f"cannot read {path}: {exc}") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise SpecError("tessera.registry", f"{path} lacks column(s) {', '.join(missing)}; "
                        f"expected {', '.join(columns)} (geotessera Parquet registry)")
    return pq.read_table(path, columns=list(columns), filters=where)


def _keys(table) -> list[tuple[int, int]]:
    lon = np.round(table["lon"].to_numpy() * 100).astype(np.int64)
    lat = np.round(table["lat"].to_numpy() * 100).astype(np.int64)
    return list(zip(lon.tolist(), lat.tolist()))
