"""Read-only, sandboxed SQL over the store with DuckDB.

Every model table is visible by name: its Lance dataset is registered as an Arrow
dataset, so DuckDB pushes projections and filters down into the Lance scan (measured
faster than materialising the table; DuckDB's own ``lance`` extension would need a
network install). Each query gets a fresh in-memory connection configured *before* any
user SQL runs and then locked:

- ``enable_external_access = false``: no file or network access (``read_csv``,
  ``read_parquet``, ``COPY``, ``ATTACH``, ``INSTALL`` / ``LOAD``, httpfs URLs all fail);
- extension auto-install / auto-load and community extensions off;
- ``python_enable_replacements = false``: Python variables are not tables;
- memory and thread limits, then ``lock_configuration = true`` (no ``SET`` undoes it).

On top, only a single ``SELECT`` statement (``WITH``, ``VALUES``, ``DESCRIBE``,
``SUMMARIZE``, ``SHOW`` parse as SELECT) is accepted. A timer interrupts the
connection after ``timeout_s``; at most ``max_rows`` rows come back (``truncated``
says when more existed).

DuckDB has no float16 type: a float16 table (``store.schema.VECTOR_DTYPES``) is
registered through ``Float32Vectors``, a view of its Lance dataset whose ``vector``
column reads as float32 (the cast runs per scanned batch, after Lance's pushdown).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import duckdb
import lance
import pyarrow as pa

from rsembed_db.errors import SpecError, SqlTimeout
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.schema import vector_dtype

BATCH_ROWS = 2048


@dataclass(frozen=True)
class SqlLimits:
    """Per-query limits of the sandbox."""

    max_rows: int = 10_000
    timeout_s: float = 30.0
    memory_limit: str = "1GB"
    threads: int = 2


@dataclass
class SqlResult:
    table: pa.Table
    truncated: bool
    seconds: float


def _config(limits: SqlLimits) -> dict[str, object]:
    return {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "python_enable_replacements": False,
        "memory_limit": limits.memory_limit,
        "threads": limits.threads,
        "lock_configuration": True,
    }


class Float32Vectors(lance.LanceDataset):
    """A Lance dataset whose float16 ``vector`` column scans as float32 (DuckDB's view of
    a float16 table). DuckDB recognises Arrow datasets by class, hence the subclass; it
    only calls ``schema`` and ``scanner(...).to_reader()``."""

    def __init__(self, dataset: lance.LanceDataset) -> None:
        self.__dict__.update(dataset.__dict__)

    @property
    def schema(self) -> pa.Schema:
        stored = super().schema
        vector = stored.field("vector")
        return stored.set(stored.get_field_index("vector"),
                          vector.with_type(pa.list_(pa.float32(), vector.type.list_size)))

    def scanner(self, *args, **kwargs):  # type: ignore[override]
        return _CastScanner(super().scanner(*args, **kwargs), self.schema)


class _CastScanner:
    def __init__(self, scanner, schema: pa.Schema) -> None:
        self.scanner, self.schema = scanner, schema

    def to_reader(self) -> pa.RecordBatchReader:
        reader = self.scanner.to_reader()
        out = pa.schema([self.schema.field(n) if n in self.schema.names else f for n, f in
                         zip(reader.schema.names, reader.schema)])
        batches = (pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(b.columns, out)], schema=out)
                   for b in reader)
        return pa.RecordBatchReader.from_batches(out, batches)


def sandbox(store: EmbeddingStore, limits: SqlLimits = SqlLimits()) -> duckdb.DuckDBPyConnection:
    """A locked in-memory connection with every model table registered under its name."""
    con = duckdb.connect(":memory:", config=_config(limits))
    for name in store.table_names():
        dataset = store.table(name).to_lance()
        con.register(name, Float32Vectors(dataset) if vector_dtype(dataset.schema) == "float16" else dataset)
    return con


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """SpecError (field ``sql``) unless ``sql`` is exactly one SELECT statement."""
    if not isinstance(sql, str) or not sql.strip():
        raise SpecError("sql", "empty query")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SpecError("sql", _message(exc)) from None
    if len(statements) != 1:
        raise SpecError("sql", f"give exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise SpecError("sql", f"read-only: only SELECT queries are allowed, got {kind.name}")


def run_sql(store: EmbeddingStore, sql: str, limits: SqlLimits = SqlLimits()) -> SqlResult:
    """Run one read-only query in the sandbox; SpecError naming ``sql`` for any refusal."""
    started = time.perf_counter()
    con = sandbox(store, limits)
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(limits.timeout_s, interrupt)
    try:
        check_read_only(con, sql)
        timer.start()
        reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows > limits.max_rows:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except (duckdb.Error, pa.ArrowException, OSError) as exc:  # a streamed error arrives via Arrow
        if fired.is_set():
            raise SqlTimeout(f"sql: query interrupted after the time limit of {limits.timeout_s:g} s") from None
        raise SpecError("sql", _message(exc)) from None
    finally:
        timer.cancel()
        con.close()
    truncated = table.num_rows > limits.max_rows
    return SqlResult(table.slice(0, limits.max_rows), truncated, time.perf_counter() - started)


def _message(exc: Exception) -> str:
    """DuckDB's message on one line, without the caret context that follows a blank line."""
    text = " ".join(str(exc).strip().split("\n\n")[0].split())
    if isinstance(exc, duckdb.PermissionException):
        return f"file, network and extension access is disabled in the SQL sandbox ({text})"
    return text
