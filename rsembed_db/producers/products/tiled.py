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
from typing import Any, ClassVar, Generic, TypeVar

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

    def only(self, keep: np.ndarray) -> "_TileResult":
        """This tile's result for the ROIs with ``keep[roi]`` (a mask over the run's ROIs)."""
        sel = keep[self.idx]
        out = _TileResult(self.name, self.idx[sel], error=self.error, note=self.note)
        position = np.cumsum(sel) - 1  # each kept ROI's position in out.idx
        for how, (rows, pooled) in self.pooled.items():
            kept = sel[rows]
            out.pooled[how] = (position[rows[kept]], pooled.take(np.flatnonzero(kept)))
        out.pieces = {i: piece for i, piece in self.pieces.items() if keep[i]}
        return out

    def renumbered(self, mapping: np.ndarray) -> "_TileResult":
        """The same result with ROI ``i`` renamed ``mapping[i]``."""
        out = _TileResult(self.name, mapping[self.idx], dict(self.pooled), error=self.error, note=self.note)
        out.pieces = {int(mapping[i]): piece for i, piece in self.pieces.items()}
        return out


@dataclass
class TileUnit:
    """A work unit of a distributed run: a few of a year's tiles, each read by this unit
    only, and every ROI they cover. ``shared`` ROIs also cover tiles of other units: the
    unit returns their per-tile partial pooling (``TilePartial``) instead of records, and
    the driver folds the partials in the local engine's tile order (``TiledPlan.merge``), so
    every vector is bit-identical to a single-process run."""

    year: int
    requests: list[EmbeddingRequest]
    tiles: dict[Hashable, np.ndarray]  # tile key -> positions in ``requests``, in reading order
    order: dict[Hashable, int]  # tile key -> its place in the year's reading order
    shared: np.ndarray  # (n,) bool
    elsewhere: np.ndarray  # (n,) int: tiles of other units each ROI also covers
    positions: np.ndarray  # (n,) each ROI's position in the plan's shared numbering (-1: not shared)


@dataclass
class TilePartial:
    """One tile's pooling of a unit's shared ROIs (numbered in the plan's shared list)."""

    year: int
    order: int
    result: _TileResult


