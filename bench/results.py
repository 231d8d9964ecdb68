"""What every benchmark writes: the commit measured and its entry in bench/RESULTS.md."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")


def commit() -> str:
    """The short hash of the checkout's HEAD, or ``unknown``."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def append_results(heading: str, intro: str, lines: list[str]) -> None:
    """Append this run at the end of the section ``heading`` (created once at the end of the
    file, with ``intro``; history kept)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if heading not in text:
        text = text.rstrip() + "\n\n" + heading + "\n\n" + intro.strip() + "\n"
    start = text.index(heading) + len(heading)
    end = text.find("\n## ", start)
    end = len(text) if end < 0 else end + 1
    RESULTS.write_text(text[:end].rstrip() + "\n\n" + "\n".join(lines) + "\n" + ("\n" + text[end:] if text[end:] else ""))


def load_note(start: tuple[float, float, float], end: tuple[float, float, float]) -> str:
    """The run's load averages (``os.getloadavg()`` before and after), as RESULTS.md states them."""
    return (f"Load average (1/5/15 min) {start[0]:.2f}/{start[1]:.2f}/{start[2]:.2f} at the start, "
            f"{end[0]:.2f}/{end[1]:.2f}/{end[2]:.2f} at the end.")


def finish(heading: str, doc: str, lines: list[str], load_start: tuple[float, float, float], write: bool) -> None:
    """End a run: print and add the load-average note to ``lines``; with ``write``, append them to
    RESULTS.md under ``heading`` (introduced by the module docstring ``doc`` past its first paragraph)."""
    note = load_note(load_start, os.getloadavg())
    print(note)
    lines.append("")
    lines.append(note)
    if write:
        append_results(heading, doc.split("\n\n", 1)[1], lines)
