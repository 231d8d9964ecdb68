"""``rsembed-db labels``: the label sets of the explorer (list, add, export, delete)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config
from rsembed_db.errors import SpecError

app = typer.Typer(help="Label sets: named positive / negative examples (the explorer's).", no_args_is_help=True)


@app.command("list")
def list_sets(db: DbOption = DEFAULT_DB) -> None:
    """Every label set with its table and counts."""
    from rsembed_db.store.labels import LabelSets
    from rsembed_db.store.lance_store import EmbeddingStore

    out = Table("set", "table", "positives", "negatives", "updated (UTC)", title=db)
    for info in LabelSets(EmbeddingStore(db)).sets():
        out.add_row(info.name, info.table, str(info.positives), str(info.negatives),
                    info.updated_at.strftime("%Y-%m-%d %H:%M:%S"))
    Console().print(out)


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Label set name.")],
    positive: Annotated[Optional[list[str]], typer.Option(help="Key of a positive example (repeatable).")] = None,
    negative: Annotated[Optional[list[str]], typer.Option(help="Key of a negative example (repeatable).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model whose table holds the keys.")] = None,
    table: Annotated[Optional[str], typer.Option(help="Table holding the keys, instead of --model.")] = None,
    config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Add or change labels of a set (keys must be stored in the table)."""
    from rsembed_db.producers.catalog import model_table
    from rsembed_db.store.labels import LabelSets, check_set_name
    from rsembed_db.store.lance_store import EmbeddingStore

    if (model is None) == (table is None):
        raise SpecError("model", "give exactly one of --model or --table")
    labels = [(k, "positive") for k in positive or []] + [(k, "negative") for k in negative or []]
    name = check_set_name(name, "set")
    written = LabelSets(EmbeddingStore(db)).put(name, table or model_table(model, parse_config(config)), labels,
                                                f"cli:{getpass.getuser()}")
    print(f"{written} labels written to set {name}")


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="Label set name.")],
    out: Annotated[Optional[Path], typer.Option(help="Output GeoJSON file (stdout without it).")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """A label set as GeoJSON: one Feature per label (the row's footprint; key, label, who, at, h3, ...)."""
    from rsembed_db.query.labels import label_set_geojson
    from rsembed_db.store.labels import check_set_name
    from rsembed_db.store.lance_store import EmbeddingStore

    text = json.dumps(label_set_geojson(EmbeddingStore(db), check_set_name(name, "set")))
    if out is None:
        print(text)
        return
    out.write_text(text)
    Console(stderr=True).print(f"wrote set {name} to {out}")


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Label set name.")],
    key: Annotated[Optional[list[str]], typer.Option(help="Remove only this key's label (repeatable).")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Remove a label set, or some of its labels."""
    from rsembed_db.store.labels import LabelSets, check_set_name
    from rsembed_db.store.lance_store import EmbeddingStore

    removed = LabelSets(EmbeddingStore(db)).delete(check_set_name(name, "set"), key or None)
    if removed == 0:
        raise SpecError("set", f"nothing to remove from label set {name!r}")
    print(f"removed {removed} labels from set {name}")
