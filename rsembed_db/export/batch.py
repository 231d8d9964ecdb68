"""``export_batch``: embeddings (and optionally model inputs) of many ROIs x models.

The run, chunk by chunk (``ExportConfig.chunk_size`` ROIs), model by model:

1. requests are resolved per model (``ExportModelRequest`` values take precedence over
   the shared ``sensor`` / ``fetch`` / ``modality``);
2. with a ``store``, keys already stored are read back (read-through) and new
   embeddings are written to it, so an export also fills the database;
3. imagery comes from one shared, counted source: models needing the same chip grid,
   window and sensor fetch it once (``sources.counting``); ``num_workers`` threads fetch;
4. each output (one file for ``ExportTarget.combined``, one per ROI for ``per_item``)
   is written atomically, then its manifest (``export.manifest``); ``resume`` skips
   outputs whose manifest is complete for the same request fingerprint.

Failures of single ROIs are recorded in the manifest (status ``partial``/``failed``);
configuration errors (SpecError) stop the run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rsembed_db.errors import SpecError
from rsembed_db.export.manifest import (
    LAYOUT_VERSION,
    atomic_write,
    fingerprint,
    manifest_path,
    now,
    reusable,
    versions,
    write_manifest,
)
from rsembed_db.export.progress import progress_bar
from rsembed_db.export.writers import EXTENSIONS, ItemResult, ModelResult, writer_for
from rsembed_db.ingest.engine import prepare_or_failure
from rsembed_db.producers.base import Prepared, Producer
from rsembed_db.producers.catalog import imagery_source, is_product, make_producer, resolve_runtime
from rsembed_db.producers.onthefly import OnTheFlyProducer
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.query.compute import stored_embeddings
from rsembed_db.sources.base import ImagerySource
from rsembed_db.sources.counting import CountingSource
from rsembed_db.sources.factory import make_source
from rsembed_db.specs.export import ExportConfig, ExportModelRequest, ExportTarget, ModelConfig
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import SpatialSpec
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store.lance_store import EmbeddingStore

T = TypeVar("T")


DEFAULT_CONFIG = ExportConfig()
POOLED = OutputSpec.pooled()


def retrying(action: Callable[[], T], retries: int, backoff_s: float, *errors: type[BaseException]) -> T:
    """``action()``, tried again up to ``retries`` times on ``errors`` (waits ``backoff_s``, doubling)."""
    for attempt in range(retries + 1):
        try:
            return action()
        except errors:
            if attempt == retries:
                raise
            time.sleep(backoff_s * 2 ** attempt)
    raise AssertionError("unreachable")


@dataclass
class _Job:
    """One model of the run: its label in outputs, producer and one request per ROI."""

    label: str
    spec: ExportModelRequest
    producer: Producer
    requests: list[EmbeddingRequest]

    def describe(self) -> dict[str, Any]:
        first = self.requests[0]
        return {"label": self.label, "name": self.spec.name, "model_config": first.model_config,
                "table": self.producer.table_name, "dim": self.producer.dim,
                "kind": self.producer.description.kind, "modality": self.spec.modality,
                "sensor": first.sensor.to_dict() if first.sensor else None,
                "temporal": first.temporal.to_dict(), "input_prep": first.input_prep.to_dict()}


@dataclass
class _Output:
    path: Path  # the file, or for the store format the manifest's stem
    items: list[int]
    fingerprint: str
    manifest: Path
    timings: dict[str, float] = field(default_factory=lambda: {"fetch_s": 0.0, "embed_s": 0.0,
                                                               "store_write_s": 0.0})


def _labels(models: Sequence[ExportModelRequest]) -> list[str]:
    """Model names, numbered ``_2``, ``_3``... where a name repeats."""
    seen: dict[str, int] = {}
    out = []
    for model in models:
        seen[model.name] = seen.get(model.name, 0) + 1
        out.append(model.name if seen[model.name] == 1 else f"{model.name}_{seen[model.name]}")
    return out


def _item_names(target: ExportTarget, count: int) -> list[str]:
    if target.names is None:
        return [f"item_{i:05d}" for i in range(count)]
    if len(target.names) != count:
        raise SpecError("target.names", f"needs one name per spatial ({count}), got {len(target.names)}")
    return list(target.names)


def _outputs(target: ExportTarget, names: list[str], jobs: list[_Job], config: ExportConfig,
             grid: bool) -> list[_Output]:
    ext = EXTENSIONS.get(config.format, "")
    if target.mode == "combined":
        groups = [(target.path if target.path.suffix or not ext else target.path.with_suffix(ext),
                   list(range(len(names))))]
    else:
        groups = [(target.path / f"{name}{ext}", [i]) for i, name in enumerate(names)]
    out = []
    for path, items in groups:
        keys = [{job.label: job.requests[i].key for job in jobs} for i in items]
        fp = fingerprint(keys, config.format, config.save_inputs, config.save_embeddings, grid)
        manifest = manifest_path(path) if ext else path.with_name(f"{path.name}.manifest.json")
        out.append(_Output(path, items, fp, manifest))
    return out


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Runner:
    """Computes the results of chunks of ROIs for every job."""

    def __init__(self, jobs: list[_Job], store: EmbeddingStore | None, config: ExportConfig) -> None:
        self.jobs, self.store, self.config = jobs, store, config
        # Jobs reading the same imagery run one after the other, so their fetches hit the cache.
        self.order = sorted(jobs, key=lambda job: str(job.requests[0].sensor))

    def run(self, chunk: list[int], pool: ThreadPoolExecutor, timings: dict[str, float]
            ) -> dict[tuple[int, str], ModelResult]:
        results: dict[tuple[int, str], ModelResult] = {}
        for job in self.order:
            results.update(self._job(job, chunk, pool, timings))
        return results

    def _job(self, job: _Job, chunk: list[int], pool: ThreadPoolExecutor, timings: dict[str, float]
             ) -> dict[tuple[int, str], ModelResult]:
        producer = job.producer
        requests = {i: job.requests[i] for i in chunk}
        out = {(i, job.label): ModelResult(r.key) for i, r in requests.items()}
        stored = stored_embeddings(self.store, producer.table_name, requests.values())
        for i, request in requests.items():
            if request.key in stored:
                out[i, job.label].embedding = stored[request.key].data
                out[i, job.label].from_store = True
        inputs = self.config.save_inputs and isinstance(producer, OnTheFlyProducer)
        fetch = [i for i, r in requests.items() if inputs or r.key not in stored]
        started = time.perf_counter()
        config = self.config
        prepared = dict(zip(fetch, pool.map(
            lambda i: prepare_or_failure(producer, requests[i], config.max_retries, config.retry_backoff_s,
                                         config.fail_on_bad_input), fetch)))
        timings["fetch_s"] += time.perf_counter() - started
        todo: list[tuple[int, Prepared]] = []
        for i, item in prepared.items():
            if isinstance(item, FailureRecord):
                out[i, job.label].error = item.error
                continue
            if inputs:
                out[i, job.label].chip = item.payload
            if requests[i].key not in stored:
                todo.append((i, item))
        if todo:
            started = time.perf_counter()
            size = self.config.batch_size
            records = [record for start in range(0, len(todo), size)
                       for record in producer.finish([item for _, item in todo[start:start + size]])]
            timings["embed_s"] += time.perf_counter() - started
            computed = [r for r in records if isinstance(r, EmbeddingRecord)]
            for (i, _), record in zip(todo, records):
                if isinstance(record, EmbeddingRecord):
                    grid = record.request.output.mode == "grid"
                    out[i, job.label].embedding = record.grid if grid else record.vector
                else:
                    out[i, job.label].error = record.error
            if self.store is not None and computed:
                started = time.perf_counter()
                self.store.write(producer.table_name, computed, producer.dim)
                timings["store_write_s"] += time.perf_counter() - started
        return out


def _status(items: list[ItemResult]) -> tuple[str, dict[str, int]]:
    results = [r for item in items for r in item.models.values()]
    ok = sum(r.embedding is not None for r in results)
    summary = {"total": len(results), "ok": ok, "failed": len(results) - ok}
    return ("ok" if ok == len(results) else "failed" if ok == 0 else "partial"), summary


def _model_inputs(spec: ExportModelRequest, sensor: SensorSpec | None, fetch: FetchSpec | None,
                  modality: str | None) -> tuple[SensorSpec | None, FetchSpec | None, str | None]:
    """A model's sensor, fetch and modality: its own values first, then the run's."""
    own_sensor = spec.sensor if spec.sensor is not None else (None if spec.fetch is not None else sensor)
    own_fetch = spec.fetch if spec.fetch is not None else (None if spec.sensor is not None else fetch)
    if own_sensor is not None and own_fetch is not None:
        raise SpecError("fetch", f"{spec.name}: cannot be combined with sensor; put the overrides in sensor")
    return own_sensor, own_fetch, spec.modality or modality


def export_batch(*, spatials: Sequence[SpatialSpec], temporal: TemporalSpec | None = None,
                 models: Sequence[str | ExportModelRequest | ModelConfig], target: ExportTarget,
                 config: ExportConfig = DEFAULT_CONFIG, backend: str = "auto", device: str = "auto",
                 output: OutputSpec = POOLED, sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                 modality: str | None = None, input_prep: InputPrepSpec | str | None = None,
                 store: EmbeddingStore | str | Path | None = None,
                 source: str | ImagerySource | None = None, imagery: Any = None,
                 imagery_date: str | None = None) -> list[dict[str, Any]] | dict[str, Any]:
    """Export embeddings of ``spatials`` x ``models``; the manifest(s), as written.

    ``target``: ``ExportTarget.combined(out_file)`` (one output, returns its manifest) or
    ``ExportTarget.per_item(out_dir, names=[...])`` (one per ROI, returns the list);
    ``config.format``: ``npz``, ``netcdf``, ``parquet`` or ``store`` (embeddings go to
    ``store`` only; manifests still land at the target path). ``models`` are names or
    ``ExportModelRequest``s whose own sensor / fetch / modality / model_config win over
    the shared ones. Imagery: ``source`` (see ``sources.factory``), ``backend="gee"``, or
    local ``imagery`` (default ``$RSEMBED_IMAGERY``).
    """
    spatials = list(spatials)
    if not spatials:
        raise SpecError("spatials", "needs at least one ROI")
    if not models:
        raise SpecError("models", "needs at least one model")
    if not isinstance(target, ExportTarget):
        raise SpecError("target", f"must be ExportTarget.combined(...) or .per_item(...), got {target!r}")
    if input_prep is not None and config.input_prep is not None:
        raise SpecError("input_prep", "given both to export_batch and in ExportConfig: give it once")
    prep = input_prep if input_prep is not None else config.input_prep
    if isinstance(store, (str, Path)):
        store = EmbeddingStore(store)
    if config.format == "store" and store is None:
        raise SpecError("store", "format 'store' writes into a store: pass store=PATH")
    specs = [m if isinstance(m, ExportModelRequest) else m.request() if isinstance(m, ModelConfig)
             else ExportModelRequest(m) for m in models]
    labels = _labels(specs)
    started = time.perf_counter()
    shared: CountingSource | None = None
    if not all(is_product(spec.name) for spec in specs):
        shared = make_source(imagery_source(next(s.name for s in specs if not is_product(s.name)), backend, source),
                             imagery or os.environ.get("RSEMBED_IMAGERY"), imagery_date,
                             cache_size=config.chunk_size * len(specs))
    jobs = []
    for label, spec in zip(labels, specs):
        own_sensor, own_fetch, own_modality = _model_inputs(spec, sensor, fetch, modality)
        producer = make_producer(spec.name, model_config=resolve_runtime(spec.name, spec.model_config, backend, device),
                                 source=shared).for_request(own_modality, own_sensor)
        requests = producer.requests(spatials, temporal, output, sensor=own_sensor, fetch=own_fetch,
                                     input_prep=prep, modality=own_modality)
        jobs.append(_Job(label, spec, producer, requests))
    names = _item_names(target, len(spatials))
    outputs = _outputs(target, names, jobs, config, output.mode == "grid")
    common = {
        "rsembed_db_export": LAYOUT_VERSION, "format": config.format, "mode": target.mode,
        "models": [job.describe() for job in jobs],
        "specs": {"temporal": temporal.to_dict() if temporal is not None else None, "output": output.to_dict(),
                  "input_prep": InputPrepSpec.parse(prep, default="tile").to_dict(), "backend": backend,
                  "save_inputs": config.save_inputs, "save_embeddings": config.save_embeddings},
        "versions": versions(),
    }
    manifests: dict[int, dict[str, Any]] = {}
    pending = []
    for n, out in enumerate(outputs):
        done = reusable(out.manifest, out.fingerprint) if config.resume else None
        if done is not None and (config.format == "store" or out.path.exists()):
            manifests[n] = {**done, "resume_skipped": True, "resume_output_path": str(out.path)}
        else:
            pending.append(n)
    runner = _Runner(jobs, store, config)
    owner = {i: n for n in pending for i in outputs[n].items}
    results: dict[tuple[int, str], ModelResult] = {}
    remaining = {n: set(outputs[n].items) for n in pending}
    finish = _Finisher(outputs, names, spatials, labels, results, config, target, store, common, shared)
    with ThreadPoolExecutor(max_workers=config.num_workers, thread_name_prefix="export") as pool, \
            ThreadPoolExecutor(max_workers=config.writer_workers if config.async_write else 1,
                               thread_name_prefix="export-write") as writers, \
            progress_bar(config.show_progress, "export", len(owner)) as advance:
        futures: dict[int, Future] = {}
        for chunk in _chunks(sorted(owner), config.chunk_size):
            timings = {"fetch_s": 0.0, "embed_s": 0.0, "store_write_s": 0.0}
            results.update(runner.run(chunk, pool, timings))
            for n in {owner[i] for i in chunk}:
                share = len([i for i in chunk if owner[i] == n]) / len(chunk)
                for name, seconds in timings.items():
                    outputs[n].timings[name] += seconds * share
                remaining[n] -= set(chunk)
                if not remaining[n]:
                    futures[n] = writers.submit(finish, n)
                    if not config.async_write:
                        futures[n].result()
            advance(len(chunk))
        for n, future in futures.items():
            manifests[n] = future.result()
    elapsed = time.perf_counter() - started
    ordered = [{**manifests[n], "run_seconds": round(elapsed, 3)} for n in range(len(outputs))]
    return ordered[0] if target.mode == "combined" else ordered


class _Finisher:
    """Writes one finished output (retrying, or recording a failure under ``continue_on_error``),
    then its manifest; called on the writer threads."""

    def __init__(self, outputs: list[_Output], names: list[str], spatials: list[SpatialSpec], labels: list[str],
                 results: dict[tuple[int, str], ModelResult], config: ExportConfig, target: ExportTarget,
                 store: EmbeddingStore | None, common: dict[str, Any], shared: CountingSource | None) -> None:
        self.outputs, self.names, self.spatials, self.labels = outputs, names, spatials, labels
        self.results, self.config, self.target, self.store = results, config, target, store
        self.common, self.shared = common, shared
        self.writer = writer_for(config.format) if config.format != "store" else None
        self._lock = threading.Lock()

    def __call__(self, n: int) -> dict[str, Any]:
        out, config = self.outputs[n], self.config
        with self._lock:
            items = [ItemResult(i, self.names[i], {label: self.results.pop((i, label)) for label in self.labels})
                     for i in out.items]
        started = time.perf_counter()
        write_error = None
        if self.writer is not None:
            writer = self.writer
            try:
                retrying(lambda: atomic_write(out.path, lambda tmp: writer(tmp, items, self.labels, config.save_inputs,
                                                                           config.save_embeddings)),
                         config.max_retries, config.retry_backoff_s, OSError)
            except OSError as exc:
                if not config.continue_on_error:
                    raise
                write_error = f"{type(exc).__name__}: {exc}"
        status, summary = _status(items)
        path = str(out.path) if self.writer is not None else str(self.store.uri if self.store else "")
        manifest = {
            **self.common, "fingerprint": out.fingerprint, "status": "failed" if write_error else status,
            "summary": summary, "path": path, f"{config.format}_path": path,
            "manifest_path": str(out.manifest) if config.save_manifest else None, "n_items": len(items),
            **({"point_index": out.items[0]} if self.target.mode == "per_item" else {}),
            **({"error": write_error, "stage": "write"} if write_error else {}),
            "items": [{"index": item.index, "name": item.name, "spatial": self.spatials[item.index].to_dict(),
                       "models": {label: {"key": r.key, "ok": r.embedding is not None, "from_store": r.from_store,
                                          **({"error": r.error} if r.error else {})}
                                  for label, r in item.models.items()}} for item in items],
            "timings": {**{k: round(v, 4) for k, v in out.timings.items()},
                        "write_s": round(time.perf_counter() - started, 4)},
            "fetch_stats": self.shared.stats.snapshot() if self.shared is not None else None,
            "created_at": now(),
        }
        if config.save_manifest:
            write_manifest(out.manifest, manifest)
        return manifest


class BatchExporter:
    """An ``export_batch`` run held as an object: the same keyword arguments, then ``run()``."""

    def __init__(self, **arguments: Any) -> None:
        self.arguments = arguments

    def run(self) -> list[dict[str, Any]] | dict[str, Any]:
        return export_batch(**self.arguments)
