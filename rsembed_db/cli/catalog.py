"""``rsembed-db models | describe | tables | failures``: what exists."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rsembed_db.api import describe_model, list_models
from rsembed_db.cli.options import parse_config
from rsembed_db.store.lance_store import EmbeddingStore, default_db_path

DbOption = Annotated[str, typer.Option(help="Database path or URI.", envvar="RSEMBED_DB")]


def models() -> None:
    """List the available models."""
    table = Table("model", "dim", "kind", "bands", "scale_m")
    for name in list_models():
        d = describe_model(name)
        table.add_row(name, str(d.dim), d.kind, ",".join(d.bands), f"{d.scale_m:g}")
    Console().print(table)


def describe(model: str,
             config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value.")] = None) -> None:
    """Print a model's description as JSON."""
    print(json.dumps(describe_model(model, **parse_config(config)).to_dict(), indent=2, default=str))


def tables(db: DbOption = default_db_path()) -> None:
    """List tables with row counts, vector widths and models."""
    infos = EmbeddingStore(db).info()
    table = Table("table", "rows", "dim", "models", title=db)
    for info in infos:
        table.add_row(info.name, str(info.rows), str(info.dim), ",".join(info.models))
    Console().print(table)


def failures(db: DbOption = default_db_path(),
             table: Annotated[Optional[str], typer.Option(help="Only this table.")] = None) -> None:
    """List tiles whose last attempt failed, with the error."""
    rows = EmbeddingStore(db).failures(table)
    out = Table("table", "tile", "error", "at", title=f"{len(rows)} failed tiles")
    for row in rows:
        out.add_row(row["table_name"], row["tile_id"], Text(row["error"]), str(row["updated_at"]))
    Console().print(out)
