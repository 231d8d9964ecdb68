"""Regions: GeoJSON polygons in lon/lat (EPSG:4326), checked before anything is tiled.

Edges are straight in lon/lat. An edge longer than 180 degrees of longitude (and shorter
than 360) is read as crossing the antimeridian, the short way, as RFC 7946 asks writers to
avoid: such a polygon is cut into its parts east and west of it. A ring that spans the full
-180..180 (the world, a latitude band) is taken as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar, Union, cast

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from rsembed_db.errors import SpecError
from rsembed_db.specs.spatial import WGS84, reproject_geometry

Region = Union[Polygon, MultiPolygon]
_Geometry = TypeVar("_Geometry", bound=BaseGeometry)

_POLYGONAL = ("Polygon", "MultiPolygon")
_GEOMETRIES = _POLYGONAL + ("Point", "MultiPoint", "LineString", "MultiLineString",
                            "GeometryCollection")
# Names a legacy (2008) GeoJSON "crs" member may give for lon/lat WGS 84.
_LONLAT_CRS_NAMES = ("urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84",
                     "urn:ogc:def:crs:EPSG::4326", "EPSG:4326", "CRS84")
MAX_FROM_MERIDIAN_DEG = 60.0  # a UTM zone's projection is meaningless (then undefined) farther out
# Max edge length in degrees before projecting (~100 m): GeoJSON edges are straight in
# lon/lat, and a long one bends in UTM (a 1-degree parallel at 52N by ~100 m).
_DENSIFY_DEG = 0.001


class RegionError(SpecError):
    """A region file or GeoJSON object that cannot be used."""

    def __init__(self, message: str):
        super().__init__("region", message)


def load_region(path: str | Path) -> Region:
    """Read a GeoJSON file (Feature, FeatureCollection or polygon geometry)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegionError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegionError(f"cannot read {path}: {exc}") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegionError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    except RecursionError:
        raise RegionError(f"{path} is nested too deeply to be GeoJSON") from None
    return region_from_geojson(obj)


def region_from_geojson(obj: Any) -> Region:
    """The (union of the) polygon(s) in a parsed GeoJSON object, validated."""
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise RegionError('not GeoJSON: expected an object with a "type" member')
    _check_legacy_crs(obj)
    kind = obj["type"]
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise RegionError('FeatureCollection has no "features" list')
        if not features:
            raise RegionError("FeatureCollection has no features")
        # The union of (non-empty) polygonal geometries is a Polygon or a MultiPolygon.
        return cast(Region, shapely.union_all([_feature_geometry(f, f"feature {i}")
                                               for i, f in enumerate(features)]))
    if kind == "Feature":
        return _feature_geometry(obj, "feature")
    if kind in _GEOMETRIES:
        return _polygon(obj, "geometry")
    raise RegionError(f"not GeoJSON: unknown type {kind!r} (expected Feature, "
                      "FeatureCollection, Polygon or MultiPolygon)")


def check_utm_reach(bounds: tuple[float, float, float, float], crs: str, field: str, what: str) -> None:
    """SpecError naming ``field`` when lon/lat ``bounds`` reach more than ``MAX_FROM_MERIDIAN_DEG``
    degrees of longitude from the meridian of UTM zone ``crs`` (EPSG:326zz / 327zz)."""
    meridian = -183.0 + 6.0 * int(crs[-2:])
    reach = max(abs(bounds[0] - meridian), abs(bounds[2] - meridian))
    if not reach <= MAX_FROM_MERIDIAN_DEG:
        raise SpecError(field, f"{what} lives in the UTM zone of its centre ({crs}) and reaches more than "
                               f"{MAX_FROM_MERIDIAN_DEG:g} degrees of longitude from its meridian; split it")


def project_lonlat(geom: _Geometry, crs: str) -> _Geometry:
    """A lon/lat geometry in ``crs``, edges densified so they keep their lon/lat shape."""
    return reproject_geometry(shapely.segmentize(geom, _DENSIFY_DEG), WGS84, crs)


def _check_legacy_crs(obj: dict) -> None:
    crs = obj.get("crs")
    props = crs.get("properties") if isinstance(crs, dict) else None
    name = props.get("name") if isinstance(props, dict) else None
    if name is not None and name not in _LONLAT_CRS_NAMES:
        raise RegionError(f"declares CRS {name!r}; GeoJSON must be EPSG:4326 lon/lat, "
                          "so reproject it (e.g. ogr2ogr -t_srs EPSG:4326)")


