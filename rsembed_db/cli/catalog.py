"""``rsembed-db models | describe | tables | failures``: what exists."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config


def models() -> None:
    """List the available models."""
    from rsembed_db.api import describe_model, list_models

    table = Table("model", "dim", "kind", "bands", "scale_m")
    for name in list_models():
        d = describe_model(name)
        table.add_row(name, str(d.dim), d.kind, ",".join(d.bands), f"{d.scale_m:g}")
    Console().print(table)


def describe(model: str,
             config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value.")] = None) -> None:
    """Print a model's description as JSON."""
    from rsembed_db.api import describe_model

    print(json.dumps(describe_model(model, **parse_config(config)).to_dict(), indent=2, default=str))


def tables(db: DbOption = DEFAULT_DB,
           verbose: Annotated[bool, typer.Option("--verbose", "-v", help=(
               "Also bytes per row on disk: vectors, other columns, indexes, everything else (older "
               "versions, superseded indexes), and the total as a multiple of the raw float32 vectors."))] = False,
           ) -> None:
    """List tables with row counts, vector widths and dtypes, and models."""
    from rsembed_db.store.lance_store import EmbeddingStore

    store = EmbeddingStore(db)
    infos = store.info()
    table = Table("table", "rows", "dim", "dtype", "models", "tilings (rows)", title=db)
    for info in infos:
        tilings = ", ".join(f"{name} ({count})" for name, count in info.tilings.items())
        table.add_row(info.name, str(info.rows), str(info.dim), info.vector_dtype, ",".join(info.models), tilings)
    Console().print(table)
    if verbose:
        _storage_table(store, [info.name for info in infos])


def _storage_table(store, names: list[str]) -> None:
    from rsembed_db.store.storage import storage_report

    out = Table("table", "vectors B/row", "scalars B/row", "indexes B/row", "other B/row", "total B/row",
                "x raw f32", "superseded indexes", title="bytes on disk per row")
    for name in names:
        r = storage_report(store.dataset(name), store.storage_options)
        stale = f"{len(r.stale_index_dirs)} ({r.stale_index_bytes / 1e6:.1f} MB)" if r.stale_index_dirs else "0"
        out.add_row(name, *(f"{r.per_row(v):.1f}" for v in (r.vector_bytes, r.scalar_bytes, r.index_bytes,
                                                              r.other_bytes, r.total_bytes)),
                    f"{r.ratio_to_raw:.2f}", stale)
    Console().print(out)


def failures(db: DbOption = DEFAULT_DB,
             table: Annotated[Optional[str], typer.Option(help="Only this table.")] = None) -> None:
    """List tiles whose last attempt failed, with the error."""
    from rsembed_db.store.lance_store import EmbeddingStore

    rows = EmbeddingStore(db).failures(table)
    out = Table("table", "tile", "error", "at", title=f"{len(rows)} failed tiles")
    for row in rows:
        out.add_row(row["table_name"], row["tile_id"], Text(row["error"]), str(row["updated_at"]))
    Console().print(out)
