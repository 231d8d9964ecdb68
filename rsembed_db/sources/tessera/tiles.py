"""Tessera tiles from a local directory, downloading missing ones from a mirror.

Local files are used as they are (``verify_local=True`` also checks their SHA-256);
downloaded files are always checked against the registry before they are kept. A tile
the registry does not list is not published (ocean, or not processed yet); a tile that
is neither local nor downloadable is a configuration problem, reported once for all.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import rasterio

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.sources.download import DownloadError, OfflineError, download, sha256_file
from rsembed_db.sources.tessera.layout import (
    DIM,
    LANDMASKS_REGISTRY_FILE,
    REGISTRY_FILE,
    TileId,
)
from rsembed_db.sources.tessera.registry import TesseraRegistry
from rsembed_db.sources.tessera.tile import TesseraTile

MAX_LISTED = 5


class TesseraTiles:
    """Tiles under ``root`` (a partial mirror of the remote tree at ``url``)."""

    def __init__(self, root: Path, url: str | None, verify_local: bool = False) -> None:
        self.root = Path(root)
        self.url = url.rstrip("/") if url else None
        self.verify_local = verify_local
        self.reads = 0
        self._lock = threading.Lock()
        self._registry: TesseraRegistry | None = None
        self._registry_error: str | None = None

    # availability -----------------------------------------------------------
    def unpublished(self, tiles: list[TileId], year: int) -> dict[TileId, str]:
        """Tiles the registry says do not exist, with the reason.

        Raises one SpecError naming every tile that is neither local nor downloadable.
        """
        absent = [t for t in tiles if self._local_files(t, year) is None]
        if not absent:
            return {}
        registry = self._get_registry()
        unpublished: dict[TileId, str] = {}
        missing: list[TileId] = []
        for tile in absent:
            if registry is not None and self._hashes(registry, tile, year) is None:
                unpublished[tile] = (f"no Tessera tile {tile.name} for {year}: not in the registry "
                                     "(open water, or not processed yet)")
            elif registry is None or self.url is None:
                missing.append(tile)
        if missing:
            raise self._missing_error(missing, year)
        return unpublished

    def _missing_error(self, tiles: list[TileId], year: int) -> SpecError:
        listed = ", ".join(t.name for t in tiles[:MAX_LISTED])
        more = f" and {len(tiles) - MAX_LISTED} more" if len(tiles) > MAX_LISTED else ""
        why = self._registry_error or "no download URL is configured"
        west = min(t.bounds[0] for t in tiles)
        south = min(t.bounds[1] for t in tiles)
        east = max(t.bounds[2] for t in tiles)
        north = max(t.bounds[3] for t in tiles)
        return SpecError(
            "tessera.dir",
            f"{len(tiles)} Tessera tile(s) for {year} are not in {self.root} and cannot be "
            f"downloaded ({why}): {listed}{more}. Download them with `geotessera download "
            f"--bbox {west:g},{south:g},{east:g},{north:g} --year {year} --format npy "
            f"--output {self.root}` (or copy them there: {tiles[0].embedding_path(year)}, "
            f"{tiles[0].scales_path(year)}, {tiles[0].landmask_path()}), or point "
            "--config url=... (RSEMBED_TESSERA_URL) at a reachable mirror")

    # reading ------------------------------------------------------------------
    def read(self, tile: TileId, year: int) -> TesseraTile:
        """Load (downloading first when needed) and check one tile."""
        files = self._local_files(tile, year) or self._download(tile, year)
        if self.verify_local:
            self._verify(tile, year, files)
        npy, scales_path, landmask = files
        quantised = np.load(npy)
        scales = np.load(scales_path)
        with rasterio.open(landmask) as src:
            land = src.read(1) > 0
            crs, transform = src.crs, src.transform
        with self._lock:
            self.reads += 1
        if crs is None:
            raise TileFailure(f"{tile.name}: landmask {landmask} has no CRS")
        if quantised.dtype != np.int8 or quantised.ndim != 3 or quantised.shape[2] != DIM:
            raise TileFailure(f"{tile.name}: expected int8 (H, W, {DIM}) embeddings, got "
                              f"{quantised.dtype} {quantised.shape}")
        if scales.shape[:2] != quantised.shape[:2] or land.shape != quantised.shape[:2]:
            raise TileFailure(f"{tile.name}: embeddings {quantised.shape[:2]}, scales "
                              f"{scales.shape[:2]} and landmask {land.shape} differ in size")
        return TesseraTile(tile, quantised, scales.astype(np.float32, copy=False), land,
                           crs.to_string(), transform)

    def _local_files(self, tile: TileId, year: int) -> tuple[Path, Path, Path] | None:
        landmask = self.root / tile.landmask_path()
        for npy, scales in ((tile.embedding_path(year), tile.scales_path(year)),
                            (tile.flat_embedding_path(year), tile.flat_scales_path(year))):
            if (self.root / npy).is_file() and (self.root / scales).is_file() and landmask.is_file():
                return self.root / npy, self.root / scales, landmask
        return None

    def _download(self, tile: TileId, year: int) -> tuple[Path, Path, Path]:
        registry = self._get_registry()
        if registry is None or self.url is None:
            raise self._missing_error([tile], year)
        hashes = self._hashes(registry, tile, year)
        if hashes is None:
            raise TileFailure(f"no Tessera tile {tile.name} for {year}: not in the registry")
        with self._lock:
            landmask_hash = registry.landmask_hash(tile)
        if landmask_hash is None:
            raise TileFailure(f"{tile.name}: no landmask listed in {LANDMASKS_REGISTRY_FILE}")
        wanted = ((tile.embedding_path(year), hashes[0]), (tile.scales_path(year), hashes[1]),
                  (tile.landmask_path(), landmask_hash))
        for relative, expected in wanted:
            target = self.root / relative
            if not target.is_file():
                self._fetch(relative, target, expected)
        return tuple(self.root / rel for rel, _ in wanted)  # type: ignore[return-value]

    def _fetch(self, relative: str, target: Path, expected: str | None) -> None:
        try:
            download(f"{self.url}/{relative}", target, sha256=expected)
        except OfflineError as exc:
            raise SpecError("tessera.url", f"{exc}; download the tiles beforehand into "
                            f"{self.root} (geotessera download --format npy --output "
                            f"{self.root}) or set url to a reachable mirror") from None
        except DownloadError as exc:
            raise TileFailure(str(exc)) from None

    def _verify(self, tile: TileId, year: int, files: tuple[Path, Path, Path]) -> None:
        registry = self._get_registry()
        if registry is None:
            raise SpecError("tessera.verify_local", f"needs {self.root / REGISTRY_FILE} "
                            f"({self._registry_error})")
        with self._lock:
            expected = (*(self._hashes(registry, tile, year) or (None, None)),
                        registry.landmask_hash(tile))
        for path, want in zip(files, expected):
            if want is not None and sha256_file(path) != want.lower():
                raise TileFailure(f"{tile.name}: SHA-256 of {path} does not match the registry")

    # registry -------------------------------------------------------------------
    def _hashes(self, registry: TesseraRegistry, tile: TileId, year: int) -> tuple[str, str] | None:
        with self._lock:
            return registry.embedding_hashes(tile, year)

    def _get_registry(self) -> TesseraRegistry | None:
        """The registries, downloaded from ``url`` once when not local; None if unavailable."""
        with self._lock:
            if self._registry is None and self._registry_error is None:
                self._registry = self._load_registry()
            return self._registry

    def _load_registry(self) -> TesseraRegistry | None:
        paths = [self.root / REGISTRY_FILE, self.root / LANDMASKS_REGISTRY_FILE]
        for path in paths:
            if path.is_file():
                continue
            if self.url is None:
                self._registry_error = f"{path} is missing and no download URL is configured"
                return None
            try:
                download(f"{self.url}/{path.name}", path)
            except DownloadError as exc:
                self._registry_error = str(exc)
                return None
        return TesseraRegistry(*paths)