def _feature_geometry(feature: Any, where: str) -> Region:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise RegionError(f"{where} is not a GeoJSON Feature")
    geometry = feature.get("geometry")
    if geometry is None:
        raise RegionError(f"{where} has no geometry")
    return _polygon(geometry, where)


def _polygon(geometry: Any, where: str) -> Region:
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if not isinstance(kind, str):
        raise RegionError(f"{where} is not a GeoJSON geometry")
    if kind not in _POLYGONAL:
        raise RegionError(f"{where} is a {kind}; only Polygon and MultiPolygon regions "
                          "can be tiled")
    try:
        # ``kind`` is Polygon or MultiPolygon, so is the shape built from it.
        geom = cast(Region, shapely.force_2d(shape(geometry)))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise RegionError(f"{where} has malformed {kind} coordinates: {exc}") from None
    except RecursionError:
        raise RegionError(f"{where} has {kind} coordinates nested too deeply") from None
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise RegionError(f"{where} has coordinates that are not finite numbers")
    if geom.is_empty:
        raise RegionError(f"{where} is an empty {kind}")
    minlon, minlat, maxlon, maxlat = geom.bounds
    if minlon < -180 or maxlon > 180 or minlat < -90 or maxlat > 90:
        raise RegionError(f"{where} has coordinates outside lon/lat range (bounds {geom.bounds}); "
                          "it is probably in a projected CRS, but GeoJSON must be "
                          "EPSG:4326 lon/lat")
    geom = split_antimeridian(geom, where)
    if not geom.is_valid:
        raise RegionError(f"{where} is an invalid {kind}: {explain_validity(geom)}")
    return geom


def split_antimeridian(geom: Region, where: str = "region") -> Region:
    """``geom`` with each polygon whose rings cross the antimeridian (an edge spanning more
    than 180 and less than 360 degrees of longitude) cut into its parts on either side."""
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    if not any(_crosses(ring) for part in parts for ring in (part.exterior, *part.interiors)):
        return geom
    pieces = []
    for part in parts:
        if not any(_crosses(ring) for ring in (part.exterior, *part.interiors)):
            pieces.append(part)
            continue
        shell = _unwrap(np.asarray(part.exterior.coords))
        holes = [_near(_unwrap(np.asarray(r.coords)), shell) for r in part.interiors]
        unwrapped = Polygon(shell, holes)
        if not unwrapped.is_valid:
            raise RegionError(f"{where} crosses the antimeridian and is invalid there: {explain_validity(unwrapped)}")
        west = unwrapped.intersection(box(-180, -90, 180, 90))
        east = shapely.affinity.translate(unwrapped.intersection(box(180, -90, 540, 90)), -360)
        west_of_world = shapely.affinity.translate(unwrapped.intersection(box(-540, -90, -180, 90)), 360)
        pieces += [p for g in (west, east, west_of_world) for p in getattr(g, "geoms", [g])
                   if isinstance(p, Polygon) and not p.is_empty]
    merged = shapely.union_all(pieces)
    if merged.is_empty or not merged.is_valid or not isinstance(merged, (Polygon, MultiPolygon)):
        raise RegionError("cannot cut this region at the antimeridian: split it into parts east and "
                          "west of 180 degrees")
    return merged


def _crosses(ring) -> bool:
    steps = np.abs(np.diff(np.asarray(ring.coords)[:, 0]))
    return bool(((steps > 180) & (steps < 360)).any())


def _unwrap(coords: np.ndarray) -> np.ndarray:
    """Longitudes shifted by multiples of 360 so that no edge spans more than 180 degrees."""
    lon = coords[:, 0].copy()
    steps = np.diff(lon)
    lon[1:] = lon[0] + np.cumsum(steps - 360 * np.round(steps / 360) * (np.abs(steps) < 360))
    return np.column_stack([lon, coords[:, 1]])


def _near(hole: np.ndarray, shell: np.ndarray) -> np.ndarray:
    """A hole shifted by 360 degrees to lie over its (unwrapped) shell."""
    shift = 360 * np.round((shell[:, 0].mean() - hole[:, 0].mean()) / 360)
    return hole + np.array([shift, 0])
