"""Read-only, sandboxed SQL over the store with DuckDB, in a process of its own.

Every model table is visible by name: its Lance dataset (at the version current when the
query starts) is registered as an Arrow dataset, so DuckDB pushes projections and
filters down into the Lance scan. Only a single ``SELECT`` statement (``WITH``,
``VALUES``, ``DESCRIBE``, ``SUMMARIZE``, ``SHOW`` parse as SELECT) is accepted, and the
connection is locked down before it runs (``query.sql_sandbox``).

The query runs in a child process (``query.sql_worker``, started and watched by
``query.sql_process``) so that its limits hold for anything, single huge values included
(``repeat('x', 1e9)``, ``range(0, 150000000)``): DuckDB checks for interruption between
vectors and bounds only its buffer manager, but such a value is built by one function call
with plain allocations. Its spill directory is private and capped, and removed afterwards.
A service keeps ``SqlWorkers(spares=1)`` so that a query does not wait for the child's
imports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from rsembed_db.query.sql_process import SqlWorkers
from rsembed_db.query.sql_sandbox import SqlLimits, check_read_only
from rsembed_db.store.lance_store import EmbeddingStore

__all__ = ["SqlLimits", "SqlResult", "SqlWorkers", "run_sql"]


@dataclass
class SqlResult:
    table: pa.Table
    truncated: bool
    seconds: float
    peak_memory_bytes: int = 0  # the query process's peak resident memory


def run_sql(store: EmbeddingStore, sql: str, limits: SqlLimits = SqlLimits(),
            workers: SqlWorkers | None = None) -> SqlResult:
    """Run one read-only query under ``limits``: SpecError naming ``sql`` for any refusal,
    SqlTimeout past the time limit, ResourceLimit past the memory or result-size limit."""
    started = time.perf_counter()
    check_read_only(sql)
    tables = {}
    for name in store.table_names():
        dataset = store.dataset(name)
        tables[name] = [dataset.uri, dataset.version]
    worker = (workers or SqlWorkers()).take()
    try:
        job = {"sql": sql, "limits": limits.to_dict(), "tables": tables, "storage_options": store.storage_options}
        table, peak = worker.run(job, limits)
    finally:
        worker.close()
    truncated = table.num_rows > limits.max_rows
    return SqlResult(table.slice(0, limits.max_rows), truncated, time.perf_counter() - started, peak)
