"""What a similarity search returns, and its renderings: dicts, GeoJSON, Arrow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import h3
import pyarrow as pa
import shapely

from rsembed_db.query.geoarrow import with_geoarrow
from rsembed_db.store.schema import h3_hex

RESULT_COLUMNS = ("key", "model", "tile_id", "lon", "lat", "h3", "h3_id", "h3_res", "minlon", "minlat",
                  "maxlon", "maxlat", "t_start", "t_end", "year", "geometry")
BBOX = ("minlon", "minlat", "maxlon", "maxlat")
# Derived exactly as schema.py stores them instead of read: each column read is a random
# access per hit, 0.5-1.3 ms for k=10 on 2 cores (low-cardinality columns cost most).
SOURCES = {"h3_res": ("h3",), "h3_id": ("h3",), **{name: ("geometry",) for name in BBOX},
           "year": ("t_start", "t_end")}


def fetch_columns(wanted: tuple[str, ...], model: str | None) -> list[str]:
    """The stored columns to read for result columns ``wanted`` (``key`` always; ``model``
    not when the table's single ``model`` is known)."""
    need = {"key"}
    for name in wanted:
        if not (name == "model" and model is not None):
            need.update(SOURCES.get(name, (name,)))
    return [c for c in RESULT_COLUMNS if c in need]


def result_table(rows: pa.Table, wanted: tuple[str, ...], model: str | None) -> pa.Table:
    """``key``, ``distance`` (from ``_distance``), the ``wanted`` columns in RESULT_COLUMNS
    order (derived ones computed), then any extra column read (``vector``)."""
    derived: dict[str, pa.Array] = {}
    if "h3_res" in wanted:
        derived["h3_res"] = pa.array([None if c is None else h3.get_resolution(h3.int_to_str(c))
                                      for c in rows["h3"].to_pylist()], pa.int8())
    if "h3_id" in wanted:
        derived["h3_id"] = h3_hex(rows["h3"])
    if set(BBOX) & set(wanted):
        bounds = shapely.bounds(shapely.from_wkb(rows["geometry"].to_numpy(zero_copy_only=False))).reshape(-1, 4)
        derived.update({name: pa.array(bounds[:, i], pa.float64()) for i, name in enumerate(BBOX)})
    if "year" in wanted:
        derived["year"] = pa.array([None if a is None or b is None else (a + (b - a) / 2).year
                                    for a, b in zip(rows["t_start"].to_pylist(), rows["t_end"].to_pylist())],
                                   pa.int16())
    if "model" in wanted and model is not None:
        derived["model"] = pa.array([model] * rows.num_rows, pa.string())
    columns = {**{n: rows[n] for n in rows.column_names}, **derived, "distance": rows["_distance"]}
    extras = [n for n in rows.column_names if n not in RESULT_COLUMNS and n != "_distance"]
    names = ["key", "distance", *(n for n in RESULT_COLUMNS if n in wanted and n != "key"), *extras]
    return pa.table({n: columns[n] for n in names})


@dataclass
class SearchResult:
    """The nearest rows, nearest first, and how they were found.

    ``rows``: Arrow table of ``key``, ``distance`` and the requested ``RESULT_COLUMNS``
    (all by default; ``vector`` too when requested); ``route``: ``"exact"`` or ``"ann"``; ``matched``: the router's estimate
    of the rows passing the filters (exact for polygon filters; None when the route did
    not depend on it); ``notes``: why the route was chosen;
    ``query_keys``: the stored rows the query came from (key, near, h3, positives,
    negatives), excluded from ``rows`` when ``exclude_query``.
    """

    rows: pa.Table
    metric: str
    k: int
    route: str
    matched: int | None = None
    query_keys: tuple[str, ...] = ()
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.rows.num_rows

    @property
    def keys(self) -> list[str]:
        return self.rows["key"].to_pylist()

    def to_arrow(self) -> pa.Table:
        """The rows as Arrow: geometry as WKB tagged ``geoarrow.wkb`` (EPSG:4326), h3 as
        uint64 and ``h3_id`` as its hex string, dates as date32."""
        return with_geoarrow(self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        """JSON-ready rows: ``rank``, dates as ISO strings, ``h3`` as hex, geometry as GeoJSON."""
        out = []
        for rank, row in enumerate(self.rows.to_pylist(), 1):
            out.append({"rank": rank, **{name: _jsonable(name, value) for name, value in row.items()}})
        return out

    def to_geojson(self) -> dict[str, Any]:
        """A FeatureCollection: each row's footprint with its other columns as properties."""
        features = []
        for row in self.to_dicts():
            geometry = row.pop("geometry")
            features.append({"type": "Feature", "id": row["key"], "geometry": geometry, "properties": row})
        return {"type": "FeatureCollection", "features": features,
                "properties": {"metric": self.metric, "k": self.k, "route": self.route,
                               "matched": self.matched, "query_keys": list(self.query_keys)}}


def _jsonable(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "geometry":
        return shapely.geometry.mapping(shapely.from_wkb(value))
    if name == "h3":
        return h3.int_to_str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value
