"""Benchmark: ingest wall time against its compute floor, measured in the same run.

    .venv/bin/python -m bench.ingest_floor            # MOSAIKS; appends to bench/RESULTS.md
    .venv-zoo/bin/python -m bench.ingest_floor --zoo  # also every zoo model (smallest variant)

Run it as a module from the repository root (``-m``): as a script, ``sys.path`` starts with
``bench/`` and ``rsembed_db`` would come from wherever the environment installed it.

MOSAIKS: the ingest of ``examples/region.geojson`` as H3 resolution-9 cells (371 tiles)
over the bundled Sentinel-2 scene, ``run_ingest`` into a fresh database (skip-stored
check, fetch threads, embedding, pooling, chunked commits, index build), against the
floor measured on the same chips in the same round: the fetch (the engine's thread
count), torch's own float32 ``conv2d`` of the model's filters over the reflect-padded
bands of each batch (chips of one shape stacked, as the embedder receives them; the
faster of torch's default thread count and one thread), and
one ``store.write`` of the same rows into a fresh database. Rounds alternate the order
of the two; the figures are medians.

Zoo (``--zoo``, in the zoo environment): per model, the smallest variant with random
weights of the real size (real weights cannot be downloaded here; speed does not depend
on them). The same tiles are ingested end to end at batch size ``--zoo-chips``, and
the model's forward pass alone runs on the very batch ``embed`` builds: the ratio is
ingest seconds per chip over forward seconds per chip.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import rsembed_db
from bench.results import commit, finish
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.base import Prepared, Producer
from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.records import EmbeddingRecord
from rsembed_db.specs.output import OutputSpec
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region
from rsembed_db.tiling.region import load_region

ROOT = Path(__file__).resolve().parents[1]
REGION = ROOT / "examples/region.geojson"
IMAGERY = ROOT / "examples/data"
HEADING = "## Ingest vs its floor (bench/ingest_floor.py)"
OPTIONS = IngestOptions()
# The smallest published variant of each zoo model and its input branch (S2 only: the scene is Sentinel-2).
ZOO = [("remoteclip", {}), ("prithvi", {}), ("satmae", {"variant": "multispectral_vit_base"}), ("scalemae", {}),
       ("dofa", {}), ("clay", {}), ("terrafm", {}), ("terramind", {"variant": "tiny"}), ("satmaepp", {}),
       ("thor", {"variant": "tiny"}), ("fomo", {}), ("wildsat", {"variant": "swint"}),
       ("olmoearth", {"variant": "nano"})]


def requests_for(producer: Producer, tiles: str = "h3:9", limit: int | None = None) -> list[EmbeddingRequest]:
    spatials = tile_region(load_region(REGION), tiles, cover="centre", max_tiles=100_000)[:limit]
    return producer.requests(spatials, TemporalSpec.year(2017), OutputSpec.pooled())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def fetch_all(producer: Producer, requests: list[EmbeddingRequest]) -> list[Prepared]:
    with ThreadPoolExecutor(max_workers=OPTIONS.workers or producer.default_workers, thread_name_prefix="fetch") as pool:
        return list(pool.map(producer.prepare, requests))


def conv2d_floor(producer: Producer, prepared: list[Prepared], threads: int) -> None:
    """torch's float32 conv2d of the model's filters over each batch, chips of a shape stacked,
    on ``threads`` intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _conv2d_batches(producer, prepared)
    finally:
        torch.set_num_threads(previous)


def _conv2d_batches(producer: Producer, prepared: list[Prepared]) -> None:
    embedder: Any = producer.embedder
    weights = torch.from_numpy(embedder.filters.astype(np.float32))
    pad = weights.shape[-1] // 2
    with torch.inference_mode():
        for start in range(0, len(prepared), OPTIONS.batch_size):
            groups: dict[tuple[int, ...], list[np.ndarray]] = {}
            for item in prepared[start:start + OPTIONS.batch_size]:
                chip = item.payload
                bands = chip.data[[chip.bands.index(b) for b in embedder.bands]]
                groups.setdefault(bands.shape, []).append(bands)
            for stack in groups.values():
                x = F.pad(torch.from_numpy(np.stack(stack)).float(), (pad,) * 4, mode="reflect")
                F.conv2d(x, weights)


def write_floor(producer: Producer, records: list[EmbeddingRecord], folder: str) -> None:
    EmbeddingStore(folder).write(producer.table_name, records, producer.dim)


def mosaiks_round(workdir: Path, index: int, ingest_first: bool) -> dict[str, float]:
    """One round: the ingest and the floor's three parts, in the given order."""
    out: dict[str, float] = {}

    def ingest() -> None:
        producer = make_producer("mosaiks", [IMAGERY])
        requests = requests_for(producer)
        summary = run_ingest(EmbeddingStore(str(workdir / f"ingest{index}")), producer, requests, OPTIONS)
        assert summary.computed == len(requests) == 371, summary
        out["ingest"] = summary.seconds

    def floor() -> None:
        producer = make_producer("mosaiks", [IMAGERY])
        requests = requests_for(producer)
        out["fetch"], prepared = timed(lambda: fetch_all(producer, requests))
        out["conv2d"] = min(timed(lambda: conv2d_floor(producer, prepared, threads))[0]
                            for threads in (torch.get_num_threads(), 1))
        records = [r for i in range(0, len(prepared), OPTIONS.batch_size)
                   for r in producer.finish(prepared[i:i + OPTIONS.batch_size])]
        out["write"], _ = timed(lambda: write_floor(producer, records, str(workdir / f"floor{index}")))

    for step in ((ingest, floor) if ingest_first else (floor, ingest)):
        step()
        gc.collect()
    return out


