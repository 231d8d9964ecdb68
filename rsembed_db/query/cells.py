"""The stored cells of a map view, paged, each with an embedding-derived colour.

``view_cells(store, table, filters, limit, offset)`` selects the rows passing the
filters (bbox of the view, window, polygon, H3 parent: ``SearchFilters``), orders them
by key (stable pages), and colours them with the first three principal components of
the view's vectors (``pca.PcaColours``). The projection is fitted on every matching
row, or on ``fit_rows`` of them evenly spaced in key order when more match, so every
page of one view gets the same colours. A view matching more than ``max_rows`` rows
is refused (``ResourceLimit`` naming ``bbox``): zoom in or filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from rsembed_db.errors import ResourceLimit, SpecError
from rsembed_db.query.filters import CompiledFilter, compile_filters
from rsembed_db.query.pca import PcaColours
from rsembed_db.query.profile import table_profile
from rsembed_db.query.request import SearchFilters
from rsembed_db.query.row_addrs import allowlist_bytes
from rsembed_db.store.lance_store import EmbeddingStore

VIEW_COLUMNS = ("key", "tile_id", "h3", "lon", "lat", "t_start", "t_end", "year", "geometry")
FIT_ROWS = 4096
MAX_VIEW_ROWS = 200_000


def matching_addresses(dataset, compiled: CompiledFilter, max_rows: int, columns: tuple[str, ...] = ("key",)
                       ) -> pa.Table:
    """``columns`` and ``_rowaddr`` of the rows passing ``compiled`` (SQL, then the exact
    polygon test); ResourceLimit naming ``bbox`` when more than ``max_rows`` pass the SQL."""
    count = dataset.count_rows(filter=compiled.sql)
    if count > max_rows:
        raise ResourceLimit("bbox", f"{count} stored rows in this view, more than the limit of {max_rows}: "
                                    "zoom in or add filters")
    wanted = list(dict.fromkeys([*columns, *(compiled.polygon.columns if compiled.polygon else ())]))
    rows = dataset.to_table(columns=wanted, filter=compiled.sql, with_row_address=True)
    if compiled.polygon:
        rows = rows.filter(pa.array(compiled.polygon.mask(rows)))
    return rows


def read_addresses(dataset, addresses: np.ndarray, columns: list[str]) -> pa.Table:
    """The rows at ``addresses`` (any order) with ``columns`` and ``_rowaddr``."""
    if len(addresses) == 0:
        return dataset.schema.empty_table().select(columns).append_column("_rowaddr", pa.array([], pa.uint64()))
    allow = allowlist_bytes(np.asarray(addresses, np.uint64))
    return dataset.scanner(columns=columns, row_addr_allowlist=allow, with_row_address=True).to_table()


def vector_matrix(rows: pa.Table) -> np.ndarray:
    """The ``vector`` column as an (N, D) float32 matrix."""
    dim = rows.schema.field("vector").type.list_size
    flat = pc.list_flatten(rows["vector"]).to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(rows.num_rows, dim)


def h3_hex(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """uint64 H3 ids as hex strings (null stays null)."""
    return pa.array([None if v is None else h3.int_to_str(v) for v in values.to_pylist()], pa.string())


def geojson_geometry(wkb: bytes | None) -> dict[str, Any] | None:
    return None if wkb is None else shapely.geometry.mapping(shapely.from_wkb(wkb))


@dataclass
class CellsPage:
    """One page of a view: ``rows`` (``key, tile_id, h3`` (hex), ``lon, lat, t_start,
    t_end, year, geometry`` (WKB), ``r, g, b`` (uint8)), ordered by key; ``total`` rows in
    the view; the ``pca`` fit that coloured them."""

    rows: pa.Table
    total: int
    offset: int
    limit: int
    pca: PcaColours

    @property
    def next_offset(self) -> int | None:
        end = self.offset + self.rows.num_rows
        return end if end < self.total else None

    def summary(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "limit": self.limit, "returned": self.rows.num_rows,
                "next_offset": self.next_offset, "pca": self.pca.to_dict()}

    def to_geojson(self) -> dict[str, Any]:
        features = []
        for row in self.rows.to_pylist():
            features.append({"type": "Feature", "id": row["key"], "geometry": geojson_geometry(row["geometry"]),
                             "properties": {"key": row["key"], "tile_id": row["tile_id"], "h3": row["h3"],
                                            "lon": row["lon"], "lat": row["lat"], "year": row["year"],
                                            "start": row["t_start"].isoformat(), "end": row["t_end"].isoformat(),
                                            "color": [row["r"], row["g"], row["b"]]}})
        return {"type": "FeatureCollection", "features": features, "properties": self.summary()}


def view_cells(store: EmbeddingStore, table: str, filters: SearchFilters, limit: int, offset: int = 0,
               fit_rows: int = FIT_ROWS, max_rows: int = MAX_VIEW_ROWS) -> CellsPage:
    """Page ``[offset, offset + limit)`` (in key order) of the rows of ``table`` passing ``filters``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SpecError("limit", f"must be a positive integer, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise SpecError("offset", f"must be a non-negative integer, got {offset!r}")
    dataset = store.dataset(table)
    window = table_profile(store, table).max_window_days() if filters.start else None  # t_start bound
    matched = matching_addresses(dataset, compile_filters(filters, max_window_days=window), max_rows)
    order = pc.sort_indices(matched["key"]).to_numpy()
    addresses = matched["_rowaddr"].to_numpy()[order]
    total = len(addresses)
    page = addresses[offset:offset + limit]
    sample = np.unique(np.linspace(0, total - 1, fit_rows).round().astype(int)) if total > fit_rows else slice(None)
    fit = addresses[sample]
    rows = read_addresses(dataset, np.union1d(page, fit), [*VIEW_COLUMNS, "vector"])
    position = {int(a): i for i, a in enumerate(rows["_rowaddr"].to_pylist())}
    vectors = vector_matrix(rows)
    pca = PcaColours.fit(vectors[[position[int(a)] for a in fit]])
    page_rows = rows.take(pa.array([position[int(a)] for a in page], pa.int64()))
    rgb = pca.colours(vectors[[position[int(a)] for a in page]])
    out = page_rows.select(list(VIEW_COLUMNS)).set_column(VIEW_COLUMNS.index("h3"), "h3", h3_hex(page_rows["h3"]))
    for i, channel in enumerate("rgb"):
        out = out.append_column(channel, pa.array(rgb[:, i], pa.uint8()))
    return CellsPage(out, total, offset, limit, pca)
