"""Distributed ingest on Ray Data: the same plan, summary and guarantees as ``run_ingest``.

The driver plans as the local engine does (skip stored keys), then splits the plan into
work units:

- a tiled product (Tessera, Copernicus-Embed) into units of consecutive source tiles
  (``TiledProduct.plan_units``): each tile is read by one unit in the whole cluster; ROIs
  spanning units come back as per-tile partial poolings that the driver folds in the local
  engine's order, so every vector is bit-identical to a single-process run;
- another bulk product (GSE) into chunks of requests, computed with ``compute_many``;
- an on-the-fly model into chunks of requests, fetched and embedded in batches.

Ray Data maps the units over a pool of actors (``UnitWorker``); each actor builds the
producer once (so a model's weights load once per actor, on a GPU when the model is
configured with ``device=cuda``) and writes its rows as uncommitted Lance fragments into
the run's staging table (``store.staging``). Only the driver commits: every
``commit_every`` rows it appends the staged fragments to the staging table and upserts
them into the model table with the store's conflict-checked commit. A killed worker, a
retried task or a killed driver therefore leaves staged files only; a rerun skips every
committed key. Failures go to the failure log as in the local engine.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsembed_db.errors import RsembedError, SpecError
from rsembed_db.ingest.engine import (
    IngestOptions,
    IngestSummary,
    ProgressCallback,
    compute_batches,
    pending_requests,
)
from rsembed_db.producers.base import BulkProducer, Producer
from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.products.tiled import TiledPlan, TiledProduct, TilePartial
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.store.indexes import index_table
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.options import forwarded_env
from rsembed_db.store.records_arrow import records_to_arrow
from rsembed_db.store.staging import StagingTable, write_staged

Record = EmbeddingRecord | FailureRecord


@dataclass(frozen=True)
class ProducerSpec:
    """How a worker builds the run's producer (``make_producer``'s arguments); local paths
    are made absolute on the driver, so workers on the same machine or a shared file system
    find them."""

    model: str
    imagery: tuple[str, ...] = ()
    imagery_date: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def of(cls, model: str, imagery: Any = None, imagery_date: str | None = None,
           model_config: dict[str, Any] | None = None, source: str | None = None) -> ProducerSpec:
        paths = tuple(str(p) for p in (imagery or ()))
        return cls(model, paths, imagery_date, dict(model_config or {}), source)

    def build(self) -> Producer:
        return make_producer(self.model, list(self.imagery) or None, self.imagery_date, dict(self.model_config),
                             self.source)

    @property
    def num_gpus(self) -> float:
        """1 when the model is configured to run on a CUDA device, else 0."""
        return 1.0 if str(self.model_config.get("device", "")).startswith("cuda") else 0.0


@dataclass
class RayOptions:
    """``address``: None starts a local Ray; ``auto`` joins the cluster of this machine;
    ``ray://host:10001`` a remote one. ``actors``: workers (default: the cluster's CPUs).
    ``tiles_per_unit`` (tiled products) / ``requests_per_unit`` (others): the size of a work unit."""

    address: str | None = None
    actors: int | None = None
    tiles_per_unit: int = 4
    requests_per_unit: int = 64
    num_cpus: int | None = None  # of a local Ray started here (None: all)

    def __post_init__(self) -> None:
        for name in ("actors", "tiles_per_unit", "requests_per_unit", "num_cpus"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SpecError(name.replace("_", "-"), f"must be an integer >= 1, got {value!r}")


@dataclass
class UnitResult:
    """What a worker sends back for one unit: fragment JSON, failures, partials, timings."""

    fragments: list[str]
    rows: int
    failures: list[FailureRecord]
    partials: list[TilePartial]
    compute_s: float
    write_s: float
    fatal: RsembedError | None = None


class _Collect:
    def __init__(self) -> None:
        self.results: list[Record] = []

    def add(self, results: list[Record]) -> None:
        self.results += results


class UnitWorker:
    """A Ray actor: builds the producer once, computes units, stages their rows."""

    def __init__(self, spec: ProducerSpec, staging_uri: str, storage_options: dict[str, str],
                 options: IngestOptions, cwd: str) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths in the model config mean what they meant on the driver
        self.spec, self.staging_uri, self.storage_options, self.options = spec, staging_uri, storage_options, options
        self.producer = spec.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"result": np.array([pickle.dumps(self.run(pickle.loads(blob))) for blob in batch["unit"]],
                                   dtype=object)}

    def run(self, unit: tuple[str, Any]) -> UnitResult:
        kind, payload = unit
        started = time.perf_counter()
        partials: list[TilePartial] = []
        workers = self.options.workers or self.producer.default_workers
        try:
            if kind == "tiles":
                records, partials = cast(TiledProduct, self.producer).compute_unit(payload, workers)
            elif kind == "bulk":
                groups = cast(BulkProducer, self.producer).compute_many(payload, workers)
                records = [r for group in groups for r in group]
            else:
                sink = _Collect()
                compute_batches(self.producer, payload, self.options, sink)
                records = sink.results
        except RsembedError as exc:  # configuration, weights, credentials: stops the run on the driver
            return UnitResult([], 0, [], [], time.perf_counter() - started, 0.0, fatal=exc)
        computed = time.perf_counter()
        rows = [r for r in records if isinstance(r, EmbeddingRecord)]
        fragments = write_staged(self.staging_uri, records_to_arrow(rows, self.producer.dim), self.storage_options)
        return UnitResult(fragments, len(rows), [r for r in records if isinstance(r, FailureRecord)], partials,
                          computed - started, time.perf_counter() - computed)


def work_units(producer: Producer, todo: list[EmbeddingRequest], options: RayOptions
               ) -> tuple[list[tuple[str, Any]], TiledPlan | None]:
    """The plan as work units (kind, payload), and the tiled plan whose shared ROIs the driver finishes."""
    if isinstance(producer, TiledProduct):
        plan = producer.plan_units(todo, options.tiles_per_unit)
        return [("tiles", unit) for unit in plan.units], plan
    size = options.requests_per_unit
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    return [("bulk" if isinstance(producer, BulkProducer) else "requests", chunk) for chunk in chunks], None


def _ray_init(options: RayOptions) -> bool:
    """Connect to (or start) Ray; whether this call did (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**forwarded_env(), "PYTHONPATH": os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
    kwargs: dict[str, Any] = {"address": options.address, "include_dashboard": False, "log_to_driver": True,
                              "logging_level": "WARNING", "runtime_env": {"env_vars": env}}
    if options.address is None:  # a local Ray of this machine, reachable on loopback only
        kwargs["_node_ip_address"] = "127.0.0.1"
        if options.num_cpus is not None:
            kwargs["num_cpus"] = options.num_cpus
    ray.init(**kwargs)
    return True


class _Committer:
    """The driver's side of exactly-once: staged fragments -> one conflict-checked upsert per chunk."""

    def __init__(self, store: EmbeddingStore, producer: Producer, staging: StagingTable,
                 by_key: dict[str, EmbeddingRequest], timings: dict[str, float], vector_dtype: str) -> None:
        self.store, self.producer, self.staging, self.by_key, self.timings = store, producer, staging, by_key, timings
        self.vector_dtype = vector_dtype  # how a new table stores the vectors
        self.fragments: list[str] = []
        self.failures: list[FailureRecord] = []
        self.rows = 0

    def add(self, result: UnitResult) -> None:
        self.fragments += result.fragments
        self.failures += result.failures
        self.rows += result.rows + len(result.failures)

    def flush(self) -> None:
        started = time.perf_counter()
        fragments, failures = self.fragments, self.failures
        self.fragments, self.failures, self.rows = [], [], 0
        if fragments:
            data = self.staging.commit(fragments)
            self.write(data)
        self.store.record_failures(self.producer.table_name, failures)
        self.timings["commit_s"] = self.timings.get("commit_s", 0.0) + time.perf_counter() - started

    def write(self, data: pa.Table) -> None:
        """Upsert the rows whose keys are still missing (another writer may have stored some
        since the plan: its rows are left alone, as the local engine does)."""
        keys = data["key"].to_pylist()
        fresh = [r.key for r in pending_requests(self.store, self.producer, [self.by_key[k] for k in keys])]
        data = data.filter(pc.is_in(data["key"], value_set=pa.array(fresh, pa.string())))
        self.store.write_arrow(self.producer.table_name, data, self.producer.dim, self.vector_dtype)


def run_ingest_ray(store: EmbeddingStore, producer: Producer, spec: ProducerSpec, requests: list[EmbeddingRequest],
                   options: IngestOptions = IngestOptions(), ray_options: RayOptions = RayOptions(),
                   dry_run: bool = False, on_start: Callable[[int], None] | None = None,
                   on_progress: ProgressCallback | None = None) -> IngestSummary:
    """``run_ingest`` on Ray Data (see the module docstring); ``producer`` is ``spec.build()``
    on the driver. A configuration error stops the run after committing what was computed."""
    started = time.perf_counter()
    if options.vector_dtype is not None and store.has_table(producer.table_name):
        store.ensure_table(producer.table_name, producer.dim, options.vector_dtype)  # SpecError on a mismatch
    todo = pending_requests(store, producer, requests)
    summary = IngestSummary(producer.model, producer.table_name, planned=len({r.key for r in requests}), engine="ray")
    summary.already_stored = summary.planned - len(todo)
    if on_start:
        on_start(len(todo))
    if not dry_run and todo:
        _distribute(store, producer, spec, todo, options, ray_options, summary, on_progress)
    if not dry_run and store.has_table(producer.table_name):
        index_table(store, producer.table_name)
    summary.seconds = time.perf_counter() - started
    return summary


def _distribute(store: EmbeddingStore, producer: Producer, spec: ProducerSpec, todo: list[EmbeddingRequest],
                options: IngestOptions, ray_options: RayOptions, summary: IngestSummary,
                on_progress: ProgressCallback | None) -> None:
    import ray

    timings = summary.timings
    clock = time.perf_counter()
    units, plan = work_units(producer, todo, ray_options)
    timings["plan_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    started_ray = _ray_init(ray_options)
    timings["ray_init_s"] = time.perf_counter() - clock
    commit_every = options.commit_every if options.commit_every is not None else producer.default_commit_every
    staging = StagingTable(store, producer.table_name, producer.dim)
    committer = _Committer(store, producer, staging, {r.key: r for r in todo}, timings,
                           options.vector_dtype or producer.default_vector_dtype)
    partials: list[TilePartial] = []

    def count(computed: int, failures: list[FailureRecord]) -> None:
        summary.computed += computed
        summary.failed += len(failures)
        summary.failures += [(f.tile_id, f.error) for f in failures]
        if on_progress:
            on_progress(computed, len(failures))

    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        actors = min(ray_options.actors or max(int(ray.cluster_resources().get("CPU", 1)), 1), len(units)) or 1
        dataset = ray.data.from_items([{"unit": pickle.dumps(unit)} for unit in units]).map_batches(
            UnitWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
            num_gpus=spec.num_gpus,
            fn_constructor_kwargs={"spec": spec, "staging_uri": staging.uri, "storage_options": store.storage_options,
                                   "options": options, "cwd": os.getcwd()})
        clock = time.perf_counter()
        first = None
        fatal: RsembedError | None = None
        for row in dataset.iter_rows():
            result: UnitResult = pickle.loads(row["result"])
            first = first if first is not None else time.perf_counter() - clock
            timings["worker_compute_s"] = timings.get("worker_compute_s", 0.0) + result.compute_s
            timings["worker_stage_s"] = timings.get("worker_stage_s", 0.0) + result.write_s
            if result.fatal is not None:
                fatal = fatal or result.fatal
                continue
            partials += result.partials
            committer.add(result)
            count(result.rows, result.failures)
            if committer.rows >= commit_every:
                committer.flush()
        timings["first_result_s"] = first or 0.0
        timings["stream_s"] = time.perf_counter() - clock
        committer.flush()
        if fatal is not None:
            raise fatal
        if plan is not None and plan.shared:
            clock = time.perf_counter()
            records = plan.merge(partials)
            rows = [r for r in records if isinstance(r, EmbeddingRecord)]
            failures = [r for r in records if isinstance(r, FailureRecord)]
            committer.write(records_to_arrow(rows, producer.dim))
            store.record_failures(producer.table_name, failures)
            count(len(rows), failures)
            timings["merge_shared_s"] = time.perf_counter() - clock
    except BaseException:
        if committer.fragments or committer.failures:
            committer.flush()  # what was computed is committed, as in the local engine
        raise
    finally:
        staging.drop()
        if started_ray:
            ray.shutdown()
