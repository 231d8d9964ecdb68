"""The ingest run: skip stored keys, fetch on a thread pool, embed in batches, commit in chunks."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from rsembed_db.errors import BadInput, SpecError, TileFailure, Unavailable
from rsembed_db.producers.base import BulkProducer, Prepared, Producer
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.store.indexes import index_table
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.schema import check_vector_dtype
from rsembed_db.tiling.plan import tile_id

ProgressCallback = Callable[[int, int], None]  # (computed_delta, failed_delta)


@dataclass
class IngestSummary:
    model: str
    table: str
    planned: int
    already_stored: int = 0
    computed: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    engine: str = "local"
    timings: dict[str, float] = field(default_factory=dict)  # where the time went (distributed runs), seconds

    @property
    def tiles_per_second(self) -> float:
        done = self.computed + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class IngestOptions:
    batch_size: int = 16
    workers: int | None = None  # None: the producer's default_workers (its source's fetch threads)
    commit_every: int | None = None  # None: the producer's default_commit_every
    vector_dtype: str | None = None  # float32 / float16 for a new table; None: the producer's default

    def __post_init__(self) -> None:
        if self.vector_dtype is not None:
            check_vector_dtype(self.vector_dtype, "vector-dtype")
        for name in ("batch_size", "workers", "commit_every"):
            value = getattr(self, name)
            if value is None and name in ("commit_every", "workers"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(name.replace("_", "-"), f"must be an integer >= 1, got {value!r}")


class ResultSink(Protocol):
    def add(self, results: list[EmbeddingRecord | FailureRecord]) -> None: ...


class _Writer:
    """Buffers results and commits them in chunks (each commit atomic).

    Commits run on one background thread, one at a time and in order, so computing the
    next chunk overlaps writing the last; ``close`` waits for the last commit, and a
    failed commit re-raises at the next flush or at close.
    """

    def __init__(self, store: EmbeddingStore, producer: Producer, summary: IngestSummary,
                 commit_every: int, on_progress: ProgressCallback | None, vector_dtype: str) -> None:
        self.store, self.producer, self.summary, self.vector_dtype = store, producer, summary, vector_dtype
        self.commit_every, self.on_progress = commit_every, on_progress
        self.records: list[EmbeddingRecord] = []
        self.failures: list[FailureRecord] = []
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._pending: Future | None = None

    def add(self, results: list[EmbeddingRecord | FailureRecord]) -> None:
        computed = [r for r in results if isinstance(r, EmbeddingRecord)]
        failed = [r for r in results if isinstance(r, FailureRecord)]
        self.records += computed
        self.failures += failed
        self.summary.computed += len(computed)
        self.summary.failed += len(failed)
        self.summary.failures += [(f.tile_id, f.error) for f in failed]
        if self.on_progress:
            self.on_progress(len(computed), len(failed))
        if len(self.records) + len(self.failures) >= self.commit_every:
            self.flush()

    def flush(self) -> None:
        self._wait()
        records, failures = self.records, self.failures
        self.records, self.failures = [], []
        if records or failures:
            self._pending = self._committer.submit(self._commit, records, failures)

    def close(self) -> None:
        try:
            self.flush()
            self._wait()
        finally:
            self._committer.shutdown()

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _commit(self, records: list[EmbeddingRecord], failures: list[FailureRecord]) -> None:
        p = self.producer
        # Another writer (a concurrent ingest over an overlapping region) may have stored
        # some of these keys since the plan: leave its rows alone instead of rewriting them.
        fresh = {r.key for r in pending_requests(self.store, p, [r.request for r in records])}
        self.store.write(p.table_name, [r for r in records if r.request.key in fresh], p.dim,
                         create_dtype=self.vector_dtype)
        self.store.record_failures(p.table_name, failures)


def pending_requests(store: EmbeddingStore, producer: Producer,
                     requests: list[EmbeddingRequest]) -> list[EmbeddingRequest]:
    """Requests whose key is not stored yet (with a grid, for grid requests)."""
    unique = list({r.key: r for r in requests}.values())
    need_grid = [r.key for r in unique if r.output.mode == "grid"]
    pooled = [r.key for r in unique if r.output.mode != "grid"]
    stored = store.existing_keys(producer.table_name, pooled)
    stored |= store.existing_keys(producer.table_name, need_grid, need_grid=True)
    return [r for r in unique if r.key not in stored]


def run_ingest(store: EmbeddingStore, producer: Producer, requests: list[EmbeddingRequest],
               options: IngestOptions = IngestOptions(), dry_run: bool = False,
               on_start: Callable[[int], None] | None = None,
               on_progress: ProgressCallback | None = None) -> IngestSummary:
    """Compute and store every request not already stored; failures are logged per tile.

    A configuration error (SpecError) stops the run; everything computed before it is
    committed first, so nothing is lost.
    """
    started = time.perf_counter()
    if options.vector_dtype is not None and store.has_table(producer.table_name):
        store.ensure_table(producer.table_name, producer.dim, options.vector_dtype)  # SpecError on a mismatch
    todo = pending_requests(store, producer, requests)
    summary = IngestSummary(producer.model, producer.table_name, planned=len({r.key for r in requests}))
    summary.already_stored = summary.planned - len(todo)
    if on_start:
        on_start(len(todo))
    if not dry_run and todo:
        commit_every = options.commit_every if options.commit_every is not None else producer.default_commit_every
        writer = _Writer(store, producer, summary, commit_every, on_progress,
                         options.vector_dtype or producer.default_vector_dtype)
        try:
            if isinstance(producer, BulkProducer):
                for group in producer.compute_many(todo, workers=options.workers or producer.default_workers):
                    writer.add(group)
            else:
                compute_batches(producer, todo, options, writer)
        finally:
            writer.close()
    if not dry_run and store.has_table(producer.table_name):
        # Also after an interrupted earlier run: builds what is missing, folds new rows in.
        index_table(store, producer.table_name)
    summary.seconds = time.perf_counter() - started
    return summary


def prepare_or_failure(producer: Producer, request: EmbeddingRequest, retries: int = 0, backoff_s: float = 0.0,
                       raise_bad_input: bool = False) -> Prepared | FailureRecord:
    """The prepared item, or a FailureRecord saying why not.

    An unreachable source (``Unavailable``) is tried ``retries`` more times, waiting
    ``backoff_s`` seconds, doubled each time; configuration errors raise, and so does a
    failed input check (``BadInput``) when ``raise_bad_input``.
    """
    try:
        for attempt in range(retries + 1):
            try:
                return producer.prepare(request)
            except Unavailable:
                if attempt == retries:
                    raise
                time.sleep(backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")
    except SpecError:
        raise
    except BadInput as exc:
        if raise_bad_input:
            raise
        return FailureRecord(request, tile_id(request.spatial), str(exc))
    except TileFailure as exc:
        return FailureRecord(request, tile_id(request.spatial), str(exc))
    except Exception as exc:  # noqa: BLE001 - any per-tile I/O error is recorded, not fatal
        return FailureRecord(request, tile_id(request.spatial), f"{type(exc).__name__}: {exc}")


def compute_batches(producer: Producer, todo: list[EmbeddingRequest], options: IngestOptions,
                    writer: ResultSink) -> None:
    """Fetch ``todo`` on ``options.workers`` threads (None: the producer's default), embed in batches of ``options.batch_size``
    and hand every result to ``writer.add`` (records and per-tile failures)."""
    queue = iter(todo)
    in_flight: set[Future] = set()
    batch: list[Prepared] = []
    workers = options.workers or producer.default_workers
    window = workers * 2 + options.batch_size
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        try:
            while True:
                while len(in_flight) < window and (request := next(queue, None)) is not None:
                    in_flight.add(pool.submit(prepare_or_failure, producer, request))
                if not in_flight:
                    break
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    if isinstance(result, FailureRecord):
                        writer.add([result])
                    else:
                        batch.append(result)
                while len(batch) >= options.batch_size:
                    writer.add(producer.finish(batch[:options.batch_size]))
                    batch = batch[options.batch_size:]
            if batch:
                writer.add(producer.finish(batch))
        finally:
            for future in in_flight:
                future.cancel()
