"""``rsembed-db change``: per place, the cosine distance between its vectors of two years."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config
from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice

FORMATS = ("geojson", "parquet")
Opt = typer.Option


def change(
    from_year: Annotated[int, Opt(help="The earlier year (the stored `year` column: the window's midpoint year).")],
    to_year: Annotated[int, Opt(help="The later year.")],
    model: Annotated[Optional[str], Opt(help="Model name (its table, this variant's rows).")] = None,
    table: Annotated[Optional[str], Opt(help="Table name instead of --model.")] = None,
    fmt: Annotated[str, Opt("--format", help="geojson or parquet (GeoParquet; needs --out).")] = "geojson",
    out: Annotated[Optional[Path], Opt(help="Output file (GeoJSON goes to stdout without it).")] = None,
    bbox: Annotated[Optional[str], Opt(help="minlon,minlat,maxlon,maxlat: places whose centre is inside.")] = None,
    polygon: Annotated[Optional[Path], Opt(help="GeoJSON file: places inside this polygon.")] = None,
    h3_parent: Annotated[Optional[str], Opt(help="Places whose H3 cell lies in this cell.")] = None,
    config: Annotated[Optional[list[str]], Opt(help="Model config key=value.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Change between two years: each place stored in both, with the cosine distance (1 - cos)
    between its two vectors, largest first."""
    import pyarrow.parquet as pq

    from rsembed_db.cli.search import _polygon
    from rsembed_db.producers.catalog import model_table, model_variant
    from rsembed_db.query.change import change as run_change
    from rsembed_db.query.export import with_geo_metadata
    from rsembed_db.query.request import SearchFilters
    from rsembed_db.store.lance_store import EmbeddingStore

    require_choice("format", fmt, FORMATS)
    if fmt == "parquet" and out is None:
        raise SpecError("out", "--format parquet needs --out FILE.parquet")
    if (model is None) == (table is None):
        raise SpecError("model", "give exactly one of --model or --table")
    variant = model_variant(model, parse_config(config)) if model is not None else None
    filters = SearchFilters(model_config=variant, bbox=bbox, polygon=_polygon(polygon) if polygon else None,
                            h3_parent=h3_parent)
    table = table or model_table(model, parse_config(config))
    result = run_change(EmbeddingStore(db), table, from_year, to_year, filters)
    if out is None:
        print(json.dumps(result.to_geojson()))
        return
    partial = out.with_name(out.name + ".partial")
    if fmt == "parquet":
        pq.write_table(with_geo_metadata(result.rows), partial)
    else:
        partial.write_text(json.dumps(result.to_geojson()))
    partial.replace(out)
    Console(stderr=True).print(f"wrote {result.total} places of {table} ({from_year} -> {to_year}) to {out}")
