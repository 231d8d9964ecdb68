"""Ingest jobs run in the background; their state lives in the store (``store.jobs``).

A job is ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``. The
replica that accepted it runs it on its thread pool and is the only writer of its row:
at each state change, every ``progress_every_s`` seconds of progress and every
``heartbeat_s`` seconds while it runs. Every replica reads the row, so any of them
answers ``GET /v1/ingest/{id}``. ``DELETE`` on any replica records a cancellation in
the store; the owner sees it within ``progress_every_s`` (after its current batch) and
stops (what was computed is committed). A queued or running job whose owner has not
written for ``lost_after_s`` seconds (the replica stopped) reads as ``failed``: POST
the same region again, stored keys are skipped.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.base import Producer
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.store.jobs import JobTable
from rsembed_db.store.lance_store import EmbeddingStore

MAX_ERRORS_SHOWN = 100
FINISHED = ("succeeded", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside a run to stop it (what was computed so far is committed)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def replica_id() -> str:
    """This process's name among the replicas: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class IngestJob:
    """The owner's copy of a job while it runs (the store has the shared one)."""

    id: str
    model: str
    table: str
    tiles: str
    planned: int
    owner: str
    state: str = "queued"
    already_stored: int = 0
    to_compute: int | None = None
    computed: int = 0
    failed: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, str | None] | None = None
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "model": self.model, "table_name": self.table,
                "tiles": self.tiles, "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "owner": self.owner, "planned": self.planned,
                "already_stored": self.already_stored, "to_compute": self.to_compute, "computed": self.computed,
                "failed": self.failed, "errors": self.errors, "error": self.error}


def public(row: dict[str, Any], lost_after_s: float) -> dict[str, Any]:
    """A stored job row as the API shows it; a queued or running job whose owner went silent
    for ``lost_after_s`` seconds reads as failed."""
    state, error = row["state"], row["error"]
    silent = (dt.datetime.now(dt.UTC) - row["updated_at"]).total_seconds()
    if state not in FINISHED and silent > lost_after_s:
        state = "failed"
        error = {"field": None, "message": f"the replica running this job ({row['owner']}) has not reported for "
                                           f"{silent:.0f} s and is presumed stopped; POST the region again to "
                                           "resume (stored tiles are skipped)"}
    done = (row["computed"] or 0) + (row["failed"] or 0)
    to_compute = row["to_compute"]
    return {
        "id": row["id"], "state": state, "model": row["model"], "table": row["table_name"], "tiles": row["tiles"],
        "planned": row["planned"], "already_stored": row["already_stored"], "to_compute": to_compute,
        "done": done, "computed": row["computed"], "failed": row["failed"],
        "progress": done / to_compute if to_compute else (1.0 if state in FINISHED else 0.0),
        "errors": row["errors"], "error": error, "created_at": row["created_at"], "started_at": row["started_at"],
        "finished_at": row["finished_at"], "replica": row["owner"], "cancel_requested": row["cancel_requested"],
        "updated_at": row["updated_at"].isoformat(),
    }


