"""The ``rsembed-db`` entry point: commands plus one-line errors with an exit code per kind."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from rsembed_db.cli import (
    catalog,
    change,
    check,
    export,
    export_batch,
    ingest,
    inspect,
    labels,
    maintain,
    retrieve,
    search,
    serve,
    sql,
)
from rsembed_db.cli.errors import exit_code
from rsembed_db.display import enable_pretty_warnings
from rsembed_db.errors import RsembedError

app = typer.Typer(help="rsembed-db: an embedding database for Earth observation.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _global_options(storage_option: Annotated[Optional[list[str]], typer.Option(
        "--storage-option", metavar="KEY=VALUE",
        help="Object-store option for an s3:// (gs://, az://) --db, e.g. aws_endpoint=http://127.0.0.1:9000 "
             "(repeatable; before the command; also $RSEMBED_STORAGE_OPTIONS as a JSON object).")] = None) -> None:
    """rsembed-db: an embedding database for Earth observation."""
    if storage_option:  # imported only then: importing rsembed_db.store imports LanceDB (~1.3 s)
        from rsembed_db.store.options import export_storage_options, parse_storage_options

        export_storage_options(parse_storage_options(storage_option))


app.command()(ingest.ingest)
app.command()(retrieve.get)
app.command()(search.search)
app.command()(maintain.index)
app.command()(maintain.optimize)
app.command()(catalog.tables)
app.command()(catalog.models)
app.command()(catalog.describe)
app.command()(catalog.failures)
app.command()(sql.sql)
app.command()(export.export)
app.command()(export_batch.export_batch)
app.command()(inspect.inspect)
app.command()(serve.serve)
app.command()(change.change)
app.command()(check.check)
app.command("fsck", help="Alias of `check`.")(check.check)
app.add_typer(labels.app, name="labels")


def main() -> None:
    """Run the CLI; an expected failure prints ``error: <field>: <problem>`` and exits with
    its code (``cli.errors.EXIT_CODES``: 2 for invalid input).

    Usage errors (unknown option, missing argument) are typer's own: a message, exit 2.
    """
    enable_pretty_warnings()
    try:
        app()
    except RsembedError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exit_code(exc))
