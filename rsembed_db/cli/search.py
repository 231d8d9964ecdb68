"""``rsembed-db search``: filtered similarity search over a model's table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config, parse_lonlat
from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice

if TYPE_CHECKING:
    import numpy as np

    from rsembed_db.query.result import SearchResult
    from rsembed_db.store.lance_store import EmbeddingStore

FORMATS = ("table", "json", "geojson", "arrow")
Opt = typer.Option


def _vector(path: Path) -> np.ndarray:
    import numpy as np

    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise SpecError("vector-file", f"cannot read a .npy vector from {path}: {exc}") from exc


def _polygon(path: Path):
    from rsembed_db.tiling.region import load_region

    try:
        return load_region(path)
    except SpecError as exc:
        raise SpecError("polygon", str(exc).removeprefix("region: ")) from exc


def _title(store: EmbeddingStore, table: str, result: SearchResult) -> str:
    keys = result.query_keys
    if len(keys) == 1:
        row = store.get(table, keys[0], columns=["tile_id", "lon", "lat"])
        what = f"{row['tile_id']} ({row['lon']:.5f}, {row['lat']:.5f})"
    else:
        what = f"{len(keys)} examples" if keys else "the query vector"
    if not len(result):
        return f"0 rows matched the filters (query: {what}); widen them, or see `rsembed-db tables`"
    tiling = next((note for note in result.notes if note.startswith("searched ")), None)
    return (f"{len(result)} most similar to {what}, metric {result.metric} ({result.route} search"
            + (f"; {tiling}" if tiling else "") + ")")


def _print_table(title: str, result: SearchResult) -> None:
    out = Table()
    for name, width in (("#", 2), ("lon", 9), ("lat", 9), ("distance", 8), ("tile (H3 id)", 15)):
        out.add_column(name, no_wrap=True, min_width=width)
    out.add_column("key", overflow="ellipsis", no_wrap=True, max_width=14)
    for row in result.to_dicts():
        out.add_row(str(row["rank"]), f"{row['lon']:.5f}", f"{row['lat']:.5f}", f"{row['distance']:.6f}",
                    row["tile_id"], row["key"])
    console = Console()
    console.print(title, highlight=False, soft_wrap=True)
    if len(result):
        console.print(out)


def _write(result: SearchResult, fmt: str, out: Path | None) -> None:
    import pyarrow as pa

    if fmt == "arrow":
        with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, result.to_arrow().schema) as writer:
            writer.write_table(result.to_arrow())
    else:
        data = result.to_geojson() if fmt == "geojson" else result.to_dicts()
        text = json.dumps(data, default=str, indent=1)
        if out is None:
            print(text)
            return
        out.write_text(text)
    Console(stderr=True).print(f"wrote {len(result)} rows to {out}")


def search(
    model: Annotated[Optional[str], Opt(help="Model name (its table is searched).")] = None,
    table: Annotated[Optional[str], Opt(help="Table name instead of --model (see `rsembed-db tables`).")] = None,
    near: Annotated[Optional[str], Opt(help="LON,LAT: query with the stored embedding covering this point.")] = None,
    key: Annotated[Optional[str], Opt(help="Query with the stored row of this key.")] = None,
    vector_file: Annotated[Optional[Path], Opt(help="Query with a 1-d vector from a .npy file.")] = None,
    h3: Annotated[Optional[str], Opt(help="Query with the stored embedding of this H3 cell.")] = None,
    text: Annotated[Optional[str], Opt(help="Query with a text prompt (text-image models, e.g. remoteclip).")] = None,
    positive: Annotated[Optional[list[str]], Opt(help="Key of a positive example (repeatable).")] = None,
    negative: Annotated[Optional[list[str]], Opt(help="Key of a negative example (repeatable).")] = None,
    k: Annotated[int, Opt("-k", "--k", help="Number of neighbours.")] = 10,
    metric: Annotated[str, Opt(help="cosine, l2 or dot.")] = "cosine",
    year: Annotated[Optional[int], Opt(help="Only rows whose window's midpoint year is this.")] = None,
    start: Annotated[Optional[str], Opt(help="Only rows whose window overlaps [start, end): YYYY-MM-DD.")] = None,
    end: Annotated[Optional[str], Opt(help="End (exclusive) of that window, YYYY-MM-DD.")] = None,
    bbox: Annotated[Optional[str], Opt(help="minlon,minlat,maxlon,maxlat.")] = None,
    polygon: Annotated[Optional[Path], Opt(help="GeoJSON file: only rows inside this polygon.")] = None,
    h3_parent: Annotated[Optional[str], Opt(help="Only rows whose H3 cell lies in this cell.")] = None,
    spatial_match: Annotated[str, Opt(help="bbox/polygon: 'centre' inside, or footprint 'intersects'.")] = "centre",
    where: Annotated[Optional[str], Opt(help="SQL boolean expression over stored columns.")] = None,
    tiling: Annotated[str, Opt(help="Rows of one tiling: auto (the query row's own, default), any, h3:<res>, "
                                    "h3, point_buffer, bbox or grid.")] = "auto",
    include_query: Annotated[bool, Opt(help="Keep the query rows themselves in the results.")] = False,
    exact: Annotated[bool, Opt(help="Force exact search.")] = False,
    fmt: Annotated[str, Opt("--format", help="table, json, geojson or arrow.")] = "table",
    out: Annotated[Optional[Path], Opt(help="Write the results here (json/geojson/arrow).")] = None,
    config: Annotated[Optional[list[str]], Opt(help="Model config key=value.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Stored places most similar to a query, with filters (exact or ANN, chosen per query)."""
    from rsembed_db.producers.catalog import model_table, model_variant
    from rsembed_db.query.request import SearchFilters, SearchRequest
    from rsembed_db.query.search import search as run_search
    from rsembed_db.query.text import text_query
    from rsembed_db.store.lance_store import EmbeddingStore

    require_choice("format", fmt, FORMATS)
    if fmt == "arrow" and out is None:
        raise SpecError("out", "--format arrow needs --out FILE.arrow")
    if (model is None) == (table is None):
        raise SpecError("model", "give exactly one of --model or --table")
    vector = _vector(vector_file) if vector_file else None
    variant = model_variant(model, parse_config(config)) if model is not None else None
    if text is not None:
        if model is None or vector is not None:
            raise SpecError("text", "needs --model and no --vector-file")
        vector, variant = text_query(model, text, parse_config(config))
    fixed = tiling not in ("auto", "any")
    filters = SearchFilters(model_config=variant, year=year, start=start, end=end, bbox=bbox,
                            polygon=_polygon(polygon) if polygon else None, h3_parent=h3_parent,
                            where=where, spatial_match=spatial_match, tiling=tiling if fixed else None)
    request = SearchRequest(vector=vector, key=key,
                            near=parse_lonlat(near) if near else None, h3=h3,
                            positives=tuple(positive or ()), negatives=tuple(negative or ()),
                            k=k, metric=metric, filters=filters, exclude_query=not include_query, exact=exact,
                            tiling="auto" if fixed else tiling)
    store = EmbeddingStore(db)
    table = table or model_table(model, parse_config(config))
    result = run_search(store, table, request)
    if fmt == "table":
        _print_table(_title(store, table, result), result)
    else:
        _write(result, fmt, out)
