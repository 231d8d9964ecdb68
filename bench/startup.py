"""Benchmark: CLI start-up and service readiness against ``python -c "import lancedb"``.

    .venv/bin/python -m bench.startup            # appends to bench/RESULTS.md

Each command runs in a fresh interpreter (the installed ``rsembed-db`` entry point of this
checkout: ``python -m rsembed_db`` from the repository root), ``--runs`` times, alternating
with the baseline so that load affects both alike; the figures are medians. ``tables`` and
``sql`` run against a demo database built once (the bundled scene's region as H3
resolution-8 MOSAIKS cells, as ``scripts/demo.sh``). ``serve``: seconds from the process
start until ``GET /healthz`` answers 200 on a loopback port (the server is then stopped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.results import commit, finish

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Start-up (bench/startup.py)"
CLI = [sys.executable, "-m", "rsembed_db"]
SERVE_LIMIT_S = 60.0


def wall(cmd: list[str], env: dict[str, str], root: Path = ROOT) -> float:
    """Seconds for ``cmd`` to run to completion in ``root`` (must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_ready(db: str, env: dict[str, str], root: Path = ROOT) -> float:
    """Seconds from starting ``serve`` until /healthz answers 200; the server is stopped after."""
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([*CLI, "serve", "--db", db, "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < SERVE_LIMIT_S:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"serve not ready in {SERVE_LIMIT_S} s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def build_demo(db: str, env: dict[str, str]) -> None:
    subprocess.run([*CLI, "ingest", "examples/region.geojson", "--model", "mosaiks", "--tiles", "h3:8",
                    "--year", "2017", "--imagery", "examples/data", "--db", db], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (median)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md entry (e.g. 'before')")
    parser.add_argument("--compare", type=Path, help="another checkout (e.g. main) measured in the same run")
    args = parser.parse_args()
    load_start = os.getloadavg()
    print(f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        db = str(Path(tmp) / "demo-db")
        build_demo(db, env)
        commands = {
            "import lancedb (baseline)": [sys.executable, "-c", "import lancedb"],
            "rsembed-db --help": [*CLI, "--help"],
            "rsembed-db tables": [*CLI, "tables", "--db", db],
            "rsembed-db sql": [*CLI, "sql", "SELECT count(*) AS n FROM mosaiks", "--db", db],
        }
        roots = {"": ROOT} if args.compare is None else {"": ROOT, f" [{args.compare}]": args.compare.resolve()}
        times: dict[str, list[float]] = {}
        for _ in range(args.runs):
            for suffix, root in roots.items():
                root_env = {**env, "PYTHONPATH": str(root)}
                for name, cmd in commands.items():
                    if suffix and "baseline" in name:
                        continue
                    times.setdefault(name + suffix, []).append(wall(cmd, root_env, root))
                times.setdefault("rsembed-db serve (ready)" + suffix, []).append(serve_ready(db, root_env, root))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["import lancedb (baseline)"]
    lines = [f"### {dt.date.today().isoformat()}, commit {commit()}{' (' + args.label + ')' if args.label else ''}", "",
             f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; median of {args.runs} "
             "fresh processes each.", "", "| command | median s | / import lancedb |", "|---|---|---|"]
    for name, seconds in medians.items():
        lines.append(f"| {name} | {seconds:.2f} | {seconds / base:.2f} |")
        print(f"{name}: {seconds:.2f}s ({seconds / base:.2f}x import lancedb)", flush=True)
    finish(HEADING, __doc__, lines, load_start, write=not args.no_write)


if __name__ == "__main__":
    main()
