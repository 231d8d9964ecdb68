"""``rsembed-db sql``: read-only SQL over the stored tables (the sandbox of ``query.sql``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rsembed_db.cli.options import DEFAULT_DB, DbOption
from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice

CELL_CHARS = 60


def sql(
    query: Annotated[str, typer.Argument(help="One SELECT; every model table is a view of that name.")],
    format: Annotated[str, typer.Option(help="table (terminal), json, arrow (IPC stream) or parquet.")] = "table",
    out: Annotated[Optional[Path], typer.Option(help="Write the result here (needed for arrow/parquet).")] = None,
    max_rows: Annotated[Optional[int], typer.Option(help="Return at most this many rows (default 10000).")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Interrupt the query after this many seconds (default 30).")] = None,
    memory_limit: Annotated[Optional[str], typer.Option(help="Memory the query may use, e.g. 256MB (default 1GB).")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Run a read-only SQL query (no file or network access) and print or save the rows."""
    from rsembed_db.query.sql_process import SqlWorkers

    require_choice("format", format, ("table", "json", "arrow", "parquet"))
    if format in ("arrow", "parquet") and out is None:
        raise SpecError("out", f"--format {format} writes binary data: give --out PATH")
    # the query process imports DuckDB and Lance on the other core while this one imports LanceDB
    workers = SqlWorkers().start()
    try:
        from rsembed_db.query.sql import SqlLimits, run_sql
        from rsembed_db.store.lance_store import EmbeddingStore

        options = (("max_rows", max_rows), ("timeout_s", timeout), ("memory_limit", memory_limit))
        limits = SqlLimits(**{k: v for k, v in options if v is not None})  # type: ignore[arg-type]
        result = run_sql(EmbeddingStore(db), query, limits, workers)
    finally:
        workers.close()
    from rsembed_db.query.formats import ipc_stream_bytes, json_columns, json_rows, parquet_bytes, python_rows

    note = f"{result.table.num_rows} rows" + (f" (truncated at --max-rows {limits.max_rows})" if result.truncated else "")
    if format in ("arrow", "parquet"):
        assert out is not None  # checked above
        out.write_bytes(ipc_stream_bytes(result.table) if format == "arrow" else parquet_bytes(result.table))
        Console(stderr=True).print(f"{note} -> {out}")
    elif format == "json":
        text = json.dumps({"columns": json_columns(result.table.schema), "rows": json_rows(result.table),
                           "truncated": result.truncated})
        if out is None:
            print(text)
        else:
            out.write_text(text, encoding="utf-8")
    else:
        table = Table(*result.table.column_names, caption=note)
        for row in python_rows(result.table):
            table.add_row(*(Text(_cell(name, v)) for name, v in row.items()))
        Console().print(table)


def _cell(name: str, value: object) -> str:
    """A short, readable cell: vectors and grids as their size, binary (WKB) as its length,
    JSON text (``meta``) and long strings cut."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return f"[{len(value)} values]"
    if isinstance(value, bytes):
        return f"<{'WKB' if name == 'geometry' else 'binary'} {len(value)} B>"
    text = str(value)
    limit = 24 if name == "meta" else CELL_CHARS
    return text if len(text) <= limit else text[:limit - 3] + "..."