class IngestJobs:
    """Runs this replica's ingest jobs on ``workers`` threads and reads every replica's jobs
    from the store; thread-safe."""

    def __init__(self, store: EmbeddingStore, workers: int = 1, options: IngestOptions | None = None,
                 progress_every_s: float = 2.0, heartbeat_s: float = 30.0, lost_after_s: float = 600.0) -> None:
        self.store, self.options = store, options or IngestOptions()
        self.table = JobTable(store)
        self.replica = replica_id()
        self.progress_every_s, self.heartbeat_s, self.lost_after_s = progress_every_s, heartbeat_s, lost_after_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-job")
        self._local: dict[str, IngestJob] = {}  # jobs of this replica not finished yet
        self._lock = threading.Lock()

    def submit(self, producer: Producer, requests: list[EmbeddingRequest], tiles: str,
               vector_dtype: str | None = None) -> dict[str, Any]:
        """Queue a job; ``vector_dtype``: how a new table stores vectors (None: the producer's default)."""
        options = replace(self.options, vector_dtype=vector_dtype) if vector_dtype is not None else self.options
        job = IngestJob(uuid.uuid4().hex, producer.model, producer.table_name, tiles,
                        planned=len({r.key for r in requests}), owner=self.replica)
        self.table.put(job.row())
        with self._lock:
            self._local[job.id] = job
        self._pool.submit(self._run, job, producer, requests, options)
        return self.get(job.id)

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's state, whichever replica runs it; KeyError for an unknown id."""
        row = self.table.get(job_id)
        if row is None:
            raise KeyError(job_id)
        return public(row, self.lost_after_s)

    def cancel(self, job_id: str, who: str | None = None) -> dict[str, Any]:
        """Ask a job to stop after its current batch; KeyError for an unknown id."""
        state = self.get(job_id)
        if state["state"] in FINISHED:
            return state
        self.table.request_cancel(job_id, who)
        with self._lock:
            job = self._local.get(job_id)
        if job is not None:
            job.cancel.set()
        return self.get(job_id)

    def shutdown(self) -> None:
        with self._lock:
            for job in self._local.values():
                job.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _cancelled(self, job: IngestJob) -> bool:
        if not job.cancel.is_set() and self.table.cancel_requested(job.id):
            job.cancel.set()
        return job.cancel.is_set()

    def _run(self, job: IngestJob, producer: Producer, requests: list[EmbeddingRequest],
             options: IngestOptions) -> None:
        try:
            if self._cancelled(job):
                job.state, job.finished_at = "cancelled", _now()
                self.table.put(job.row())
                return
            job.state, job.started_at = "running", _now()
            self.table.put(job.row())
            self._execute(job, producer, requests, options)
        finally:
            with self._lock:
                self._local.pop(job.id, None)

    def _execute(self, job: IngestJob, producer: Producer, requests: list[EmbeddingRequest],
                 options: IngestOptions) -> None:
        written = [time.monotonic()]
        checked = [time.monotonic()]  # when the store was last asked for a cancellation
        lock = threading.Lock()  # the heartbeat and the run both write the row

        def save(force: bool = False) -> None:
            with lock:
                if force or time.monotonic() - written[0] >= self.progress_every_s:
                    self.table.put(job.row())
                    written[0] = time.monotonic()

        def started(todo: int) -> None:
            job.to_compute, job.already_stored = todo, job.planned - todo
            save(force=True)

        def progressed(computed: int, failed: int) -> None:
            job.computed += computed
            job.failed += failed
            save()
            if not job.cancel.is_set() and time.monotonic() - checked[0] >= self.progress_every_s:
                checked[0] = time.monotonic()
                self._cancelled(job)
            if job.cancel.is_set():
                raise JobCancelled()

        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(self.heartbeat_s):
                save(force=True)
                self._cancelled(job)

        beat = threading.Thread(target=heartbeat, name=f"job-heartbeat-{job.id[:8]}", daemon=True)
        beat.start()
        try:
            summary = run_ingest(self.store, producer, requests, options,
                                 on_start=started, on_progress=progressed)
            state, errors, error = "succeeded", summary.failures, None
        except JobCancelled:
            state, errors, error = "cancelled", [], None
        except SpecError as exc:
            state, errors, error = "failed", [], {"field": exc.field, "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - reported in the job, the service keeps running
            state, errors, error = "failed", [], {"field": None, "message": f"{type(exc).__name__}: {exc}"}
        finally:
            stop.set()
            beat.join()
        job.state, job.error, job.finished_at = state, error, _now()
        job.errors = [{"tile": tile, "error": message} for tile, message in errors[:MAX_ERRORS_SHOWN]]
        save(force=True)

    def list(self) -> list[dict[str, Any]]:
        """Every replica's jobs, newest first (the last 1000)."""
        return [public(row, self.lost_after_s) for row in self.table.list()]
