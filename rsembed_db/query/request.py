"""What a similarity search asks for: the query, k, the metric and the filters.

``SearchRequest`` is the one input of :func:`rsembed_db.query.search.search`; the CLI and
the HTTP service both build it (the service through :meth:`SearchRequest.from_dict`).
Construction validates everything that can be checked without the table and raises
``SpecError`` naming the field (``k``, ``metric``, ``filters.bbox``, ...).

Exactly one query form is given:

- ``vector``: a query vector of the table's width;
- ``key``: a stored row's key (its vector is the query);
- ``near=(lon, lat)``: the stored row whose footprint covers the point, for the
  filters' model and time window (the most recent window when several cover it);
- ``h3``: an H3 cell; the stored row of that cell, else the stored cell containing
  it (coarser), else the row covering the cell's centre;
- ``positives`` (+ optional ``negatives``): keys or vectors; see ``query.examples``
  for how they combine (``2 * mean(pos) - mean(neg)``, normalised for cosine).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Union

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from rsembed_db.errors import SpecError
from rsembed_db.query.result import RESULT_COLUMNS
from rsembed_db.query.where import validate_where
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.spatial import BBox, H3Cell
from rsembed_db.specs.temporal import MAX_YEAR, MIN_YEAR, parse_date
from rsembed_db.specs.validate import require_choice

METRICS = ("cosine", "l2", "dot")
SPATIAL_KINDS = ("h3", "point_buffer", "bbox", "grid")
TILING_DEFAULTS = ("auto", "any")
SPATIAL_MATCH = ("centre", "intersects")
MAX_K = 10_000

Example = Union[str, Sequence[float], np.ndarray]  # a stored key or a vector


def _as_vector(field_name: str, value: Any) -> np.ndarray:
    try:
        vector = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise SpecError(field_name, "must be a list of numbers") from exc
    if vector.ndim != 1 or vector.size == 0:
        raise SpecError(field_name, f"must be a non-empty 1-d list of numbers, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise SpecError(field_name, "must contain finite numbers only")
    return vector


def _as_examples(field_name: str, values: Any) -> tuple[str | np.ndarray, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, np.ndarray)) or not isinstance(values, Sequence):
        raise SpecError(field_name, "must be a list of stored keys or vectors")
    out: list[str | np.ndarray] = []
    for i, item in enumerate(values):
        if isinstance(item, str):
            if not item:
                raise SpecError(f"{field_name}[{i}]", "empty key")
            out.append(item)
        else:
            out.append(_as_vector(f"{field_name}[{i}]", item))
    return tuple(out)


def _as_polygon(value: Any) -> BaseGeometry:
    """A GeoJSON geometry / Feature / FeatureCollection (dict) or a shapely geometry."""
    if isinstance(value, BaseGeometry):
        geom = value
    elif isinstance(value, Mapping):
        kind = value.get("type")
        try:
            if kind == "FeatureCollection":
                geom = shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in value["features"]])
            elif kind == "Feature":
                geom = shapely.geometry.shape(value["geometry"])
            else:
                geom = shapely.geometry.shape(value)
        except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
            raise SpecError("filters.polygon", f"not a GeoJSON geometry, Feature or FeatureCollection: {exc}") from exc
    else:
        raise SpecError("filters.polygon", f"must be GeoJSON (an object), got {type(value).__name__}")
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise SpecError("filters.polygon", f"must be a non-empty Polygon or MultiPolygon, got {geom.geom_type}")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    minlon, minlat, maxlon, maxlat = geom.bounds
    if not (-180 <= minlon <= maxlon <= 180 and -90 <= minlat <= maxlat <= 90):
        raise SpecError("filters.polygon", f"coordinates must be lon/lat (EPSG:4326), bounds {geom.bounds}")
    return geom


def _as_bbox(value: Any) -> BBox:
    if isinstance(value, BBox):
        return value
    if isinstance(value, Mapping):
        value = [value.get(k) for k in ("minlon", "minlat", "maxlon", "maxlat")]
    if isinstance(value, str):
        value = value.split(",")
    try:
        minlon, minlat, maxlon, maxlat = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise SpecError("filters.bbox", f"expected minlon,minlat,maxlon,maxlat, got {value!r}") from exc
    try:
        return BBox(minlon, minlat, maxlon, maxlat)
    except SpecError as exc:
        raise SpecError("filters.bbox", str(exc)) from exc


def parse_tiling(field_name: str, value: Any) -> str:
    """``h3:<res>``, ``h3``, ``point_buffer``, ``bbox`` or ``grid`` (canonical spelling)."""
    text = value.strip().lower() if isinstance(value, str) else value
    if isinstance(text, str) and text.startswith("h3:"):
        res = text[3:]
        if not res.isdigit() or not 0 <= int(res) <= 15:
            raise SpecError(field_name, f"h3:<res> needs a resolution 0..15, got {value!r}")
        return f"h3:{int(res)}"
    require_choice(field_name, text, (*SPATIAL_KINDS, "h3:<res>"))
    return text


def _as_cell(field_name: str, value: Any) -> H3Cell:
    if isinstance(value, H3Cell):
        return value
    try:
        return H3Cell(value)
    except SpecError as exc:
        raise SpecError(field_name, f"not a valid H3 cell id: {value!r}") from exc


@dataclass(frozen=True)
class SearchFilters:
    """Which stored rows may be returned (all given filters must hold: AND).

    - ``model``: the ``model`` column equals this name.
    - ``model_config``: the ``model_config`` column (canonical JSON of the resolved
      config) equals this: rows of one model variant only, e.g. one MOSAIKS seed.
    - ``start`` / ``end``: the row's window ``[t_start, t_end)`` overlaps ``[start, end)``
      (either bound may be open).
    - ``year``: the ``year`` column (year of the window midpoint) equals this.
    - ``bbox`` (``BBox`` or ``(minlon, minlat, maxlon, maxlat)``), ``polygon`` (GeoJSON
      geometry / Feature / FeatureCollection, or shapely), ``h3_parent`` (an H3 cell:
      rows whose ``h3`` cell is that cell or a descendant; rows without an H3 cell never
      match). ``spatial_match`` says how a footprint meets bbox / polygon: ``"centre"``
      (default: the row's centre lon/lat lies inside; adjacent regions partition the
      tiles) or ``"intersects"`` (the footprint touches the region).
    - ``where``: a boolean SQL expression over stored scalar columns, validated by
      ``query.where.validate_where`` (no ``;``, comments, subqueries or functions).
    - ``tiling``: rows of one spatial kind only: ``h3:<res>`` (H3 cells of that
      resolution), ``h3`` (any resolution), ``point_buffer``, ``bbox`` or ``grid``.
    """

    model: str | None = None
    model_config: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    year: int | None = None
    bbox: BBox | None = None
    polygon: BaseGeometry | None = None
    h3_parent: H3Cell | None = None
    where: str | None = None
    spatial_match: str = "centre"
    tiling: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise SpecError("filters.model", f"must be a model name, got {self.model!r}")
        if self.model_config is not None and not isinstance(self.model_config, str):
            set_("model_config", canonical_json(self.model_config))
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                set_(name, parse_date(f"filters.{name}", getattr(self, name)))
        if self.start and self.end and not self.start < self.end:
            raise SpecError("filters.end", f"must be after start ({self.start}), got {self.end}")
        if self.year is not None:
            if isinstance(self.year, bool) or not isinstance(self.year, int) or not MIN_YEAR <= self.year <= MAX_YEAR:
                raise SpecError("filters.year", f"must be an integer year in {MIN_YEAR}..{MAX_YEAR}, got {self.year!r}")
        if self.bbox is not None:
            set_("bbox", _as_bbox(self.bbox))
        if self.polygon is not None:
            set_("polygon", _as_polygon(self.polygon))
        if self.h3_parent is not None:
            set_("h3_parent", _as_cell("filters.h3_parent", self.h3_parent))
        if self.where is not None:
            set_("where", validate_where(self.where))
        require_choice("filters.spatial_match", self.spatial_match, SPATIAL_MATCH)
        if self.tiling is not None:
            set_("tiling", parse_tiling("filters.tiling", self.tiling))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "SearchFilters":
        """From JSON: ``{"model", "start", "end", "year", "bbox": [4 numbers], "polygon":
        GeoJSON, "h3_parent": "8a1f..." | int, "where": "...", "spatial_match": ...}``."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise SpecError("filters", f"must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"filters.{unknown[0]}", "unknown filter", sorted(known))
        return cls(**data)


