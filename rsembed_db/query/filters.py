"""SearchFilters -> one SQL predicate LanceDB can answer from scalar indexes, plus the
exact polygon test that SQL cannot express (applied to the candidates afterwards).

- time window ``[start, end)`` overlaps a row's ``[t_start, t_end)`` when
  ``t_end > start AND t_start < end``. ``t_end > start`` alone keeps most of a table
  (every later row), so when the table's longest window ``L`` is known (cached per
  table version, ``TableProfile.max_window_days``) the implied bound
  ``t_start > start - L`` is added: the scalar index then answers a narrow ``t_start``
  range and the overlap test only refines it. LanceDB would still answer ``t_end >
  start`` from the ``t_end`` index and intersect (60 ms on 1M rows, against 2 ms), so it
  is written ``CAST(t_end AS TIMESTAMP) > TIMESTAMP 'start 00:00:00'`` (same rows, no
  index: evaluated on the candidates only);
- ``year``: ``year = Y``;
- bbox, ``centre``: ``lon``/``lat`` inside; ``intersects``: the footprint's bbox
  columns overlap it;
- polygon: its bounding box as above in SQL, then ``shapely`` on the candidates
  (centre point within, or footprint geometry intersecting). On a table whose
  ``geometry`` is a ``geoarrow.wkb`` column with an R-tree (``spatial_index``), an
  ``intersects`` filter's SQL also holds ``st_intersects(geometry, <polygon>)``: Lance
  prunes with the R-tree and tests the footprints inside the scan, so only matching
  footprints are read back; ``shapely`` still decides. ``centre`` keeps the lon/lat
  ranges and ``shapely`` on the centres: reading two float columns beats evaluating
  ``st_intersects`` (50k rows, 3k inside: 6 ms against 26 ms, docs/storage.md);
- H3 parent ``p`` at resolution ``r``: an H3 index stores its resolution in bits 52-55
  above the base cell and the 3-bit digits, and unused digits are 7. So the
  descendants of ``p`` at one resolution ``R >= r`` are exactly the cells in the
  integer range ``[p's digits r+1..R set to 0, ... set to 6]`` (digits below R are 7):
  one ``BETWEEN`` per resolution, ``OR``-ed over the resolutions the table holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import h3
import numpy as np
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from rsembed_db.query.point_in_polygon import MIN_POINTS, PolygonGrid
from rsembed_db.query.request import SearchFilters
from rsembed_db.store.lance_store import sql_quote

H3_MAX_RES = 15


def descendant_range(parent: int, res: int) -> tuple[int, int]:
    """Smallest and largest H3 integer id among ``parent``'s descendants at ``res``."""
    parent_res = h3.get_resolution(h3.int_to_str(parent))
    low = h3.str_to_int(h3.cell_to_center_child(h3.int_to_str(parent), res))  # digits r+1..res = 0
    high = low
    for digit in range(parent_res + 1, res + 1):
        high |= 6 << (3 * (H3_MAX_RES - digit))
    return low, high


def h3_parent_sql(parent: int, resolutions: Iterable[int]) -> str:
    """``h3`` ranges of ``parent``'s descendants at each of ``resolutions`` (>= its own)."""
    parent_res = h3.get_resolution(h3.int_to_str(parent))
    ranges = [descendant_range(parent, r) for r in sorted(set(resolutions)) if r >= parent_res]
    if not ranges:
        return "false"
    return "(" + " OR ".join(f"(h3 BETWEEN {lo} AND {hi})" for lo, hi in ranges) + ")"


def tiling_sql(tiling: str) -> str:
    """``spatial_kind`` (and ``h3_res``) of a tiling label such as ``h3:8`` or ``point_buffer``."""
    kind, _, res = tiling.partition(":")
    return f"spatial_kind = '{kind}'" + (f" AND h3_res = {int(res)}" if res else "")


def tiling_of(kind: str, h3_res: int | None) -> str:
    """The tiling label of a stored row: ``h3:<res>`` or its spatial kind."""
    return f"h3:{h3_res}" if kind == "h3" and h3_res is not None else kind


def _date(value: dt.date) -> str:
    return f"date '{value.isoformat()}'"


def _bbox_sql(bounds: tuple[float, float, float, float], match: str) -> str:
    minlon, minlat, maxlon, maxlat = (repr(float(v)) for v in bounds)
    if match == "centre":
        return f"lon >= {minlon} AND lon <= {maxlon} AND lat >= {minlat} AND lat <= {maxlat}"
    return f"maxlon >= {minlon} AND minlon <= {maxlon} AND maxlat >= {minlat} AND minlat <= {maxlat}"


