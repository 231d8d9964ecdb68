"""Filtered similarity search over one model table: ``search(store, table, request)``.

Steps: resolve the query vector (anchors.py), drop conditions every row meets, compile
the filters to SQL plus an exact polygon test (filters.py), choose exact or ANN from the
estimated match count (router.py), run it, drop the query's own rows, and return a
SearchResult. A polygon is tested in the exact route's one pass over its bbox
(polygon_scan.py) or, for ANN and the in-memory copy, turned into an allow-list first.
Where it runs: with the table's vectors held in memory (hot.py) the exact route is numpy
over the rows Lance's scalar indexes select, and an unfiltered cosine ANN search is an
in-memory HNSW graph re-ranked exactly (hot_ann.py); otherwise LanceDB with the filter
as a prefilter (the exact route a flat scan, ``use_index=False``). Every route ranks by
LanceDB's distances (cosine ``1 - cos``, l2 squared, dot ``1 - dot``); the exact ones
return the true top-k of the matching rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsembed_db.errors import SpecError
from rsembed_db.query.anchors import resolve_query
from rsembed_db.query.filters import CompiledFilter, compile_filters, tiling_of
from rsembed_db.query.hot import CACHE, HotVectors
from rsembed_db.query.polygon_scan import scan_nearest
from rsembed_db.query.profile import TableProfile, table_profile
from rsembed_db.query.request import SearchFilters, SearchRequest
from rsembed_db.query.result import SearchResult, fetch_columns, result_table
from rsembed_db.query.router import Route, choose_route
from rsembed_db.query.row_addrs import allowlist_bytes
from rsembed_db.store.lance_store import EmbeddingStore, sql_quote


def _polygon_rows(dataset, compiled: CompiledFilter, scan: bool = False) -> np.ndarray:
    """Row addresses passing the SQL prefilter and the exact polygon test; ``scan``: the
    SQL evaluated by a scan, not from the scalar indexes (``router.SCAN_FILTER_SHARE``)."""
    assert compiled.polygon is not None  # called only for polygon filters
    candidates = dataset.scanner(columns=list(compiled.polygon.columns), filter=compiled.sql, with_row_address=True,
                                 use_scalar_index=not scan).to_table()
    return candidates["_rowaddr"].to_numpy()[compiled.polygon.mask(candidates)]


def _polygon_rows_hot(hot: HotVectors, dataset, compiled: CompiledFilter, rest: CompiledFilter) -> np.ndarray:
    """As ``_polygon_rows``, testing a ``centre`` polygon on the copy's centres: Lance
    answers only ``rest`` (the other filters, from its scalar indexes), if any."""
    assert compiled.polygon is not None  # called only for polygon filters
    if compiled.polygon.match != "centre":
        return _polygon_rows(dataset, compiled)
    positions = None
    if rest.sql is not None:
        addresses = dataset.scanner(columns=[], filter=rest.sql, with_row_address=True).to_table()["_rowaddr"]
        positions = hot.positions(addresses.to_numpy())
        if positions is None:  # not in the copy: Lance answers all of it
            return _polygon_rows(dataset, compiled)
    return hot.addresses[hot.in_polygon(positions, compiled.polygon)]


def _nearest(dataset, query: np.ndarray, metric: str, k: int, route: Route, sql: str | None,
             allowlist: bytes | None, columns: list[str]) -> pa.Table:
    nearest = {"column": "vector", "q": query, "k": k, "metric": metric, "use_index": route.kind == "ann"}
    if route.kind == "ann":
        nearest.update(nprobes=route.nprobes, refine_factor=route.refine_factor)
    scanner = dataset.scanner(columns=[*columns, "_distance"], nearest=nearest, filter=sql, prefilter=True,
                              row_addr_allowlist=allowlist, disable_scoring_autoprojection=True,
                              use_scalar_index=not (route.scan_filter and sql is not None))
    return scanner.to_table()


TIE_MARGIN = 8  # extra candidates, so ties at the k-th distance are broken by key like Lance's rows


def _nearest_hot(hot: HotVectors, dataset, query: np.ndarray, metric: str, k: int, filters: SearchFilters,
                 allowed: np.ndarray | None, columns: list[str]) -> pa.Table | None:
    """The exact route over in-memory vectors: the filter's row addresses from Lance's
    scalar indexes (the time window tested in memory: on Lance it is a refine filter
    reading each candidate's ``t_end``), distances in numpy, the result columns of the
    nearest rows read from Lance. None when a matching row is not in the copy."""
    window = filters.start is not None or filters.end is not None
    if allowed is None:
        sql = compile_filters(replace(filters, start=None, end=None)).sql if window else compile_filters(filters).sql
        if sql is not None:
            allowed = dataset.scanner(columns=[], filter=sql, with_row_address=True).to_table()["_rowaddr"].to_numpy()
    positions = None if allowed is None else hot.positions(allowed)
    if allowed is not None and positions is None:
        return None
    if window:
        positions = hot.in_window(positions, filters.start, filters.end)
    return _rows_at(dataset, *hot.nearest(query, positions, metric, k + TIE_MARGIN), columns)


def _rows_at(dataset, addresses: np.ndarray, distances: np.ndarray, columns: list[str]) -> pa.Table:
    """The ``columns`` of the rows at ``addresses`` (read from Lance), with ``_distance``."""
    rows = dataset._take_rows(addresses.tolist(), columns=columns)  # noqa: SLF001 - take by row address
    return rows.append_column("_distance", pa.array(distances, pa.float32()))


def _finish(rows: pa.Table, excluded: tuple[str, ...], request: SearchRequest, model: str | None) -> pa.Table:
    """Drop excluded keys, order nearest first (ties by key), keep k, shape the columns."""
    if excluded:
        rows = rows.filter(pc.invert(pc.is_in(rows["key"], pa.array(excluded))))
    rows = rows.sort_by([("_distance", "ascending"), ("key", "ascending")]).slice(0, request.k)
    return result_table(rows, request.columns, model)


def _filter_error(exc: Exception, request: SearchRequest) -> Exception:
    """A LanceDB error caused by the user's where-clause, as the SpecError naming it."""
    if request.filters.where is not None:
        return SpecError("filters.where", str(exc).splitlines()[0][:300])
    return exc


def search(store: EmbeddingStore, table_name: str, request: SearchRequest) -> SearchResult:
    """The ``request.k`` stored rows of ``table_name`` nearest to the query that pass the
    filters (fewer only when fewer match), nearest first."""
    started = time.perf_counter()
    profile = table_profile(store, table_name)
    dataset = profile.dataset
    resolved = resolve_query(profile, request)
    notes = []
    if request.tiling == "auto" and request.filters.tiling is None and resolved.keys:
        tilings = profile.tilings()
        tiling = next(iter(tilings)) if len(tilings) == 1 else _tiling_of_key(dataset, resolved.keys[0])
        request = replace(request, filters=replace(request.filters, tiling=tiling))
        notes.append(f"searched {tiling} rows, the query row's tiling (tiling='any' searches all)")
    filters = _without_table_wide(request.filters, profile)
    excluded = resolved.keys if request.exclude_query else ()
    columns = fetch_columns(request.columns, profile.model) + (["vector"] if request.include_vector else [])
    fetch = request.k + len(excluded)
    try:
        hot = CACHE.fresh((store.uri, table_name), dataset, profile.fragments())
        plan = _Plan(dataset, hot, resolved.vector, request.metric, fetch, filters,
                     _compile(filters, profile), columns)
        route = plan.choose_route(profile, request.exact)
        route, rows = plan.run(route)
        if route.kind == "ann" and rows is not None and rows.num_rows < fetch:  # the estimate was off
            route, rows = plan.run(Route("exact", f"ANN returned {rows.num_rows} < {fetch} rows; reran exact",
                                         route.matched))
    except (ValueError, OSError) as exc:
        raise _filter_error(exc, request) from exc
    if rows is None:
        rows = pa.schema([*(dataset.schema.field(c) for c in columns), pa.field("_distance", pa.float32())]).empty_table()
    return SearchResult(_finish(rows, excluded, request, profile.model), request.metric, request.k, route.kind,
                        route.matched, resolved.keys, time.perf_counter() - started, [*notes, route.reason])


def _compile(filters: SearchFilters, profile: TableProfile) -> CompiledFilter:
    return compile_filters(filters, max_window_days=profile.max_window_days() if filters.start else None,
                           spatial_index=profile.spatial_index)


@dataclass
class _Plan:
    """One search's inputs, and the rows inside its polygon once they are listed
    (``allowed``: row addresses; None while not listed or without a polygon)."""

    dataset: Any
    hot: HotVectors | None
    query: np.ndarray
    metric: str
    fetch: int
    filters: SearchFilters
    compiled: CompiledFilter
    columns: list[str]
    allowed: np.ndarray | None = None

    def choose_route(self, profile: TableProfile, exact: bool) -> Route:
        """The route; a polygon's rows are listed first over an in-memory copy (on Lance
        the exact route finds them in its one pass, polygon_scan.py), or when the route
        is ANN (its allow-list); then the match count is exact."""
        compiled, polygon = self.compiled, self.compiled.polygon
        if polygon and self.hot is not None:
            rest = _compile(replace(self.filters, polygon=None), profile)
            self.allowed = _polygon_rows_hot(self.hot, self.dataset, compiled, rest)
        allowed = self.allowed
        route = choose_route(profile, self.metric,
                             lambda: len(allowed) if allowed is not None else profile.estimate(compiled.sql, polygon),
                             exact)
        if polygon and self.allowed is None and route.kind == "ann":
            # a scan tests the bbox's lon/lat ranges cheaply; st_intersects (R-tree tables,
            # ``intersects``) is left to the index, which prunes before testing footprints
            scan = route.scan_filter and polygon.match == "centre"
            listed = self.allowed = _polygon_rows(self.dataset, compiled, scan)
            route = choose_route(profile, self.metric, lambda: len(listed), exact)
        return route if self.allowed is None else replace(route, matched=len(self.allowed))

    def run(self, route: Route) -> tuple[Route, pa.Table | None]:
        """The nearest rows on ``route`` (None: no row inside the polygon), and the route
        as taken."""
        dataset, hot, allowed, compiled = self.dataset, self.hot, self.allowed, self.compiled
        count = self.fetch + TIE_MARGIN
        if allowed is not None and len(allowed) == 0:
            return Route("exact", "no row inside the polygon", 0), None
        if route.kind == "ann" and hot is not None and hot.ann is not None and compiled.sql is None \
                and allowed is None and self.metric == "cosine":
            addresses, distances = hot.ann_nearest(self.query, self.metric, count)
            return (replace(route, reason=f"{route.reason}; in-memory HNSW, re-ranked exactly"),
                    _rows_at(dataset, addresses, distances, self.columns))
        if route.kind == "exact" and hot is not None:
            rows = _nearest_hot(hot, dataset, self.query, self.metric, self.fetch, self.filters, allowed, self.columns)
            if rows is not None:
                return replace(route, reason=f"{route.reason}; over in-memory vectors"), rows
        if route.kind == "exact" and compiled.polygon and allowed is None:
            addresses, distances, matched = scan_nearest(dataset, self.query, self.metric, count, compiled)
            route = replace(route, matched=matched, reason=f"{route.reason}; one pass over the polygon's bbox")
            return route, _rows_at(dataset, addresses, distances, self.columns) if matched else None
        allowlist = None if allowed is None else allowlist_bytes(allowed)
        # an allow-list holds the SQL's rows already: ANN prefiltered by it alone takes 16 ms
        # on 1M rows where adding the SQL takes 41 ms; the exact route keeps the SQL, without
        # which Lance's flat search over an allow-list read every row (322 ms)
        sql = None if route.kind == "ann" and allowlist is not None else compiled.sql
        return route, _nearest(dataset, self.query, self.metric, self.fetch, route, sql, allowlist, self.columns)


def _without_table_wide(filters: SearchFilters, profile: TableProfile) -> SearchFilters:
    """``filters`` without the conditions every row of the table meets: the tiling of a
    table of one tiling, the model and model variant of a table of one variant (the usual
    case; the service adds the variant to every model query). Each would otherwise make
    LanceDB prefilter every row."""
    wanted = filters.tiling
    if wanted is not None and all(t == wanted or (wanted == "h3" and t.startswith("h3")) for t in profile.tilings()):
        filters = replace(filters, tiling=None)
    if filters.model is not None and filters.model == profile.model:
        filters = replace(filters, model=None)
    if filters.model_config is not None and profile.matches_all(f"model_config = {sql_quote([filters.model_config])}"):
        filters = replace(filters, model_config=None)
    return filters


def _tiling_of_key(dataset, key: str) -> str:
    row = dataset.to_table(columns=["spatial_kind", "h3_res"], filter=f"key = {sql_quote([key])}").to_pylist()[0]
    return tiling_of(row["spatial_kind"], row["h3_res"])
