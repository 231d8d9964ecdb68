"""``rsembed-db check`` (alias ``fsck``): duplicate keys, orphaned files, dangling versions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from rsembed_db.cli.options import DEFAULT_DB, DbOption
from rsembed_db.specs.validate import require_choice

if TYPE_CHECKING:
    from rsembed_db.store.check import TableCheck

SHOWN = 5  # file names / versions listed per table


def check(
    table: Annotated[Optional[list[str]], typer.Option(help="Only this table (repeatable; default: every table).")] = None,
    repair: Annotated[bool, typer.Option(help="Delete duplicate rows, keeping the newest of each key (one commit).")] = False,
    format: Annotated[str, typer.Option(help="table (terminal) or json.")] = "table",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Check every table: duplicate keys, orphaned index / data files, dangling versions.

    Exits 0 when no duplicates are left and every version is readable, else 1
    (orphaned files are garbage, reported only: `optimize` removes them after 7 days).
    """
    from rsembed_db.store.check import check_table
    from rsembed_db.store.lance_store import EmbeddingStore
    from rsembed_db.store.schema import INTERNAL_TABLES

    require_choice("format", format, ("table", "json"))
    store = EmbeddingStore(db)
    names = table or store.table_names() + [n for n in INTERNAL_TABLES if store.has_table(n)]
    reports = [check_table(store, name, repair=repair) for name in names]
    if format == "json":
        print(json.dumps({"db": db, "tables": [r.to_dict() for r in reports]}, indent=2))
    else:
        _print(db, reports)
    if not all(r.healthy for r in reports):
        raise typer.Exit(1)


def _print(db: str, reports: list[TableCheck]) -> None:
    out = Table("table", "rows", "duplicate keys", "extra rows", "removed", "versions", "dangling versions",
                "orphaned files", title=f"check {db}")
    for r in reports:
        out.add_row(r.table, str(r.rows), str(r.duplicate_keys), str(r.extra_rows), str(r.removed_rows),
                    str(r.versions), str(len(r.dangling_versions)),
                    str(len(r.orphaned_index_files) + len(r.orphaned_data_files)))
    console = Console()
    console.print(out)
    for r in reports:
        for v in r.dangling_versions[:SHOWN]:
            console.print(f"{r.table}: version {v['version']} {v['problem']}", highlight=False, soft_wrap=True)
        orphans = r.orphaned_index_files + r.orphaned_data_files
        if orphans:
            console.print(f"{r.table}: orphaned {', '.join(orphans[:SHOWN])}" + (" ..." if len(orphans) > SHOWN else ""),
                          highlight=False, soft_wrap=True)
        if r.unversioned:
            console.print(f"{r.table}: a directory without any version (a creation that failed, e.g. on a full "
                          "disk); it holds no rows and the next write creates the table", highlight=False)
        if r.extra_rows > r.removed_rows:
            console.print(f"{r.table}: {r.duplicate_keys} keys stored more than once; "
                          "`rsembed-db check --repair` keeps the newest row of each", highlight=False)
