"""Tessera NPY tiles from a local directory, downloading missing ones from a mirror.

Local tiles are found where geotessera puts them (its download directory:
``global_0.1_degree_representation[.<variant>]/``, ``global_0.1_degree_tiff_all/``) or in a
copy of today's mirror tree (``npy/<dataset>/``, ``landmasks/<version>/``), and used as they
are (``verify_local=True`` also checks them against the index). Missing tiles are downloaded
from a ``Remote`` (the 0.7 tree with its SHA-256 registry, or today's mirror with its
manifest of sizes) into the geotessera download layout, checked before they are kept, and a
``tessera_metadata.json`` is written as geotessera does. A tile the index does not list is
not published (ocean, or not processed yet); a tile that is neither local nor downloadable
is a configuration problem, reported once for all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.sources.download import DownloadError, OfflineError, download, sha256_file
from rsembed_db.sources.tessera import layout
from rsembed_db.sources.tessera.datasets import SIDECAR, Dataset, write_sidecar
from rsembed_db.sources.tessera.layout import (
    DIM,
    EMBEDDINGS_DIR,
    LANDMASKS_REGISTRY_FILE,
    REGISTRY_FILE,
    TileId,
)
from rsembed_db.sources.tessera.probe import detect_remote
from rsembed_db.sources.tessera.registry import FileCheck, TileIndex
from rsembed_db.sources.tessera.tile import TesseraTile

MAX_LISTED = 5


@dataclass(frozen=True)
class Remote:
    """A mirror: its base ``url`` and ``layout`` (``legacy``: the 0.7 tree; ``npy``: today's)."""

    url: str
    layout: str

    def embedding_path(self, dataset: Dataset, tile: TileId, year: int) -> str:
        if self.layout == "legacy":
            return tile.embedding_path(year)
        return layout.mirror_embedding_path(dataset, tile, year)

    def scales_path(self, dataset: Dataset, tile: TileId, year: int) -> str:
        if self.layout == "legacy":
            return tile.scales_path(year)
        return layout.mirror_scales_path(dataset, tile, year)

    def landmask_path(self, dataset: Dataset, tile: TileId) -> str:
        return tile.landmask_path() if self.layout == "legacy" else layout.mirror_landmask_path(dataset, tile)

    def index_paths(self, dataset: Dataset) -> tuple[str, str]:
        if self.layout == "legacy":
            return REGISTRY_FILE, LANDMASKS_REGISTRY_FILE
        return layout.mirror_manifest_path(dataset), layout.mirror_landmasks_registry_path(dataset)


class TesseraTiles:
    """NPY tiles under ``root``, missing ones downloaded from the mirror at ``url`` (None: offline).

    ``remote_layout`` is the mirror's layout (``legacy`` or ``npy``; ``auto``: probed the first
    time a tile has to be downloaded).
    """

    def __init__(self, root: Path, url: str | None, dataset: Dataset, verify_local: bool = False,
                 remote_layout: str = "auto") -> None:
        self.root = Path(root)
        self.url = url.rstrip("/") if url else None
        self._remote_layout = remote_layout
        self._remote: Remote | None = None
        self.dataset = dataset
        self.verify_local = verify_local
        self.reads = 0
        self.bytes_read = 0
        self._lock = threading.Lock()
        self._index: TileIndex | None = None
        self._local_layout = "legacy"
        self._index_error: str | None = None

    @property
    def layout(self) -> str:
        """``legacy`` or ``npy``: the mirror's layout, else that of the local files read last."""
        if self._remote is not None:
            return self._remote.layout
        return self._remote_layout if self._remote_layout != "auto" else self._local_layout

    @property
    def remote(self) -> Remote | None:
        """The mirror (its layout probed on first use), or None when offline."""
        if self.url is None:
            return None
        if self._remote is None:
            found = self._remote_layout
            if found == "auto":
                found = detect_remote(self.url, self.dataset)
            if found == "zarr":
                raise SpecError("tessera.url", f"{self.url} serves a Zarr store, not NPY tiles: set "
                                "--config layout=zarr to read tiles from it (nothing is copied)")
            self._remote = Remote(self.url, found)
        return self._remote

    # availability -----------------------------------------------------------
    def unpublished(self, tiles: list[TileId], year: int) -> dict[TileId, str]:
        """Tiles the index says do not exist, with the reason.

        Raises one SpecError naming every tile that is neither local nor downloadable.
        """
        absent = [t for t in tiles if self._local_files(t, year) is None]
        if not absent:
            return {}
        index = self._get_index()
        unpublished: dict[TileId, str] = {}
        missing: list[TileId] = []
        for tile in absent:
            if index is not None and self._checks(index, tile, year) is None:
                unpublished[tile] = (f"no Tessera tile {tile.name} for {year}: not in the {index.kind} "
                                     "(open water, or not processed yet)")
            elif index is None or self.remote is None:
                missing.append(tile)
        if missing:
            raise self._missing_error(missing, year)
        return unpublished

    def _missing_error(self, tiles: list[TileId], year: int) -> SpecError:
        listed = ", ".join(t.name for t in tiles[:MAX_LISTED])
        more = f" and {len(tiles) - MAX_LISTED} more" if len(tiles) > MAX_LISTED else ""
        why = self._index_error or "no download URL is configured"
        west = min(t.bounds[0] for t in tiles)
        south = min(t.bounds[1] for t in tiles)
        east = max(t.bounds[2] for t in tiles)
        north = max(t.bounds[3] for t in tiles)
        dataset = f"--dataset-version {self.dataset.version} --dataset-variant {self.dataset.variant} "
        return SpecError(
            "tessera.dir",
            f"{len(tiles)} Tessera tile(s) for {year} are not in {self.root} and cannot be "
            f"downloaded ({why}): {listed}{more}. Download them with `geotessera download "
            f"--bbox {west:g},{south:g},{east:g},{north:g} --year {year} --format npy {dataset}"
            f"--output {self.root}` (or copy them there: {tiles[0].embedding_path(year)}, "
            f"{tiles[0].scales_path(year)}, {tiles[0].landmask_path()}), or point "
            "--config url=... (RSEMBED_TESSERA_URL) at a reachable mirror")

    # reading ------------------------------------------------------------------
    def read(self, tile: TileId, year: int, bounds: tuple[float, float, float, float] | None = None) -> TesseraTile:
        """Load (downloading first when needed) and check one tile (whole: ``bounds`` is not used)."""
        files = self._local_files(tile, year) or self._download(tile, year)
        if self.verify_local:
            self._verify(tile, year, files)
        npy, scales_path, landmask = files
        # Mapped, as a plain ndarray view (np.memmap's Python-level indexing costs ~50 us a call):
        # pages are read as pixels are used, never copied.
        quantised = np.load(npy, mmap_mode="r").view(np.ndarray)
        scales = np.load(scales_path)
        with rasterio.open(landmask) as src:
            land = src.read(1) > 0
            crs, transform = src.crs, src.transform
        with self._lock:
            self.reads += 1
            self.bytes_read += sum(p.stat().st_size for p in files)
        if crs is None:
            raise TileFailure(f"{tile.name}: landmask {landmask} has no CRS")
        if quantised.dtype != np.int8 or quantised.ndim != 3 or quantised.shape[2] != DIM:
            raise TileFailure(f"{tile.name}: expected int8 (H, W, {DIM}) embeddings, got "
                              f"{quantised.dtype} {quantised.shape}")
        if scales.shape[:2] != quantised.shape[:2] or land.shape != quantised.shape[:2] \
                or scales.ndim not in (2, 3) or (scales.ndim == 3 and scales.shape[2] != DIM):
            raise TileFailure(f"{tile.name}: embeddings {quantised.shape}, scales {scales.shape} and "
                              f"landmask {land.shape} do not match")
        return TesseraTile(tile, quantised, scales.astype(np.float32, copy=False), land,
                           crs.to_string(), transform)

    def _local_files(self, tile: TileId, year: int) -> tuple[Path, Path, Path] | None:
        dataset = self.dataset
        pairs = [(tile.embedding_path(year), tile.scales_path(year)),
                 (tile.embedding_path(year, f"{EMBEDDINGS_DIR}.{dataset.variant}"),
                  tile.scales_path(year, f"{EMBEDDINGS_DIR}.{dataset.variant}"))]
        if dataset.npy_dir:
            pairs.append((layout.mirror_embedding_path(dataset, tile, year),
                          layout.mirror_scales_path(dataset, tile, year)))
        masks = [self.root / tile.landmask_path(), self.root / layout.mirror_landmask_path(dataset, tile)]
        landmask = next((m for m in masks if m.is_file()), None)
        if landmask is None:
            return None
        for k, (npy, scales) in enumerate(pairs):
            if (self.root / npy).is_file() and (self.root / scales).is_file():
                self._local_layout = "npy" if k == 2 else "legacy"
                return self.root / npy, self.root / scales, landmask
        return None

    def _download(self, tile: TileId, year: int) -> tuple[Path, Path, Path]:
        index = self._get_index()
        if index is None or self.remote is None:
            raise self._missing_error([tile], year)
        checks = self._checks(index, tile, year)
        if checks is None:
            raise TileFailure(f"no Tessera tile {tile.name} for {year}: not in the {index.kind}")
        with self._lock:
            mask_check = index.landmask(tile)
        if mask_check is None:
            raise TileFailure(f"{tile.name}: no landmask listed in {index.landmasks_path}")
        remote, dataset = self.remote, self.dataset
        wanted = ((remote.embedding_path(dataset, tile, year), tile.embedding_path(year), checks[0]),
                  (remote.scales_path(dataset, tile, year), tile.scales_path(year), checks[1]),
                  (remote.landmask_path(dataset, tile), tile.landmask_path(), mask_check))
        for source, relative, check in wanted:
            target = self.root / relative
            if not target.is_file():
                self._fetch(source, target, check)
        self._write_sidecar()
        return tuple(self.root / rel for _, rel, _ in wanted)  # type: ignore[return-value]

    def _fetch(self, source: str, target: Path, check: FileCheck) -> None:
        assert self.remote is not None
        try:
            download(f"{self.remote.url}/{source}", target, sha256=check.sha256, size=check.size)
        except OfflineError as exc:
            raise SpecError("tessera.url", f"{exc}; download the tiles beforehand into "
                            f"{self.root} (geotessera download --format npy --output "
                            f"{self.root}) or set url to a reachable mirror") from None
        except DownloadError as exc:
            raise TileFailure(str(exc)) from None

    def _write_sidecar(self) -> None:
        """``tessera_metadata.json`` naming the dataset, when absent (as geotessera writes it)."""
        path = self.root / SIDECAR
        with self._lock:
            if not path.exists():
                write_sidecar(self.root, self.dataset)

    def _verify(self, tile: TileId, year: int, files: tuple[Path, Path, Path]) -> None:
        index = self._get_index()
        if index is None:
            raise SpecError("tessera.verify_local", f"needs the tile index under {self.root} "
                            f"({self._index_error})")
        with self._lock:
            checks = index.files(tile, year) or (FileCheck(), FileCheck())
            expected = (*checks, index.landmask(tile) or FileCheck())
        for path, want in zip(files, expected):
            if want.sha256 is not None and sha256_file(path) != want.sha256:
                raise TileFailure(f"{tile.name}: SHA-256 of {path} does not match the {index.kind}")
            if want.size is not None and path.stat().st_size != want.size:
                raise TileFailure(f"{tile.name}: size of {path} ({path.stat().st_size} bytes) does not "
                                  f"match the {index.kind} ({want.size})")

    # index ------------------------------------------------------------------------
    def _checks(self, index: TileIndex, tile: TileId, year: int) -> tuple[FileCheck, FileCheck] | None:
        with self._lock:
            return index.files(tile, year)

    def _get_index(self) -> TileIndex | None:
        """The tile index, downloaded from the remote once when not local; None if unavailable."""
        with self._lock:
            if self._index is None and self._index_error is None:
                self._index = self._load_index()
            return self._index

    def _load_index(self) -> TileIndex | None:
        """The mirror's index (a copy kept under ``root``), else one found under ``root``."""
        remote = self.remote
        candidates = [Remote("", "legacy"), Remote("", "npy")] if remote is None else [remote]
        for candidate in candidates:
            if candidate.layout == "npy" and not self.dataset.npy_dir:
                continue
            embeddings, landmasks = candidate.index_paths(self.dataset)
            if (self.root / embeddings).is_file():
                return self._index_from(candidate, embeddings, landmasks)
        if remote is None:
            self._index_error = (f"no {REGISTRY_FILE} or npy/<dataset>/manifest.parquet in {self.root} "
                                 "and no download URL is configured")
            return None
        embeddings, landmasks = remote.index_paths(self.dataset)
        for relative in (embeddings, landmasks):
            try:
                download(f"{remote.url}/{relative}", self.root / relative)
            except DownloadError as exc:
                if relative == landmasks and not isinstance(exc, OfflineError):
                    continue  # the landmasks index is optional: landmasks are then fetched unchecked
                self._index_error = str(exc)
                return None
        return self._index_from(remote, embeddings, landmasks)

    def _index_from(self, remote: Remote, embeddings: str, landmasks: str) -> TileIndex:
        kind = "registry" if remote.layout == "legacy" else "manifest"
        mask_path = self.root / landmasks
        return TileIndex(self.root / embeddings, mask_path if mask_path.is_file() else None, kind, self.dataset)
