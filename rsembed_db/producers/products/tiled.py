"""Products published as tiles in native grids: every tile read once per run.

``compute_many`` assigns each ROI to the tiles it overlaps, reads the tiles on a
thread pool (in a fixed order, merged in that order so results are deterministic),
pools every ROI of a tile from the one array it was read into, and emits an ROI's
record as soon as its last tile is done. ROIs spanning tiles, or UTM zones, are
pooled over the union of their pixels; grid output is mosaicked onto the ROI's grid.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from collections.abc import Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import numpy as np

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.models.pooling import to_dataarray
from rsembed_db.producers.products.base import ProductProducer, check_roi_size
from rsembed_db.producers.products.mosaic import GridTarget, fill, tile_piece
from rsembed_db.producers.products.rois import RoiSet
from rsembed_db.producers.products.zonal import NO_PIXEL, PixelGrid, Pooled, pool_grid
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.plan import tile_id

Record = EmbeddingRecord | FailureRecord
TileKey = TypeVar("TileKey", bound=Hashable)  # how a product names its tiles


@dataclass
class _TileResult:
    name: str
    idx: np.ndarray  # the ROIs of this tile
    pooled: dict[str, tuple[np.ndarray, Pooled]] = field(default_factory=dict)  # how -> (rows, pooled)
    pieces: dict[int, np.ndarray] = field(default_factory=dict)
    error: str | None = None  # the tile could not be read: its ROIs fail
    note: str | None = None  # the tile does not exist (not published): not an error


class TiledProduct(ProductProducer, Generic[TileKey]):
    """Subclasses say which tiles cover what, and how to open one."""

    flagged_as: ClassVar[str] = "refused by the validity rule"  # PixelGrid.flagged, in reasons
    flagged_meta: ClassVar[str | None] = None  # meta key counting flagged pixels (None: not recorded)

    @abstractmethod
    def tiles_for(self, bounds: np.ndarray, year: int) -> dict[TileKey, np.ndarray]:
        """Tile key -> indices of the ROIs (given their (n, 4) lon/lat bounds) it may cover,
        in reading order."""

    def unpublished(self, keys: list[TileKey], year: int) -> dict[TileKey, str]:
        """Tiles known not to exist, with the reason; SpecError when data is unreachable."""
        return {}

    @abstractmethod
    def open_tile(self, key: TileKey, year: int, bounds: np.ndarray) -> tuple[str, PixelGrid]:
        """The tile's name and pixels; TileFailure when it cannot be read. ``bounds`` (minlon,
        minlat, maxlon, maxlat) covers the tile's ROIs: a product that can read part of a tile
        may read only that part."""

    @abstractmethod
    def grid_target(self, request: EmbeddingRequest) -> GridTarget:
        """The grid that grid output of ``request`` is mosaicked onto."""

    def compute_many(self, requests: list[EmbeddingRequest], workers: int = 2) -> Iterator[list[Record]]:
        by_window: dict[TemporalSpec, list[EmbeddingRequest]] = {}
        for request in requests:
            by_window.setdefault(request.temporal, []).append(request)
        by_year: dict[int, list[EmbeddingRequest]] = {}
        for temporal, group in by_window.items():
            by_year.setdefault(self.year_of(temporal), []).extend(group)
        for year, group in by_year.items():
            yield from _YearRun(self, RoiSet.of(group), year).run(max(int(workers), 1))


class _YearRun(Generic[TileKey]):
    """State of one year's ROIs while their tiles are processed.

    An ROI inside a single tile is finished straight from that tile's rows; ROIs that
    span tiles accumulate in one array per pooling (``spanning``) until their last tile.
    """

    def __init__(self, product: TiledProduct[TileKey], rois: RoiSet, year: int) -> None:
        self.product, self.rois, self.year = product, rois, year
        self.hows = np.array([r.output.pooling for r in rois.requests])
        self.pending = np.zeros(len(rois), dtype=np.int64)  # tiles still to merge, per ROI
        self.slots = np.full(len(rois), -1, dtype=np.int64)  # row in spanning[how], or -1
        self.spanning: dict[str, Pooled] = {}
        self.sources: dict[int, list[str]] = {}
        self.errors: dict[int, list[str]] = {}
        self.notes: dict[int, list[str]] = {}
        self.targets: dict[int, GridTarget] = {}
        for i, request in enumerate(rois.requests):
            if request.output.mode == "grid":
                target = product.grid_target(request)
                try:
                    check_roi_size(product.dim, target.shape, "grid output")
                    self.targets[i] = target
                except TileFailure as exc:
                    self.errors[i] = [str(exc)]
        self.mosaics: dict[int, np.ndarray] = {}

    def run(self, workers: int) -> Iterator[list[Record]]:
        tiles = self.product.tiles_for(self.rois.lonlat_bounds, self.year)
        for idx in tiles.values():
            self.pending[idx] += 1
        for how in set(self.hows.tolist()):
            rois = np.flatnonzero((self.pending > 1) & (self.hows == how))
            self.slots[rois] = np.arange(len(rois))
            self.spanning[how] = Pooled.empty(how, len(rois), self.product.dim)
        uncovered = np.flatnonzero(self.pending == 0)
        if len(uncovered):
            yield [self._record(i, None, NO_PIXEL, (0, 0, 0), False, []) for i in uncovered.tolist()]
        absent = self.product.unpublished(list(tiles), self.year)
        queue: deque[Future] = deque()
        keys = iter(tiles.items())
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile") as pool:
            try:
                while True:
                    while len(queue) < 2 * workers and (item := next(keys, None)) is not None:
                        key, idx = item
                        if key in absent:
                            done: Future = Future()
                            done.set_result(_TileResult(str(key), idx, note=absent[key]))
                            queue.append(done)
                        else:
                            queue.append(pool.submit(self._pool_tile, key, idx))
                    if not queue:
                        break
                    finished = self._merge(queue.popleft().result())
                    if finished:
                        yield finished
            finally:
                for future in queue:
                    future.cancel()

    def _pool_tile(self, key: TileKey, idx: np.ndarray) -> _TileResult:
        try:
            b = self.rois.lonlat_bounds[idx]
            bounds = np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
            name, grid = self.product.open_tile(key, self.year, bounds)
        except SpecError:
            raise
        except TileFailure as exc:
            return _TileResult(str(key), idx, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken tile fails its ROIs, not the run
            return _TileResult(str(key), idx, error=f"{type(exc).__name__}: {exc}")
        result = _TileResult(name, idx)
        geoms, centroids = self.rois.in_crs(idx, grid.crs)
        hows = self.hows[idx]
        for how in set(hows.tolist()):
            rows = np.flatnonzero(hows == how)
            result.pooled[how] = (rows, pool_grid(grid, geoms[rows], centroids[rows], how))
        for i in idx.tolist():
            if i in self.targets:
                piece = tile_piece(grid, self.targets[i])
                if piece is not None:
                    result.pieces[i] = piece
        return result

    def _merge(self, result: _TileResult) -> list[Record]:
        """Fold one tile in; records of the ROIs this tile completes."""
        idx = result.idx
        self.pending[idx] -= 1
        records: list[Record] = []
        noted = ((self.errors, f"{result.name}: {result.error}") if result.error is not None
                 else (self.notes, result.note) if result.note is not None else None)
        if noted is not None:
            bucket, message = noted
            for i in idx.tolist():
                bucket.setdefault(i, []).append(message)
            lone = idx[(self.pending[idx] == 0) & (self.slots[idx] < 0)]
            records += [self._record(i, None, NO_PIXEL, (0, 0, 0), False, []) for i in lone.tolist()]
        for i, piece in result.pieces.items():
            if i in self.mosaics:
                fill(self.mosaics[i], piece)
            else:
                self.mosaics[i] = piece
        for how, (rows, pooled) in result.pooled.items():
            rois = idx[rows]
            spans = np.flatnonzero(self.slots[rois] >= 0)
            if len(spans):
                part = pooled.take(spans)
                self.spanning[how].merge(self.slots[rois[spans]], part)
                for i in rois[spans][(part.pixels > 0) | part.centre_seen].tolist():
                    self.sources.setdefault(i, []).append(result.name)
            single = np.flatnonzero(self.slots[rois] < 0)
            if len(single):
                records += self._records(rois[single], pooled.take(single), result.name)
        complete = idx[(self.pending[idx] == 0) & (self.slots[idx] >= 0)]
        for how in set(self.hows[complete].tolist()):
            rois = complete[self.hows[complete] == how]
            records += self._records(rois, self.spanning[how].take(self.slots[rois]), None)
        return records

    def _records(self, rois: np.ndarray, pooled: Pooled, tile: str | None) -> list[Record]:
        vectors, reasons, used, small = pooled.results(self.product.flagged_as)
        excluded = np.where(small, 0, pooled.pixels - pooled.count)
        flagged = np.where(small, 0, pooled.flagged)
        return [self._record(i, vectors[k], reasons[k], (int(used[k]), int(excluded[k]), int(flagged[k])),
                             bool(small[k]), [tile] if tile is not None else self.sources.pop(i, []))
                for k, i in enumerate(rois.tolist())]

    def _record(self, i: int, vector: np.ndarray | None, reason: str | None, counts: tuple[int, int, int],
                small: bool, sources: list[str]) -> Record:
        """``counts``: pixels pooled, pixels inside the ROI left out, and those of them flagged."""
        request = self.rois.requests[i]
        tid = tile_id(request.spatial)
        errors, notes = self.errors.pop(i, None), self.notes.pop(i, None)
        mosaic = self.mosaics.pop(i, None)
        if errors:
            return FailureRecord(request, tid, "; ".join(errors))
        if reason is not None:
            return FailureRecord(request, tid, "; ".join(notes) if notes and not sources else reason)
        assert vector is not None  # only rows with a reason have no vector
        grid = None
        if i in self.targets:
            target = self.targets[i]
            grid = to_dataarray(target.features(target.empty(len(vector)) if mosaic is None else mosaic))
        used, excluded, flagged = counts
        extra: dict[str, bool | int] = {"roi_smaller_than_pixel": True} if small else {}
        if self.product.flagged_meta:
            extra[self.product.flagged_meta] = flagged
        meta = self.product.meta(request, tiles=sources, pixels=used, pixels_excluded=excluded, **extra)
        return EmbeddingRecord(request, tid, vector, grid, meta)
