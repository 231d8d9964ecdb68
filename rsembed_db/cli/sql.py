"""``rsembed-db sql``: read-only SQL over the stored tables (the sandbox of ``query.sql``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rsembed_db.errors import SpecError
from rsembed_db.query.formats import (
    ipc_stream_bytes,
    json_columns,
    json_rows,
    parquet_bytes,
    python_rows,
)
from rsembed_db.query.sql import SqlLimits, run_sql
from rsembed_db.specs.validate import require_choice
from rsembed_db.store.lance_store import EmbeddingStore, default_db_path

CELL_CHARS = 60


def sql(
    query: Annotated[str, typer.Argument(help="One SELECT; every model table is a view of that name.")],
    format: Annotated[str, typer.Option(help="table (terminal), json, arrow (IPC stream) or parquet.")] = "table",
    out: Annotated[Optional[Path], typer.Option(help="Write the result here (needed for arrow/parquet).")] = None,
    max_rows: Annotated[int, typer.Option(help="Return at most this many rows.")] = SqlLimits.max_rows,
    timeout: Annotated[float, typer.Option(help="Interrupt the query after this many seconds.")] = SqlLimits.timeout_s,
    memory_limit: Annotated[str, typer.Option(help="Memory the query may use, e.g. 256MB or 2GiB.")] = SqlLimits.memory_limit,
    db: Annotated[str, typer.Option(help="Database path or URI.", envvar="RSEMBED_DB")] = default_db_path(),
) -> None:
    """Run a read-only SQL query (no file or network access) and print or save the rows."""
    require_choice("format", format, ("table", "json", "arrow", "parquet"))
    limits = SqlLimits(max_rows=max_rows, timeout_s=timeout, memory_limit=memory_limit)
    result = run_sql(EmbeddingStore(db), query, limits)
    note = f"{result.table.num_rows} rows" + (f" (truncated at --max-rows {max_rows})" if result.truncated else "")
    if format in ("arrow", "parquet"):
        if out is None:
            raise SpecError("out", f"--format {format} writes binary data: give --out PATH")
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
            table.add_row(*(Text(_cell(v)) for v in row.values()))
        Console().print(table)


def _cell(value: object) -> str:
    text = "NULL" if value is None else (value.hex() if isinstance(value, bytes) else str(value))
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS - 3] + "..."
