"""Read-only sandboxed SQL: tables by name, every forbidden statement refused, limits."""

from __future__ import annotations

import json
import time

import duckdb
import pytest

from rsembed_db.errors import SqlTimeout
from rsembed_db.query.sql import SqlLimits, run_sql
from rsembed_db.query.sql_sandbox import connect
from rsembed_db.specs import SpecError
from tests.conftest import run_cli
from tests.store_rows import toy_records, toy_store


@pytest.fixture
def store(tmp_path):
    store = toy_store(tmp_path / "db")
    extra = toy_records("other", dim=8, rings=1)
    store.write("other", extra, 8)
    return store


def test_every_table_is_a_view_by_name(store):
    result = run_sql(store, "SELECT t.year, count(*) AS n, max(o.h3_res) AS res FROM toy t "
                            "JOIN other o USING (key) GROUP BY ALL")
    assert result.table.num_rows == 0  # different keys: an empty join, but both names resolve
    rows = run_sql(store, "SELECT count(*) AS n, min(vector[1]) AS v FROM toy WHERE year = 2021").table.to_pylist()
    assert rows == [{"n": 19, "v": 0.0}]
    assert run_sql(store, "SELECT vector FROM other LIMIT 1").table.schema.field("vector").type.list_size == 8


FORBIDDEN = {
    "SELECT * FROM read_csv('/etc/passwd')": "disabled in the SQL sandbox",
    "SELECT * FROM read_text('/etc/hostname')": "disabled in the SQL sandbox",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')": "disabled in the SQL sandbox",
    "SELECT * FROM 'http://example.com/data.csv'": "disabled in the SQL sandbox",
    "SELECT * FROM '/etc/passwd'": "does not exist",
    "SELECT * FROM glob('/*')": "disabled in the SQL sandbox",
    "COPY toy TO '/tmp/rsembed_leak.csv'": "only SELECT queries are allowed, got COPY",
    "COPY (SELECT 1) TO '/tmp/rsembed_leak.parquet' (FORMAT parquet)": "got COPY",
    "EXPORT DATABASE '/tmp/rsembed_export'": "got EXPORT",
    "ATTACH '/tmp/rsembed.duckdb' AS x": "got ATTACH",
    "INSTALL httpfs": "only SELECT",
    "LOAD httpfs": "only SELECT",
    "SET enable_external_access = true": "got SET",
    "CREATE TABLE t AS SELECT 1": "got CREATE",
    "INSERT INTO toy (key) VALUES ('x')": "got INSERT",
    "DROP VIEW toy": "got DROP",
    "PRAGMA version": "got PRAGMA",
    "SELECT 1; SELECT 2": "exactly one statement",
    "": "empty query",
}


@pytest.mark.parametrize("sql", FORBIDDEN)
def test_forbidden_statements_are_refused(store, sql):
    with pytest.raises(SpecError) as info:
        run_sql(store, sql)
    assert info.value.field == "sql" and FORBIDDEN[sql] in str(info.value)


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO '/tmp/rsembed_leak.csv'", "ATTACH '/tmp/rsembed.duckdb'", "INSTALL httpfs",
    "LOAD httpfs", "SELECT * FROM read_csv('/etc/passwd')", "SET enable_external_access = true",
    "SET lock_configuration = false"])
def test_the_engine_itself_refuses_without_the_statement_check(store, sql, tmp_path, monkeypatch):
    """Defence in depth: the locked DuckDB configuration refuses even what the filter would pass."""
    monkeypatch.chdir(tmp_path)  # the spill directory is relative to the query process's directory
    con = connect(SqlLimits())
    with pytest.raises((duckdb.PermissionException, duckdb.InvalidInputException)):
        con.execute(sql)


def test_row_limit_truncates(store):
    result = run_sql(store, "SELECT * FROM toy", SqlLimits(max_rows=5))
    assert result.table.num_rows == 5 and result.truncated
    assert not run_sql(store, "SELECT * FROM toy", SqlLimits(max_rows=19)).truncated


@pytest.mark.parametrize("sql", ["SELECT count(*) FROM range(1000000000000) a",  # before the first row
                                 "SELECT * FROM range(1000000000000) a WHERE a.range % 1000 = 0"])  # while rows stream
def test_slow_query_is_interrupted(store, sql):
    started = time.perf_counter()
    with pytest.raises(SqlTimeout, match="time limit of 0.5 s"):
        run_sql(store, sql, SqlLimits(timeout_s=0.5, max_rows=10**13))
    assert time.perf_counter() - started < 10


def test_cli_sql_json_and_refusal(tmp_path, monkeypatch):
    """The CLI starts its query process before its own imports; whether the query runs or
    is refused before reaching it, the process and its private directory are gone after."""
    db = tmp_path / "db"
    toy_store(db)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    out = run_cli("sql", "SELECT count(*) AS n FROM toy", "--format", "json", db=db)
    assert json.loads(out.stdout)["rows"] == [{"n": 19}]
    refused = run_cli("sql", "SELECT * FROM read_csv('/etc/passwd')", db=db, check=False)
    assert refused.returncode == 2 and "error: sql:" in refused.stderr and "sandbox" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not list(scratch.glob("rsembed-sql-*"))


def test_cli_sql_table_output_abbreviates_wide_cells(tmp_path):
    """``sql "SELECT *"`` in a terminal: vectors as their size, WKB as its length, long text cut."""
    db = tmp_path / "db"
    store = toy_store(db)
    row = store.table("toy").search().limit(1).to_list()[0]
    dim, wkb_bytes, key = len(row["vector"]), len(row["geometry"]), row["key"]
    out = run_cli("sql", f"SELECT key, vector, geometry FROM toy WHERE key = '{key}'", db=db)
    assert f"[{dim} values]" in out.stdout
    assert f"<WKB {wkb_bytes} B>" in out.stdout
    assert len(key) == 64 and key not in out.stdout and key[:57] + "..." in out.stdout  # cut to 60 characters
    assert "1 rows" in out.stdout
