"""Throughput of the model zoo: chips per second at each model's native input size.

Run: ``.venv-zoo/bin/python bench/model_throughput.py`` (needs the ``zoo`` extra).

Real weights cannot be downloaded where this runs, so every model is the full-size
architecture with random initialisation; speed does not depend on the weight values.
Each measurement times ``embed`` end to end (band selection, normalisation, input
preparation, the forward pass) on chips of the native size, batch 1 and 16, after a
one-chip warm-up call, over a fixed small number of calls (full-size ViTs are slow on 2 cores).
On CUDA the same runs in fp32 and under bf16 / fp16 autocast. The table replaces the
"Model zoo throughput" section of bench/RESULTS.md; ``--models a,b`` runs a subset into its
own section (include an already measured model as the same-run baseline).

Multi-temporal models (galileo, anysat, agrifm, prithvi with ``num_frames``) get chips of
their frame count, (T, C, S, S) with the frame meta a source provides; a "chip" is then
one whole time series.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from affine import Affine
from shapely.geometry import box

from rsembed_db.models.zoo import ZooEmbedder
from rsembed_db.producers.catalog import get_embedder
from rsembed_db.sources.base import Chip
from rsembed_db.sources.frames import frame_bins
from rsembed_db.specs.temporal import TemporalSpec
from rsembed_db.tiling.chip_grid import ChipGrid

MODELS = [("remoteclip", {}), ("prithvi", {}), ("prithvi", {"variant": "600m_tl"}), ("satmae", {}),
          ("satmae", {"variant": "multispectral_vit_base"}), ("satmae", {"variant": "multispectral_vit_large"}),
          ("satmae", {"variant": "temporal_vit_large"}), ("scalemae", {}), ("dofa", {}), ("clay", {}),
          ("fomo", {}), ("wildsat", {}), ("wildsat", {"variant": "resnet50"}), ("wildsat", {"variant": "swint"}),
          ("olmoearth", {}), ("satvision", {}), ("terrafm", {}), ("terramind", {}), ("satmaepp", {}),
          ("satmaepp", {"modality": "s2_10b"}), ("thor", {}), ("thor", {"modality": "s1"}),
          ("galileo", {}), ("anysat", {}),
          ("agrifm", {"batch_size": 2})]  # 32 frames x 256 px: 16 at once need ~15 GB of window attention
SAR = {"VV", "VH", "HH", "HV"}
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Model zoo throughput"


def chips(embedder: ZooEmbedder, count: int) -> list[Chip]:
    """``count`` random chips of the model's native size, bands and frame count (``describe().frames``),
    in the units of its default sensor: reflectance x 10000, or Sentinel-1 backscatter (linear power or dB).
    Multi-frame chips carry the frame meta a source gives (bins of 2022, their midpoints as frame dates)."""
    size, rng, frames = embedder.image_size, np.random.default_rng(0), embedder.describe().frames
    grid = ChipGrid("EPSG:32633", Affine(10, 0, 500000, 0, -10, 5800000), size, size,
                    box(500000, 5800000 - 10 * size, 500000 + 10 * size, 5800000))
    meta: dict = {"input_time": "2022-06-15"}
    shape: tuple[int, ...] = (len(embedder.bands), size, size)
    if frames > 1:
        bins = frame_bins(TemporalSpec.year(2022), frames)
        meta.update(frame_bins=[[b.start, b.end] for b in bins], frame_dates=[b.midpoint.isoformat() for b in bins])
        shape = (frames, *shape)
    sensor = embedder.default_sensor()
    low, high = (0.0, 4000.0) if not set(sensor.bands) <= SAR else (0.0, 0.5) if sensor.use_float_linear else (-25, -5)
    return [Chip(rng.uniform(low, high, shape).astype(np.float32), np.ones((size, size), bool), embedder.bands,
                 grid, dict(meta)) for _ in range(count)]


def measure(embedder: ZooEmbedder, batch: int, calls: int) -> float:
    """Chips per second of ``embed`` on ``batch`` chips over ``calls``, after a one-chip warm-up."""
    batch_chips = chips(embedder, batch)
    embedder.embed(batch_chips[:1])
    if embedder.runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        embedder.embed(batch_chips)
    if embedder.runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * calls / (time.perf_counter() - start)


def random_full_size(name: str, config: dict, device: str, precision: str) -> ZooEmbedder:
    embedder = get_embedder(name, **{"device": device, "precision": precision, "batch_size": 16, **config})
    torch.manual_seed(0)
    # Benchmark only: the architecture with random weights, bypassing the weight loader.
    embedder._model = embedder.build().to(embedder.runtime.device).eval()
    return embedder


def run(models: list[tuple[str, dict]], devices: list[tuple[str, str]], calls_1: int, calls_16: int) -> list[str]:
    rows = []
    for name, config in models:
        for device, precision in devices:
            embedder = random_full_size(name, config, device, precision)
            params = sum(p.numel() for p in embedder.model().parameters()) / 1e6
            label = " ".join([name, embedder.config["variant"], *([config["modality"]] if "modality" in config else [])])
            if "batch_size" in config:
                label += f" (forward passes of {config['batch_size']})"
            one, sixteen = measure(embedder, 1, calls_1), measure(embedder, 16, calls_16)
            rows.append(f"| {label} | {params:.0f}M | {embedder.image_size} | {embedder.describe().frames} | "
                        f"{embedder.dim} | {device} | "
                        f"{precision if device != 'cpu' else 'fp32'} | {one:.2f} | {sixteen:.2f} |")
            print(rows[-1], flush=True)
            del embedder
            gc.collect()
    return rows


def _row_id(row: str) -> tuple[str, ...]:
    """A table row's model label, device and precision (what a new measurement replaces)."""
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    return cells[0], cells[-4], cells[-3]


