"""Spatial specs: where an embedding is computed.

``BBox`` and ``PointBuffer`` keep the reference library's names and semantics; ``H3Cell``
(an H3 hexagon as ROI) and ``GridCell`` (a square tile on a projected grid, what the
``grid:<size_m>`` tiler yields) are ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain
from typing import Any, TypeVar, Union

import h3
import numpy as np
import pyproj
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice, require_number, require_positive

WGS84 = "EPSG:4326"

_Geometry = TypeVar("_Geometry", bound=BaseGeometry)


def _check_lonlat(prefix: str, lon: float, lat: float) -> None:
    if not -180.0 <= lon <= 180.0:
        raise SpecError(f"{prefix}lon", f"must be within [-180, 180], got {lon!r}")
    if not -90.0 <= lat <= 90.0:
        raise SpecError(f"{prefix}lat", f"must be within [-90, 90], got {lat!r}")


@dataclass(frozen=True)
class BBox:
    """A lon/lat rectangle in EPSG:4326."""

    minlon: float
    minlat: float
    maxlon: float
    maxlat: float
    crs: str = WGS84

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        require_choice("crs", self.crs, (WGS84,))
        for name in ("minlon", "minlat", "maxlon", "maxlat"):
            require_number(name, getattr(self, name))
        _check_lonlat("min", self.minlon, self.minlat)
        _check_lonlat("max", self.maxlon, self.maxlat)
        if not self.minlon < self.maxlon:
            raise SpecError("minlon", f"must be < maxlon, got {self.minlon} >= {self.maxlon}")
        if not self.minlat < self.maxlat:
            raise SpecError("minlat", f"must be < maxlat, got {self.minlat} >= {self.maxlat}")

    def lonlat_geometry(self) -> Polygon:
        return box(self.minlon, self.minlat, self.maxlon, self.maxlat)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bbox", "minlon": float(self.minlon), "minlat": float(self.minlat),
                "maxlon": float(self.maxlon), "maxlat": float(self.maxlat), "crs": self.crs}


@dataclass(frozen=True)
class PointBuffer:
    """A square ROI of side ``2 * buffer_m`` centred on a lon/lat point."""

    lon: float
    lat: float
    buffer_m: float
    crs: str = WGS84

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        require_choice("crs", self.crs, (WGS84,))
        require_number("lon", self.lon)
        require_number("lat", self.lat)
        _check_lonlat("", self.lon, self.lat)
        require_positive("buffer_m", self.buffer_m)

    def lonlat_geometry(self) -> Polygon:
        """The square in its local UTM zone, transformed back to lon/lat."""
        utm = utm_crs_for(self.lon, self.lat)
        x, y = transformer(WGS84, utm).transform(self.lon, self.lat)
        b = float(self.buffer_m)
        return _to_lonlat(box(x - b, y - b, x + b, y + b), utm)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "point_buffer", "lon": float(self.lon), "lat": float(self.lat),
                "buffer_m": float(self.buffer_m), "crs": self.crs}


@dataclass(frozen=True)
class H3Cell:
    """An H3 cell as ROI: pooled values average over pixels inside the hexagon."""

    cell: int | str

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        cell = self.cell
        try:
            ok = h3.is_valid_cell(h3.int_to_str(cell) if isinstance(cell, int) else str(cell))
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise SpecError("cell", f"not a valid H3 cell id: {cell!r}")

    @cached_property
    def hex(self) -> str:
        return h3.int_to_str(self.cell) if isinstance(self.cell, int) else str(self.cell).lower()

    @cached_property
    def int_id(self) -> int:
        return h3.str_to_int(self.hex)

    @property
    def res(self) -> int:
        return h3.get_resolution(self.hex)

    def lonlat_geometry(self) -> Polygon:
        return self._polygon

    @cached_property
    def _polygon(self) -> Polygon:
        """The hexagon, built once per cell (``lonlat_geometries`` fills it in bulk)."""
        return Polygon([(lon, lat) for lat, lon in h3.cell_to_boundary(self.hex)])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "h3", "cell": self.hex}


@dataclass(frozen=True)
class GridCell:
    """A square tile ``[minx, minx+size_m) x [miny, miny+size_m)`` on a projected grid."""

    crs: str
    minx: float
    miny: float
    size_m: float

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.crs, str):
            raise SpecError("crs", f"must be a CRS string such as EPSG:32633, got {self.crs!r}")
        try:
            parsed = pyproj.CRS.from_user_input(self.crs)
        except (pyproj.exceptions.CRSError, UnicodeError, ValueError) as exc:
            raise SpecError("crs", f"unknown CRS {self.crs!r}") from exc
        if not parsed.is_projected:
            raise SpecError("crs", f"must be a projected CRS in metres, got {self.crs!r}")
        require_number("minx", self.minx)
        require_number("miny", self.miny)
        require_positive("size_m", self.size_m)

    @property
    def tile_id(self) -> str:
        epsg = self.crs.split(":")[-1]
        size = int(self.size_m) if float(self.size_m).is_integer() else self.size_m
        # Tile origins are multiples of size_m: round, since e.g. (3 * 0.1) // 0.1 == 2.
        return f"{epsg}_{size}m_{round(self.minx / self.size_m)}_{round(self.miny / self.size_m)}"

    def native_geometry(self) -> Polygon:
        return box(self.minx, self.miny, self.minx + self.size_m, self.miny + self.size_m)

    def lonlat_geometry(self) -> Polygon:
        return _to_lonlat(self.native_geometry(), self.crs)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "grid", "crs": self.crs, "minx": float(self.minx),
                "miny": float(self.miny), "size_m": float(self.size_m)}


SpatialSpec = Union[BBox, PointBuffer, H3Cell, GridCell]

_KINDS = {"bbox": BBox, "point_buffer": PointBuffer, "h3": H3Cell, "grid": GridCell}


def spatial_from_dict(data: dict[str, Any]) -> SpatialSpec:
    """Inverse of ``to_dict`` for every spatial spec."""
    if not isinstance(data, dict):
        raise SpecError("spatial", f"must be an object, got {type(data).__name__}")
    kind = require_choice("spatial.kind", data.get("kind"), tuple(_KINDS))
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        return _KINDS[kind](**fields)
    except TypeError as exc:
        raise SpecError("spatial", f"bad fields for kind {kind!r}: {exc}") from exc


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone CRS (EPSG:326xx north, 327xx south) containing a point."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def reproject_geometry(geom: _Geometry, src: str, dst: str) -> _Geometry:
    """``geom`` transformed from CRS ``src`` to ``dst`` (vertices only; densify first if needed)."""
    project = transformer(src, dst)

    def transform_xy(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = project.transform(xy[:, 0], xy[:, 1])
        return np.column_stack((x, y))

    return shapely.transform(geom, transform_xy)


def _to_lonlat(geom: Polygon, crs: str) -> Polygon:
    """Transform a projected polygon to lon/lat, densifying edges so curvature is kept."""
    return reproject_geometry(shapely.segmentize(geom, max(geom.length / 64.0, 1.0)), crs, WGS84)


def lonlat_geometries(specs: Sequence[SpatialSpec]) -> np.ndarray:
    """``spec.lonlat_geometry()`` for many specs at once (H3 cells built in one call)."""
    out = np.empty(len(specs), dtype=object)
    todo = [spec for spec in specs if isinstance(spec, H3Cell) and "_polygon" not in spec.__dict__]
    if todo:
        rings = [h3.cell_to_boundary(cell.hex) for cell in todo]
        sizes = np.fromiter((len(r) + 1 for r in rings), np.int64, len(rings))
        latlng = np.array(list(chain.from_iterable((*r, r[0]) for r in rings)), dtype=np.float64)
        offsets = (np.r_[0, np.cumsum(sizes)], np.arange(len(todo) + 1))
        polygons = shapely.from_ragged_array(shapely.GeometryType.POLYGON,
                                             np.ascontiguousarray(latlng[:, ::-1]), offsets)
        for cell, polygon in zip(todo, polygons):
            cell.__dict__["_polygon"] = polygon
    for i, spec in enumerate(specs):
        out[i] = spec.lonlat_geometry()
    return out
