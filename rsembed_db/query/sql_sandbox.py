"""The DuckDB side of the SQL sandbox: limits, the locked configuration, the read-only check.

Imports DuckDB only, so the query process (``query.sql_worker``) starts fast. A
connection is configured *before* any user SQL runs and then locked:

- ``enable_external_access = false``: no file or network access (``read_csv``,
  ``read_parquet``, ``COPY``, ``ATTACH``, ``INSTALL`` / ``LOAD``, httpfs URLs all fail);
- extension auto-install / auto-load and community extensions off;
- ``python_enable_replacements = false``: Python variables are not tables;
- memory and thread limits; spilling goes to ``spill/`` of the query process's private
  working directory, capped at ``SqlLimits.max_spill``; the secret, extension and home
  directories are relative to it too, so ``duckdb_settings()`` shows no host path but that
  private directory;
- then ``lock_configuration = true`` (no ``SET`` undoes it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import duckdb

from rsembed_db.errors import SpecError

SPILL_DIR = "spill"
DUCKDB_SHARE = 0.8  # of ``memory_limit`` given to DuckDB's buffer manager; the rest is headroom
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.I)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(field: str, text: str | int) -> int:
    """Bytes of ``"256MB"``, ``"1GiB"``, ``"1e6"``-free sizes or an int; SpecError naming ``field``."""
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return text
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match or float(match.group(1)) <= 0:
        raise SpecError(field, f"expected a size such as 256MB or 1GiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])


@dataclass(frozen=True)
class SqlLimits:
    """Per-query limits of the sandbox.

    ``max_rows``: rows returned (``truncated`` says when more existed). ``timeout_s``: the
    query is interrupted then, and its process killed ``KILL_GRACE_S`` later if it does
    not stop (a single huge value is computed without interruption points).
    ``memory_limit``: the most memory the query may use beyond its process's own
    footprint; the process is killed above it (and DuckDB's buffer manager gets 80%).
    ``max_result_bytes``: the largest result (Arrow bytes). ``max_spill``: the spill
    directory's cap. ``threads``: DuckDB threads.
    """

    max_rows: int = 10_000
    timeout_s: float = 30.0
    memory_limit: str = "1GB"
    threads: int = 2
    max_result_bytes: str = "64MB"
    max_spill: str = "1GB"

    def __post_init__(self) -> None:
        for name in ("max_rows", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(name, f"must be an integer >= 1, got {value!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) \
                or not 0 < self.timeout_s <= 86_400:
            raise SpecError("timeout_s", f"must be a number of seconds in (0, 86400], got {self.timeout_s!r}")
        for name in ("memory_limit", "max_result_bytes", "max_spill"):
            parse_size(name, getattr(self, name))

    @property
    def memory_bytes(self) -> int:
        return parse_size("memory_limit", self.memory_limit)

    @property
    def result_bytes(self) -> int:
        return parse_size("max_result_bytes", self.max_result_bytes)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def config(limits: SqlLimits) -> dict[str, str | bool | int | float | list[str]]:
    """The database's configuration (``connect`` then locks it)."""
    return {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "python_enable_replacements": False,
        "memory_limit": f"{int(limits.memory_bytes * DUCKDB_SHARE)}B",
        "threads": limits.threads,
        "temp_directory": SPILL_DIR,
        "max_temp_directory_size": f"{parse_size('max_spill', limits.max_spill)}B",
        "secret_directory": "secrets",
        "extension_directory": "extensions",
        "home_directory": ".",
    }


def connect(limits: SqlLimits) -> duckdb.DuckDBPyConnection:
    """A locked in-memory connection (no tables yet); paths are relative to the working directory."""
    con = duckdb.connect(":memory:", config=config(limits))
    con.execute("SET enable_progress_bar = false")  # a connection-local option: it would write to stdout
    con.execute("SET lock_configuration = true")
    return con


def check_read_only(sql: object) -> None:
    """SpecError (field ``sql``) unless ``sql`` is exactly one SELECT statement."""
    if not isinstance(sql, str) or not sql.strip():
        raise SpecError("sql", "empty query")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError("sql", f"not valid Unicode text: {exc.reason} at character {exc.start}") from None
    if "\x00" in sql:
        raise SpecError("sql", "the query contains a NUL character")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SpecError("sql", message(exc)) from None
    if len(statements) != 1:
        raise SpecError("sql", f"give exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise SpecError("sql", f"read-only: only SELECT queries are allowed, got {kind.name}")


def message(exc: BaseException) -> str:
    """DuckDB's message on one line, without the caret context that follows a blank line."""
    text = " ".join(str(exc).strip().split("\n\n")[0].split())
    if isinstance(exc, duckdb.PermissionException):
        return f"file, network and extension access is disabled in the SQL sandbox ({text})"
    return text
