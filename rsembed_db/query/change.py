"""Change between two years: the cosine distance between each place's vectors of year A and B.

A place is one stored ROI (the ``spatial`` column: the same H3 cell, grid tile or box)
of one model variant and pooling (``model_config``, ``pooling``). For each year (the
``year`` column, the year of the window's midpoint) the place's most recent window is
used when several windows fall in that year (then the smallest key). Places stored in
only one of the two years are left out. The distance is ``1 - cos`` (0: same direction,
up to 2), as cosine search measures it; rows come back largest change first (ties by tile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from rsembed_db.errors import SpecError
from rsembed_db.query.cells import geojson_geometry, h3_hex, matching_addresses, read_addresses, vector_matrix
from rsembed_db.query.filters import CompiledFilter, compile_filters
from rsembed_db.query.pca import unit_rows
from rsembed_db.query.request import SearchFilters
from rsembed_db.specs.temporal import MAX_YEAR, MIN_YEAR
from rsembed_db.store.lance_store import EmbeddingStore

PLACE = ("spatial", "model_config", "pooling")
READ = ("key", *PLACE, "tile_id", "h3", "lon", "lat", "geometry", "t_start", "t_end", "year")
MAX_CHANGE_ROWS = 200_000


def _year(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_YEAR <= value <= MAX_YEAR:
        raise SpecError(field, f"must be an integer year in {MIN_YEAR}..{MAX_YEAR}, got {value!r}")
    return value


@dataclass
class ChangeResult:
    """``rows``: ``tile_id, h3`` (hex), ``lon, lat, geometry`` (WKB), ``key_from, key_to``,
    ``start_from, end_from, start_to, end_to``, ``distance``; largest distance first."""

    rows: pa.Table
    from_year: int
    to_year: int
    total: int
    offset: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + self.rows.num_rows
        return end if end < self.total else None

    def summary(self) -> dict[str, Any]:
        distances = self.rows["distance"].to_numpy()
        return {"from_year": self.from_year, "to_year": self.to_year, "total": self.total, "offset": self.offset,
                "returned": self.rows.num_rows, "next_offset": self.next_offset,
                "min_distance": float(distances.min()) if len(distances) else None,
                "max_distance": float(distances.max()) if len(distances) else None}

    def to_geojson(self) -> dict[str, Any]:
        features = []
        for row in self.rows.to_pylist():
            geometry = geojson_geometry(row.pop("geometry"))
            props = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
            features.append({"type": "Feature", "id": row["tile_id"], "geometry": geometry, "properties": props})
        return {"type": "FeatureCollection", "features": features, "properties": self.summary()}


def _latest_per_place(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    best: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        place = tuple(row[c] for c in PLACE)
        held = best.get(place)
        if held is None or (-row["t_start"].toordinal(), row["key"]) < (-held["t_start"].toordinal(), held["key"]):
            best[place] = row
    return best


def change(store: EmbeddingStore, table: str, from_year: int, to_year: int,
           filters: SearchFilters | None = None, limit: int | None = None, offset: int = 0,
           max_rows: int = MAX_CHANGE_ROWS) -> ChangeResult:
    """The places of ``table`` stored in both years, with the cosine distance between their vectors."""
    from_year, to_year = _year("from_year", from_year), _year("to_year", to_year)
    if from_year == to_year:
        raise SpecError("to_year", f"must differ from from_year ({from_year})")
    filters = filters or SearchFilters()
    if filters.year is not None or filters.start is not None or filters.end is not None:
        raise SpecError("filters.year", "the years come from from_year and to_year; give no time filter")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise SpecError("limit", f"must be a positive integer, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise SpecError("offset", f"must be a non-negative integer, got {offset!r}")
    compiled = compile_filters(filters)
    years = f"year IN ({from_year}, {to_year})"
    compiled = CompiledFilter(f"({compiled.sql}) AND {years}" if compiled.sql else years, compiled.polygon)
    dataset = store.dataset(table)
    matched = matching_addresses(dataset, compiled, max_rows)
    rows = read_addresses(dataset, matched["_rowaddr"].to_numpy(), [*READ, "vector"])
    vectors = unit_rows(vector_matrix(rows))
    records = rows.drop_columns(["vector"]).to_pylist()
    for i, record in enumerate(records):
        record["_i"] = i
    before = _latest_per_place([r for r in records if r["year"] == from_year])
    after = _latest_per_place([r for r in records if r["year"] == to_year])
    pairs = [(before[p], after[p]) for p in before.keys() & after.keys()]
    out = []
    for a, b in pairs:
        distance = float(1.0 - np.dot(vectors[a["_i"]], vectors[b["_i"]]))
        out.append({"tile_id": b["tile_id"], "h3": b["h3"], "lon": b["lon"], "lat": b["lat"],
                    "geometry": b["geometry"], "key_from": a["key"], "key_to": b["key"],
                    "start_from": a["t_start"], "end_from": a["t_end"], "start_to": b["t_start"],
                    "end_to": b["t_end"], "distance": distance})
    out.sort(key=lambda r: (-r["distance"], r["tile_id"], r["key_to"]))
    page = out[offset:offset + limit] if limit is not None else out[offset:]
    schema = pa.schema([("tile_id", pa.string()), ("h3", pa.uint64()), ("lon", pa.float64()), ("lat", pa.float64()),
                        ("geometry", pa.binary()), ("key_from", pa.string()), ("key_to", pa.string()),
                        ("start_from", pa.date32()), ("end_from", pa.date32()), ("start_to", pa.date32()),
                        ("end_to", pa.date32()), ("distance", pa.float64())])
    result = pa.Table.from_pylist(page, schema=schema)
    result = result.set_column(1, "h3", h3_hex(result["h3"]))
    return ChangeResult(result, from_year, to_year, len(out), offset)
