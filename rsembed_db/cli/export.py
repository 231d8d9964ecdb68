"""``rsembed-db export``: a model table to Parquet, GeoParquet or Arrow IPC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config


def export(
    model: Annotated[str, typer.Option(help="Model name (its table is exported).")],
    out: Annotated[Path, typer.Option(help="Output file.")],
    format: Annotated[str, typer.Option(help="parquet, geoparquet or arrow (IPC file).")] = "parquet",
    where: Annotated[Optional[str], typer.Option(help="Row filter, e.g. \"year = 2017 AND h3_res = 8\".")] = None,
    config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Export the stored embeddings of a model (streamed; the file appears when complete)."""
    from rsembed_db.producers.catalog import model_table
    from rsembed_db.query.export import export_table
    from rsembed_db.store.lance_store import EmbeddingStore

    table = model_table(model, parse_config(config))
    summary = export_table(EmbeddingStore(db), table, out, format, where)
    print(f"wrote {summary.rows} rows of {table} to {summary.path} ({summary.format})")