def run_mosaiks(rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ingest-floor-") as tmp:
        warm = make_producer("mosaiks", [IMAGERY])  # imports, scene scan, MKL start-up: outside the rounds
        warm.finish(fetch_all(warm, requests_for(warm, limit=4)))
        results = []
        for i in range(rounds):
            results.append(mosaiks_round(Path(tmp), i, ingest_first=i % 2 == 0))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in results[-1].items()), flush=True)
    for r in results:
        r["floor"] = r["fetch"] + r["conv2d"] + r["write"]
        r["ratio"] = r["ingest"] / r["floor"]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def zoo_row(workdir: Path, name: str, config: dict[str, Any], chips: int) -> str:
    """One zoo model: ingest ``chips`` tiles in one batch, then its forward pass alone on the samples
    that ingest's ``embed`` built (captured), each after a one-tile warm-up."""
    producer = make_producer(name, [IMAGERY], model_config={"batch_size": chips, **config})
    embedder: Any = producer.embedder
    torch.manual_seed(0)
    # Benchmark only: the real architecture with random weights, bypassing the weight loader.
    embedder._model = embedder.build().to(embedder.runtime.device).eval()
    infer, captured = embedder._infer, []

    def capture(model: torch.nn.Module, samples: list) -> np.ndarray:
        captured.append(samples)
        return infer(model, samples)

    embedder._infer = capture
    requests = requests_for(producer, limit=chips + 1)
    run_ingest(EmbeddingStore(str(workdir / f"{name}-warm")), producer, requests[:1], OPTIONS)
    summary = run_ingest(EmbeddingStore(str(workdir / f"{name}")), producer, requests[1:],
                         IngestOptions(batch_size=chips))
    assert summary.computed == chips, summary
    samples = captured[-1]
    forward, _ = timed(lambda: infer(embedder._model, samples))
    params = sum(p.numel() for p in embedder._model.parameters())
    ratio = (summary.seconds / chips) / (forward / chips)
    print(f"{name} {config or ''}: forward {forward / chips:.3f} s/chip ({len(samples)} samples), "
          f"ingest {summary.seconds / chips:.3f} s/chip, ratio {ratio:.2f}", flush=True)
    label = name + "".join(f" {k}={v}" for k, v in config.items())
    return (f"| {label} | {params / 1e6:.1f}M | {embedder.image_size} | {forward / chips:.3f} | "
            f"{summary.seconds / chips:.3f} | **{ratio:.2f}** |")


def run_zoo(chips: int, names: list[str] | None) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ingest-floor-zoo-") as tmp:
        for name, config in ZOO:
            if names and name not in names:
                continue
            try:
                rows.append(zoo_row(Path(tmp), name, config, chips))
            except Exception as exc:  # noqa: BLE001 - one model failing leaves the others' rows
                print(f"{name}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)
                rows.append(f"| {name} | - | - | - | - | skipped: {type(exc).__name__} |")
            gc.collect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="MOSAIKS rounds (median)")
    parser.add_argument("--zoo", action="store_true", help="also the zoo models (needs the zoo extra)")
    parser.add_argument("--zoo-chips", type=int, default=4, help="tiles per zoo model (one batch)")
    parser.add_argument("--only-zoo", action="store_true", help="skip MOSAIKS")
    parser.add_argument("--models", default="", help="zoo models to run, comma-separated (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md entry (e.g. 'before')")
    args = parser.parse_args()
    load_start = os.getloadavg()
    package = Path(rsembed_db.__file__).resolve().parent
    if package != ROOT / "rsembed_db":
        raise SystemExit(f"rsembed_db imported from {package}, not this checkout: run `python -m bench.ingest_floor`")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
               f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print(f"{machine}; load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    lines = [f"### {dt.date.today().isoformat()}, commit {commit()}{' (' + args.label + ')' if args.label else ''}", "",
             f"{machine}."]
    if not args.only_zoo:
        m = run_mosaiks(args.rounds)
        print(f"MOSAIKS h3:9 (371 tiles): ingest {m['ingest']:.2f}s, floor {m['floor']:.2f}s "
              f"(fetch {m['fetch']:.2f} + conv2d {m['conv2d']:.2f} + write {m['write']:.2f}), "
              f"ratio {m['ratio']:.2f}", flush=True)
        lines += ["", "| MOSAIKS h3:9, 371 tiles | ingest s | floor s | fetch s | conv2d s | write s | ingest / floor |",
                  "|---|---|---|---|---|---|---|",
                  f"| median of {args.rounds} rounds | {m['ingest']:.2f} | {m['floor']:.2f} | {m['fetch']:.2f} | "
                  f"{m['conv2d']:.2f} | {m['write']:.2f} | **{m['ratio']:.2f}** |"]
    if args.zoo or args.only_zoo:
        rows = run_zoo(args.zoo_chips, [m for m in args.models.split(",") if m])
        lines += ["", f"| zoo model (random weights, {args.zoo_chips} tiles) | params | input px | forward s/chip | "
                  "ingest s/chip | ingest / forward |", "|---|---|---|---|---|---|", *rows]
    finish(HEADING, __doc__, lines, load_start, write=not args.no_write)


if __name__ == "__main__":
    main()
