"""Regions: GeoJSON polygons in lon/lat (EPSG:4326), checked before anything is tiled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar, Union, cast

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
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
    except (KeyError, TypeError, ValueError, IndexError, shapely.errors.ShapelyError) as exc:
        raise RegionError(f"{where} has malformed {kind} coordinates: {exc}") from None
    if geom.is_empty:
        raise RegionError(f"{where} is an empty {kind}")
    minlon, minlat, maxlon, maxlat = geom.bounds
    if minlon < -180 or maxlon > 180 or minlat < -90 or maxlat > 90:
        raise RegionError(f"{where} has coordinates outside lon/lat range (bounds {geom.bounds}); "
                          "it is probably in a projected CRS, but GeoJSON must be "
                          "EPSG:4326 lon/lat")
    if not geom.is_valid:
        raise RegionError(f"{where} is an invalid {kind}: {explain_validity(geom)}")
    return geom