@dataclass(frozen=True)
class SearchRequest:
    """One similarity search: a query form, ``k``, a metric and filters.

    ``metric``: ``cosine`` (distance ``1 - cos``), ``l2`` (squared euclidean) or ``dot``
    (distance ``1 - dot``, LanceDB's convention); smaller is nearer for all three.
    ``exclude_query``: drop the query rows themselves (the ``key`` row, the row found
    by ``near`` / ``h3``, and key positives) from the results (default True).
    ``columns``: result columns besides ``key`` and ``distance`` (default: all of
    ``result.RESULT_COLUMNS``); fewer columns read less per hit, e.g. ``("lon", "lat")``.
    ``include_vector``: add the ``vector`` column to the results.
    ``exact``: force exact search regardless of the router (for checks and baselines).
    ``tiling``: ``auto`` (default) searches rows of the query row's own tiling (its
    spatial kind, and H3 resolution) when the query comes from stored rows and
    ``filters.tiling`` is not set; ``any`` searches every row.
    """

    vector: np.ndarray | None = None
    key: str | None = None
    near: tuple[float, float] | None = None
    h3: H3Cell | None = None
    positives: tuple[Example, ...] = ()
    negatives: tuple[Example, ...] = ()
    k: int = 10
    metric: str = "cosine"
    filters: SearchFilters = field(default_factory=SearchFilters)
    exclude_query: bool = True
    columns: tuple[str, ...] = RESULT_COLUMNS
    include_vector: bool = False
    exact: bool = False
    tiling: str = "auto"

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        if self.vector is not None:
            set_("vector", _as_vector("vector", self.vector))
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise SpecError("key", f"must be a stored key (string), got {self.key!r}")
        if self.near is not None:
            set_("near", self._lonlat(self.near))
        if self.h3 is not None:
            set_("h3", _as_cell("h3", self.h3))
        set_("positives", _as_examples("positives", self.positives))
        set_("negatives", _as_examples("negatives", self.negatives))
        given = [name for name in ("vector", "key", "near", "h3") if getattr(self, name) is not None]
        given += ["positives"] if self.positives else []
        if len(given) != 1:
            raise SpecError("query", "give exactly one of vector, key, near, h3, positives"
                            + (f"; got {', '.join(given)}" if given else ""))
        if self.negatives and not self.positives:
            raise SpecError("negatives", "negatives need positives")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise SpecError("k", f"must be an integer in 1..{MAX_K}, got {self.k!r}")
        require_choice("metric", self.metric, METRICS)
        require_choice("tiling", self.tiling, TILING_DEFAULTS)
        if isinstance(self.columns, str) or not isinstance(self.columns, (tuple, list)):
            raise SpecError("columns", "must be a list of result column names", RESULT_COLUMNS)
        for name in self.columns:
            require_choice("columns", name, RESULT_COLUMNS)
        set_("columns", tuple(self.columns))
        if isinstance(self.filters, Mapping):
            set_("filters", SearchFilters.from_dict(self.filters))
        elif not isinstance(self.filters, SearchFilters):
            raise SpecError("filters", f"must be SearchFilters or an object, got {type(self.filters).__name__}")

    @staticmethod
    def _lonlat(value: Any) -> tuple[float, float]:
        if isinstance(value, Mapping):
            value = (value.get("lon"), value.get("lat"))
        try:
            lon, lat = (float(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise SpecError("near", f"expected [lon, lat], got {value!r}") from exc
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise SpecError("near", f"lon must be in [-180, 180] and lat in [-90, 90], got {value!r}")
        return lon, lat

    @property
    def query_kind(self) -> str:
        """Which query form was given: vector, key, near, h3 or examples."""
        for name in ("vector", "key", "near", "h3"):
            if getattr(self, name) is not None:
                return name
        return "examples"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchRequest":
        """From JSON, e.g. ``{"key": "...", "k": 10, "metric": "cosine", "filters": {...}}``;
        ``near`` is ``[lon, lat]`` or ``{"lon", "lat"}``; unknown fields are refused."""
        if not isinstance(data, Mapping):
            raise SpecError("request", f"must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(unknown[0], "unknown search field", sorted(known))
        values = dict(data)
        values["filters"] = SearchFilters.from_dict(values.get("filters"))
        for name in ("positives", "negatives"):
            if values.get(name) is not None and not isinstance(values[name], (list, tuple)):
                raise SpecError(name, "must be a list of stored keys or vectors")
            values[name] = tuple(values.get(name) or ())
        return cls(**values)
