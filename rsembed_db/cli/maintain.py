"""``rsembed-db index`` and ``rsembed-db optimize``: index building and table upkeep."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config

if TYPE_CHECKING:
    from rsembed_db.store.lance_store import EmbeddingStore

Opt = typer.Option
ModelOption = Annotated[Optional[str], Opt(help="Only this model's table (default: every table).")]
ConfigOption = Annotated[Optional[list[str]], Opt(help="Model config key=value.")]


def _tables(store: EmbeddingStore, model: str | None, config: list[str] | None) -> list[str]:
    from rsembed_db.producers.catalog import model_table

    return [model_table(model, parse_config(config))] if model else store.table_names()


def index(
    model: ModelOption = None,
    config: ConfigOption = None,
    index_type: Annotated[Optional[str], Opt(help="IVF_PQ, IVF_RQ or IVF_HNSW_SQ.")] = None,
    metric: Annotated[str, Opt(help="Distance the vector index serves: cosine, l2 or dot.")] = "cosine",
    min_rows: Annotated[Optional[int], Opt(help="Build the vector index only from this many rows.")] = None,
    rebuild: Annotated[bool, Opt(help="(Re)build the vector index now, whatever the row count.")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create missing indexes (scalar; vector once large enough) and fold new rows in."""
    from rsembed_db.store.indexes import IndexPolicy, build_vector_index, ensure_indexes, vector_index_info
    from rsembed_db.store.lance_store import EmbeddingStore

    env = IndexPolicy.from_env()
    policy = IndexPolicy(min_rows if min_rows is not None else env.vector_min_rows,
                         index_type or env.index_type, metric)
    store = EmbeddingStore(db)
    out = Table("table", "rows", "created", "folded rows", "vector index", title=db)
    for name in _tables(store, model, config):
        table = store.table(name)
        if rebuild:
            build_vector_index(table, policy)
        report = ensure_indexes(table, policy)
        info = vector_index_info(table)
        described = f"{info.index_type} {info.metric}, {info.num_partitions} partitions" if info else "none"
        out.add_row(name, str(report.rows_after), ",".join(report.created) or "-", str(report.folded_rows), described)
    Console().print(out)


def optimize(
    model: ModelOption = None,
    config: ConfigOption = None,
    retention_days: Annotated[float, Opt(help="Keep versions newer than this many days (0: latest only).")] = 7.0,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Compact files, fold new rows into the indexes, and remove old versions (of the internal
    tables too; with them the indexes only they used: "superseded indexes" counts those a
    retained version still holds); drop the staging tables of distributed runs killed longer
    ago than the retention."""
    from rsembed_db.store.indexes import optimize_table
    from rsembed_db.store.lance_store import EmbeddingStore
    from rsembed_db.store.schema import INTERNAL_TABLES
    from rsembed_db.store.staging import stale_staging

    store = EmbeddingStore(db)
    retention = dt.timedelta(days=retention_days)
    out = Table("table", "rows before", "rows after", "versions before", "versions after", "folded rows",
                "superseded indexes", title=db)
    internal = [] if model else [n for n in INTERNAL_TABLES if store.has_table(n)]
    for name in _tables(store, model, config) + internal:
        report = optimize_table(store.table(name), retention, store.storage_options)
        out.add_row(name, str(report.rows_before), str(report.rows_after), str(report.versions_before),
                    str(report.versions_after), str(report.folded_rows), str(report.superseded_indexes))
    for name in [] if model else stale_staging(store, retention):
        store.drop_internal(name)
        out.add_row(name, "dropped", "-", "-", "-", "-", "-")
    Console().print(out)