@dataclass
class TiledPlan:
    """A tiled product's requests split into ``TileUnit``s, and what the driver finishes itself."""

    product: "TiledProduct"
    units: list[TileUnit]
    shared: dict[int, list[EmbeddingRequest]]  # year -> ROIs spanning units or covered by no tile
    shared_tiles: dict[int, dict[Hashable, np.ndarray]]  # year -> tile key -> positions in shared[year]

    def merge(self, partials: list[TilePartial]) -> list[Record]:
        """Records of the shared ROIs from every unit's partials, folded tile by tile in
        reading order (as ``compute_many`` does); ROIs no tile covers fail here."""
        records: list[Record] = []
        for year, requests in self.shared.items():
            run = _YearRun(self.product, RoiSet.of(requests), year)
            records += run.begin(self.shared_tiles[year])
            for part in sorted((p for p in partials if p.year == year), key=lambda p: p.order):
                records += run._merge(part.result)
        return records


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
        for year, group in self._by_year(requests).items():
            yield from _YearRun(self, RoiSet.of(group), year).run(max(int(workers), 1))

    def _by_year(self, requests: list[EmbeddingRequest]) -> dict[int, list[EmbeddingRequest]]:
        by_window: dict[TemporalSpec, list[EmbeddingRequest]] = {}
        for request in requests:
            by_window.setdefault(request.temporal, []).append(request)
        by_year: dict[int, list[EmbeddingRequest]] = {}
        for temporal, group in by_window.items():
            by_year.setdefault(self.year_of(temporal), []).extend(group)
        return by_year

    def plan_units(self, requests: list[EmbeddingRequest], tiles_per_unit: int = 4) -> TiledPlan:
        """Split ``requests`` into units of ``tiles_per_unit`` consecutive tiles (reading
        order), so that every tile is read by one unit only (see ``TileUnit``)."""
        if isinstance(tiles_per_unit, bool) or not isinstance(tiles_per_unit, int) or tiles_per_unit < 1:
            raise SpecError("tiles_per_unit", f"must be an integer >= 1, got {tiles_per_unit!r}")
        units: list[TileUnit] = []
        shared: dict[int, list[EmbeddingRequest]] = {}
        shared_tiles: dict[int, dict[Hashable, np.ndarray]] = {}
        for year, group in self._by_year(requests).items():
            tiles = self.tiles_for(RoiSet.of(group).lonlat_bounds, year)
            keys = list(tiles)
            unit_of = {key: k // tiles_per_unit for k, key in enumerate(keys)}
            touched: list[set[int]] = [set() for _ in group]
            for key, idx in tiles.items():
                for i in idx.tolist():
                    touched[i].add(unit_of[key])
            is_shared = np.array([len(u) != 1 for u in touched], dtype=bool)
            numbering = np.full(len(group), -1, dtype=np.int64)
            numbering[is_shared] = np.arange(int(is_shared.sum()))
            shared[year] = [group[i] for i in np.flatnonzero(is_shared).tolist()]
            shared_tiles[year] = {key: numbering[idx[is_shared[idx]]] for key, idx in tiles.items()
                                  if is_shared[idx].any()}
            for start in range(0, len(keys), tiles_per_unit):
                mine = keys[start:start + tiles_per_unit]
                members = np.unique(np.concatenate([tiles[key] for key in mine]))
                local: dict[Hashable, np.ndarray] = {key: np.searchsorted(members, tiles[key]) for key in mine}
                inside = np.zeros(len(members), dtype=np.int64)
                for idx in local.values():
                    inside[idx] += 1
                total = np.zeros(len(group), dtype=np.int64)
                for idx in tiles.values():
                    total[idx] += 1
                units.append(TileUnit(year, [group[i] for i in members.tolist()], local,
                                      {key: keys.index(key) for key in mine}, is_shared[members],
                                      total[members] - inside, numbering[members]))
        return TiledPlan(self, units, {y: r for y, r in shared.items() if r}, shared_tiles)

    def compute_unit(self, unit: TileUnit, workers: int = 2) -> tuple[list[Record], list[TilePartial]]:
        """Read the unit's tiles (once each): records of the ROIs it owns, partials of the shared ones."""
        run = _YearRun(self, RoiSet.of(unit.requests), unit.year)
        run.export = unit.shared
        records = [r for group in run.run(max(int(workers), 1), unit.tiles, unit.elsewhere) for r in group]
        partials = [TilePartial(unit.year, unit.order[key], result.renumbered(unit.positions))
                    for key, result in run.partials]
        return records, partials


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
        self.export: np.ndarray | None = None  # ROIs whose per-tile results are kept in ``partials``
        self.partials: list[tuple[Hashable, _TileResult]] = []

    def begin(self, tiles: dict[Hashable, np.ndarray], elsewhere: np.ndarray | None = None) -> list[Record]:
        """Count each ROI's tiles (plus ``elsewhere``: tiles another unit reads); records of
        the ROIs no tile covers."""
        for idx in tiles.values():
            self.pending[idx] += 1
        if elsewhere is not None:
            self.pending += elsewhere
        for how in set(self.hows.tolist()):
            rois = np.flatnonzero((self.pending > 1) & (self.hows == how))
            self.slots[rois] = np.arange(len(rois))
            self.spanning[how] = Pooled.empty(how, len(rois), self.product.dim)
        uncovered = np.flatnonzero(self.pending == 0)
        return [self._record(i, None, NO_PIXEL, (0, 0, 0), False, []) for i in uncovered.tolist()]

    def run(self, workers: int, given: dict[Any, np.ndarray] | None = None,
            elsewhere: np.ndarray | None = None) -> Iterator[list[Record]]:
        """Records of the ROIs, tile by tile; ``given``: the tiles to read (default: every tile
        the ROIs touch), ``elsewhere``: per ROI, tiles another unit reads."""
        tiles: dict[Any, np.ndarray] = dict(
            self.product.tiles_for(self.rois.lonlat_bounds, self.year) if given is None else given)
        uncovered = self.begin(tiles, elsewhere)
        if uncovered:
            yield uncovered
        absent = self.product.unpublished(list(tiles), self.year)
        queue: deque[tuple[Hashable, Future]] = deque()
        keys = iter(tiles.items())
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile") as pool:
            try:
                while True:
                    while len(queue) < 2 * workers and (item := next(keys, None)) is not None:
                        key, idx = item
                        if key in absent:
                            done: Future = Future()
                            done.set_result(_TileResult(str(key), idx, note=absent[key]))
                            queue.append((key, done))
                        else:
                            queue.append((key, pool.submit(self._pool_tile, key, idx)))
                    if not queue:
                        break
                    key, future = queue.popleft()
                    result = future.result()
                    if self.export is not None and self.export[result.idx].any():
                        self.partials.append((key, result.only(self.export)))
                    finished = self._merge(result)
                    if finished:
                        yield finished
            finally:
                for _, future in queue:
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
        counts = zip(used.tolist(), excluded.tolist(), flagged.tolist())  # Python ints, converted at once
        return [self._record(i, vector, reason, count, tiny, [tile] if tile is not None else self.sources.pop(i, []))
                for i, vector, reason, count, tiny in zip(rois.tolist(), vectors, reasons, counts, small.tolist())]

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
