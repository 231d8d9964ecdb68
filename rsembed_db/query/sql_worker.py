"""The process that runs one sandboxed SQL query: ``python -m rsembed_db.query.sql_worker``.

Started by ``query.sql`` in a private, empty working directory. It imports DuckDB, Arrow
and Lance, says ``ready <rss bytes>`` on stderr, then reads one job (a JSON line on stdin:
``sql``, ``limits``, ``tables`` name -> [dataset URI, version], ``storage_options``),
registers each table as its Lance dataset at that version (float16 vectors read as
float32, ``query.float16_view``), caps its own address space, runs the query (interrupted
at ``timeout_s``) and writes the rows as an Arrow IPC stream on stdout: at most
``max_rows + 1`` rows (one more tells the caller the result was truncated). A failure
ends it with one JSON line on stderr, ``{"kind": ..., "message": ...}``, and exit status 3.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading

EXIT_FAILED = 3
ADDRESS_SLACK = 128 << 20  # address space beyond the limit: thread stacks and arenas (a scan adds ~60 MiB)
BATCH_ROWS = 2048


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _fail(kind: str, message: str) -> None:
    sys.stderr.write(json.dumps({"kind": kind, "message": message}) + "\n")
    sys.stderr.flush()
    os._exit(EXIT_FAILED)  # no interpreter teardown: the caller waits on us


def _cap_address_space(limit_bytes: int) -> None:
    """A hard stop behind the caller's memory watchdog, for allocations faster than its polling."""
    try:
        soft = _address_space() + limit_bytes + ADDRESS_SLACK
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    except (OSError, ValueError):
        pass  # not Linux: the watchdog alone


def main() -> None:
    import duckdb
    import lance
    import pyarrow as pa

    from rsembed_db.errors import SpecError
    from rsembed_db.query.float16_view import sql_view
    from rsembed_db.query.sql_sandbox import SqlLimits, connect, message

    sys.stderr.write(f"ready {_rss()}\n")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        os._exit(0)  # a spare that was never used
    job = json.loads(line)
    limits = SqlLimits(**job["limits"])
    os.makedirs("spill", exist_ok=True)
    try:
        con = connect(limits)
        for name, (uri, version) in job["tables"].items():
            dataset = lance.dataset(uri, version=version, storage_options=job.get("storage_options") or None)
            con.register(name, sql_view(dataset))
    except (duckdb.Error, OSError, ValueError, SpecError) as exc:
        _fail("error", f"cannot open the tables: {exc}")
    _cap_address_space(limits.memory_bytes)
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(limits.timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    try:
        reader = con.sql(job["sql"]).to_arrow_reader(BATCH_ROWS)
        rows, size = 0, 0
        with pa.ipc.new_stream(sys.stdout.buffer, reader.schema) as out:
            for batch in reader:
                batch = batch.slice(0, limits.max_rows + 1 - rows)
                rows += batch.num_rows
                size += batch.get_total_buffer_size()
                if size > limits.result_bytes:
                    _fail("result_bytes", f"the result is larger than the limit of {limits.max_result_bytes}; "
                                          "select fewer rows or columns")
                out.write_batch(batch)
                if rows > limits.max_rows:
                    break
        sys.stdout.flush()
    except MemoryError:
        _fail("memory", "out of memory")
    except (duckdb.Error, pa.ArrowException, OSError, ValueError, OverflowError) as exc:
        if fired.is_set():
            _fail("timeout", "interrupted")
        text = message(exc)
        lowered = text.lower()
        if "max_temp_directory_size" in lowered or "temp directory" in lowered or "temporary directory" in lowered:
            _fail("spill", text)
        _fail("memory" if "out of memory" in lowered or "failed to allocate" in lowered else "error", text)
    os._exit(0)


if __name__ == "__main__":
    main()
