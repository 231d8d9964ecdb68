"""The query processes of ``query.sql``: start, watch and stop them.

Light on purpose (standard library and Arrow): ``rsembed-db sql`` starts its query
process before importing the store, so that the child's imports (DuckDB, Lance) overlap
the parent's (LanceDB) on another core instead of following them. The child is watched:
killed when its resident memory passes ``memory_limit`` beyond its own start-up footprint
(polled every few milliseconds; an address-space cap in the child stops faster
allocations) or when it runs ``KILL_GRACE_S`` past ``timeout_s`` (the child interrupts
itself at ``timeout_s``), and its result is read with a cap of ``max_result_bytes``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

import rsembed_db
from rsembed_db.errors import ResourceLimit, SpecError, SqlTimeout, Unavailable

if TYPE_CHECKING:  # sql_sandbox imports DuckDB: not needed to start or watch a process
    from rsembed_db.query.sql_sandbox import SqlLimits

KILL_GRACE_S = 0.5  # after the time limit, before the child is killed
POLL_S = 0.002  # memory and time checks
START_TIMEOUT_S = 120.0  # a child that is not ready by then is given up
STDERR_CAP = 1 << 16
_PACKAGE_ROOT = str(Path(rsembed_db.__file__).resolve().parents[1])  # the child imports this same code


class _Worker:
    """One query process in a private temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="rsembed-sql-")
        path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "HOME": self.dir, "MALLOC_ARENA_MAX": "2"}
        self.proc = subprocess.Popen([sys.executable, "-m", "rsembed_db.query.sql_worker"], cwd=self.dir, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr  # all three are pipes
        self.stdin, self.stdout, self.stderr_pipe = self.proc.stdin, self.proc.stdout, self.proc.stderr
        self.started = time.monotonic()
        self.ready = threading.Event()
        self.base_rss = 0
        self.stderr: deque[str] = deque(maxlen=20)
        self.out = bytearray()
        self.out_cap = 0
        self.overflow = threading.Event()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        for raw in self.stderr_pipe:
            line = raw.decode("utf-8", "replace").rstrip("\n")[:STDERR_CAP]
            if not self.ready.is_set() and line.startswith("ready "):
                self.base_rss = int(line.split()[1])
                self.ready.set()
            else:
                self.stderr.append(line)

    def _read_stdout(self) -> None:
        while chunk := self.stdout.read1(1 << 16):  # type: ignore[attr-defined]  # a BufferedReader
            if len(self.out) + len(chunk) > self.out_cap:
                self.overflow.set()
                return
            self.out += chunk

    def run(self, job: dict, limits: SqlLimits) -> tuple[pa.Table, int]:
        """The result table and the child's peak resident memory; raises what the child reports."""
        self.out_cap = limits.result_bytes + (1 << 20)  # + IPC framing
        reader = threading.Thread(target=self._read_stdout, daemon=True)
        reader.start()
        try:
            self.stdin.write(json.dumps(job).encode() + b"\n")
            self.stdin.close()
        except OSError:
            pass  # the child died: its status says why
        status, peak = self._watch(limits)
        reader.join(timeout=5)
        if self.overflow.is_set():
            raise _result_too_large(limits)
        if status != 0:
            raise self._failure(status, limits, peak)
        try:
            return pa.ipc.open_stream(bytes(self.out)).read_all(), peak
        except pa.ArrowInvalid as exc:
            raise Unavailable(f"sql: the query process returned an unreadable result ({exc})") from None

    def _watch(self, limits: SqlLimits) -> tuple[int, int]:
        """Wait for the child, killing it past the memory or time limit; (exit status, peak RSS)."""
        pid, deadline, cap, peak = self.proc.pid, None, 0, 0
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return self.proc.returncode, max(peak, usage.ru_maxrss * 1024)
            now = time.monotonic()
            if deadline is None and self.ready.is_set():
                deadline, cap = now + limits.timeout_s + KILL_GRACE_S, self.base_rss + limits.memory_bytes
            rss = _rss(pid)
            peak = max(peak, rss)
            if deadline is None and now - self.started > START_TIMEOUT_S:
                self._kill()
                raise Unavailable(f"sql: the query process did not start within {START_TIMEOUT_S:g} s")
            if deadline is not None and now > deadline:
                self._kill()
                raise SqlTimeout(f"sql: query interrupted after the time limit of {limits.timeout_s:g} s")
            if cap and rss > cap:
                self._kill()
                raise _out_of_memory(limits)
            if self.overflow.is_set():
                self._kill()
                raise _result_too_large(limits)
            time.sleep(POLL_S)

    def _failure(self, status: int, limits: SqlLimits, peak: int) -> Exception:
        report = None
        for line in reversed(self.stderr):
            try:
                report = json.loads(line)
                break
            except ValueError:
                continue
        kind, text = (report["kind"], report["message"]) if isinstance(report, dict) else (None, None)
        if kind == "timeout":
            return SqlTimeout(f"sql: query interrupted after the time limit of {limits.timeout_s:g} s")
        if kind == "memory" or (kind is None and peak > self.base_rss + limits.memory_bytes * 0.9):
            return _out_of_memory(limits)
        if kind == "result_bytes":
            return _result_too_large(limits)
        if kind == "spill":
            return ResourceLimit("sql", f"the query would spill more than {limits.max_spill} to disk (beyond its "
                                        f"memory limit of {limits.memory_limit}); aggregate or filter more")
        if kind == "error":
            return SpecError("sql", str(text))
        return Unavailable(f"sql: the query process ended with status {status}: " + " | ".join(self.stderr)[-500:])

    def _kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            os.wait4(self.proc.pid, 0)
        except ChildProcessError:
            pass
        self.proc.returncode = -9

    def close(self) -> None:
        if self.proc.returncode is None:
            self._kill()
        for stream in (self.stdin, self.stdout, self.stderr_pipe):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _out_of_memory(limits: SqlLimits) -> ResourceLimit:
    return ResourceLimit("sql", f"the query needed more memory than the limit of {limits.memory_limit}; "
                                "aggregate or filter more, or select fewer and smaller values")


def _result_too_large(limits: SqlLimits) -> ResourceLimit:
    return ResourceLimit("sql", f"the result is larger than the limit of {limits.max_result_bytes}; "
                                "select fewer rows or columns")


class SqlWorkers:
    """Query processes, each running one query; after the first query, ``spares`` are kept
    started ahead (their imports take a second)."""

    def __init__(self, spares: int = 0) -> None:
        self.spares = spares
        self._ready: deque[_Worker] = deque()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> SqlWorkers:
        """Start one query process now, for the next ``take``: its imports run while the
        caller goes on (``close`` stops it if it is never taken)."""
        with self._lock:
            self._ready.append(_Worker())
        return self

    def take(self) -> _Worker:
        with self._lock:
            while self._ready:
                worker = self._ready.popleft()
                if worker.proc.poll() is None:
                    break
                worker.close()
            else:
                worker = None
        if self.spares:
            threading.Thread(target=self._refill, daemon=True).start()
        return worker or _Worker()

    def _refill(self) -> None:
        with self._lock:
            while not self._closed and len(self._ready) < self.spares:
                self._ready.append(_Worker())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spares, self._ready = list(self._ready), deque()
        for worker in spares:
            worker.close()