def merged(old_rows: list[str], new_rows: list[str]) -> list[str]:
    """``old_rows`` with the rows measured again replaced in place, new ones appended."""
    fresh = {_row_id(r): r for r in new_rows}
    out = [fresh.pop(_row_id(r), r) for r in old_rows]
    return out + [r for r in new_rows if _row_id(r) in fresh]


TABLE_HEADER = ["| model | params | size px | frames | D | device | precision | chips/s (batch 1) | chips/s (batch 16) |",
                "|---|---|---|---|---|---|---|---|---|"]


def write(rows: list[str], device_text: str, calls_1: int, calls_16: int, load: float,
          models: list[str] | None = None) -> None:
    """Replace the section; a run of some ``models`` only replaces their rows and adds a note."""
    machine = (f"{device_text}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads. The 1-minute "
               f"load average was {load:.1f} at the start: other processes shared the cores, so these are lower bounds.")
    setup = f"`bench/model_throughput.py` on {machine}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    # The section ends at the next heading or at another benchmark's marker comment.
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |^<!-- |\Z)", re.S | re.M)
    found = pattern.search(text)
    if models and found:
        lines = found.group(0).rstrip().splitlines()
        prose = lines[:next(i for i, line in enumerate(lines) if line.startswith("|"))]
        old_rows = [line for line in lines if line.startswith("| ")][1:]  # [0] is the header
        note = (f"Rows of {', '.join(models)} measured by `--models {' '.join(models)}` on {machine} "
                f"Batch 1 over {calls_1} calls, batch 16 over {calls_16} call(s).")
        section = "\n".join([*prose, note, "", *TABLE_HEADER, *merged(old_rows, rows), ""])
    else:
        section = "\n".join([
            HEADING, "",
            f"{setup} Full-size architectures with **random weights** (real weights cannot be downloaded here; "
            "speed does not depend on them); params counts the whole model (remoteclip: with its text tower). "
            "Chips/s of `embed` end to end at the native size (a multi-frame model's chip is one whole time series "
            f"of its frame count), after a one-chip warm-up; batch 1 over {calls_1} calls, batch 16 over {calls_16} call(s).", "",
            *TABLE_HEADER, *rows, ""])
    text = pattern.sub(lambda _: section + "\n", text) if found else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls-1", type=int, default=3, help="timed calls at batch 1")
    parser.add_argument("--calls-16", type=int, default=1, help="timed calls at batch 16")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="measure only these models (all their variants listed here); other rows are kept")
    args = parser.parse_args()
    models = [m for m in MODELS if args.models is None or m[0] in args.models]
    devices = [("cpu", "fp32")]
    device_text = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    if torch.cuda.is_available():
        devices = [("cuda", p) for p in ("fp32", "bf16", "fp16")] + devices
        device_text = f"{torch.cuda.get_device_name()} and {device_text}"
    load = os.getloadavg()[0]
    print(f"{sys.argv[0]}: {device_text}, load average {load:.1f}", flush=True)
    rows = run(models, devices, args.calls_1, args.calls_16)
    if not args.no_write:
        write(rows, device_text, args.calls_1, args.calls_16, load, args.models)


if __name__ == "__main__":
    main()
