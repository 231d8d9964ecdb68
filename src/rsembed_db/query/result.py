"""What a similarity search returns, and its renderings: dicts, GeoJSON, Arrow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import h3
import pyarrow as pa
import shapely

RESULT_COLUMNS = ("key", "model", "tile_id", "lon", "lat", "h3", "h3_res", "minlon", "minlat",
                  "maxlon", "maxlat", "t_start", "t_end", "year", "geometry")


@dataclass
class SearchResult:
    """The nearest rows, nearest first, and how they were found.

    ``rows``: Arrow table with ``RESULT_COLUMNS`` plus ``distance`` (and ``vector`` when
    requested); ``route``: ``"exact"`` or ``"ann"``; ``matched``: rows passing the
    filters (exact when routed exact, an upper bound otherwise; None without filters);
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
        """The rows as Arrow (geometry as WKB, h3 as uint64, dates as date32)."""
        return self.rows

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