@dataclass(frozen=True)
class PolygonTest:
    """The exact polygon predicate, applied to candidate rows after the SQL prefilter."""

    polygon: BaseGeometry
    match: str

    @property
    def columns(self) -> tuple[str, ...]:
        return ("lon", "lat") if self.match == "centre" else ("geometry",)

    @property
    def bounds_columns(self) -> tuple[str, ...]:
        """The scalar columns ``bounds_mask`` reads (the router's sample holds them)."""
        return ("lon", "lat") if self.match == "centre" else ("minlon", "minlat", "maxlon", "maxlat")

    def bounds_mask(self, rows: pa.Table) -> np.ndarray:
        """The rows that may pass, from ``bounds_columns``: exact for ``centre``; for
        ``intersects`` the rows whose footprint bbox meets the polygon (a superset)."""
        if self.match == "centre" or rows.num_rows == 0:
            return self.mask(rows)
        boxes = shapely.box(*(rows[c].to_numpy(zero_copy_only=False) for c in self.bounds_columns))
        return shapely.intersects(self.polygon, boxes)

    @cached_property
    def grid(self) -> PolygonGrid:
        """The polygon's cell classes: many centres are tested by look-up (point_in_polygon.py)."""
        return PolygonGrid(self.polygon)

    def contains(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Boolean mask of the centres (degrees) on or inside the polygon."""
        if len(lon) >= MIN_POINTS:
            return self.grid.contains(lon, lat)
        return shapely.intersects_xy(self.polygon, lon, lat)

    def mask(self, rows: pa.Table | pa.RecordBatch) -> np.ndarray:
        """Boolean mask of the rows that pass (``rows`` holds ``self.columns``)."""
        if rows.num_rows == 0:
            return np.zeros(0, bool)
        if self.match == "centre":
            return self.contains(rows["lon"].to_numpy(zero_copy_only=False), rows["lat"].to_numpy(zero_copy_only=False))
        geoms = shapely.from_wkb(rows["geometry"].to_numpy(zero_copy_only=False))
        return shapely.intersects(self.polygon, geoms)


@dataclass(frozen=True)
class CompiledFilter:
    """``sql`` (None: every row) and an optional exact ``polygon`` test on top of it."""

    sql: str | None
    polygon: PolygonTest | None = None


def compile_filters(filters: SearchFilters, h3_resolutions: Iterable[int] = range(H3_MAX_RES + 1),
                    max_window_days: int | None = None, spatial_index: bool = False) -> CompiledFilter:
    """SQL for ``filters``; ``h3_resolutions``: the H3 resolutions stored in the table;
    ``max_window_days``: the longest ``t_end - t_start`` of any row (None: unknown), which
    bounds ``t_start`` from below for a window filter with a ``start``; ``spatial_index``:
    the table has an R-tree on a ``geoarrow.wkb`` ``geometry`` (the SQL then needs Lance's
    own scanner: LanceDB's query builder rejects ``st_intersects``)."""
    parts: list[str] = []
    if filters.model is not None:
        parts.append(f"model = {sql_quote([filters.model])}")
    if filters.model_config is not None:
        parts.append(f"model_config = {sql_quote([filters.model_config])}")
    if filters.start is not None:
        if max_window_days is None:
            parts.append(f"t_end > {_date(filters.start)}")
        else:  # the implied t_start bound narrows on its index; the cast keeps t_end's off it
            parts.append(f"t_start > {_date(filters.start - dt.timedelta(days=max_window_days))}")
            parts.append(f"CAST(t_end AS TIMESTAMP) > TIMESTAMP '{filters.start.isoformat()} 00:00:00'")
    if filters.end is not None:
        parts.append(f"t_start < {_date(filters.end)}")
    if filters.year is not None:
        parts.append(f"year = {int(filters.year)}")
    if filters.bbox is not None:
        b = filters.bbox
        parts.append(_bbox_sql((b.minlon, b.minlat, b.maxlon, b.maxlat), filters.spatial_match))
    polygon = None
    if filters.polygon is not None:
        parts.append(_bbox_sql(filters.polygon.bounds, filters.spatial_match))
        if spatial_index and filters.spatial_match == "intersects":
            parts.append(f"st_intersects(geometry, st_geomfromtext('{shapely.to_wkt(filters.polygon)}'))")
        polygon = PolygonTest(filters.polygon, filters.spatial_match)
    if filters.h3_parent is not None:
        parts.append(h3_parent_sql(filters.h3_parent.int_id, h3_resolutions))
    if filters.tiling is not None:
        parts.append(tiling_sql(filters.tiling))
    if filters.where is not None:
        parts.append(f"({filters.where})")
    return CompiledFilter(" AND ".join(parts) if parts else None, polygon)
