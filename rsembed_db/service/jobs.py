"""Ingest jobs run in the background: a thread pool, job state and progress in memory.

A job is ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``. Its
counters follow ``run_ingest``'s callbacks. Jobs live in memory only: after a restart,
POST the same region again and the ingest resumes (stored keys are skipped).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.base import Producer
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.store.lance_store import EmbeddingStore

MAX_ERRORS_SHOWN = 100
MAX_JOBS_KEPT = 1000


class JobCancelled(Exception):
    """Raised inside a run to stop it (what was computed so far is committed)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class IngestJob:
    id: str
    model: str
    table: str
    tiles: str
    planned: int
    state: str = "queued"
    already_stored: int = 0
    to_compute: int | None = None
    computed: int = 0
    failed: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, str] | None = None
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        done = self.computed + self.failed
        return {
            "id": self.id, "state": self.state, "model": self.model, "table": self.table,
            "tiles": self.tiles, "planned": self.planned, "already_stored": self.already_stored,
            "to_compute": self.to_compute, "done": done, "computed": self.computed,
            "failed": self.failed,
            "progress": done / self.to_compute if self.to_compute else (1.0 if self.finished else 0.0),
            "errors": list(self.errors), "error": self.error, "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at,
        }


class IngestJobs:
    """Runs ingest jobs on ``workers`` threads; thread-safe."""

    def __init__(self, store: EmbeddingStore, workers: int = 1, options: IngestOptions | None = None) -> None:
        self.store, self.options = store, options or IngestOptions()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-job")
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()

    def submit(self, producer: Producer, requests: list[EmbeddingRequest], tiles: str,
               vector_dtype: str | None = None) -> dict[str, Any]:
        """Queue a job; ``vector_dtype``: how a new table stores vectors (None: the producer's default)."""
        options = replace(self.options, vector_dtype=vector_dtype) if vector_dtype is not None else self.options
        job = IngestJob(uuid.uuid4().hex, producer.model, producer.table_name, tiles,
                        planned=len({r.key for r in requests}))
        with self._lock:
            self._forget_old()
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, producer, requests, options)
        return self.get(job.id)

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's state; KeyError for an unknown id."""
        with self._lock:
            return self._jobs[job_id].to_dict()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [job.to_dict() for job in self._jobs.values()]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop after its current batch; KeyError for an unknown id."""
        with self._lock:
            job = self._jobs[job_id]
            job.cancel.set()
            if job.state == "queued":
                job.state, job.finished_at = "cancelled", _now()
            return job.to_dict()

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: IngestJob, producer: Producer, requests: list[EmbeddingRequest],
             options: IngestOptions) -> None:
        with self._lock:
            if job.cancel.is_set():
                return
            job.state, job.started_at = "running", _now()

        def started(todo: int) -> None:
            with self._lock:
                job.to_compute, job.already_stored = todo, job.planned - todo

        def progressed(computed: int, failed: int) -> None:
            with self._lock:
                job.computed += computed
                job.failed += failed
            if job.cancel.is_set():
                raise JobCancelled()

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
        with self._lock:
            job.state, job.error, job.finished_at = state, error, _now()
            job.errors = [{"tile": tile, "error": message} for tile, message in errors[:MAX_ERRORS_SHOWN]]

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished]
        for job_id in finished[:max(0, len(self._jobs) - MAX_JOBS_KEPT + 1)]:
            del self._jobs[job_id]
