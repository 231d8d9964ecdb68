"""Every shell example of README.md and docs/ runs, against the demo database.

A shell example is a fenced ``bash`` block. Each line (with its ``\\`` continuations) runs
in a scratch directory holding ``examples/`` and the demo DB (``RSEMBED_DB``), with the
installed ``rsembed-db``. What an example cannot know is substituted, and only that:

- placeholders for stored keys (``KEY``, ``KEY1``...) become keys of the demo DB, and
  ``q.npy`` is a stored vector;
- data directories of the products docs (``/data/tessera``, ``/data/geotessera-out``)
  are generated trees in the published layouts over the example region, and
  ``region.geojson`` is the example region;
- ``serve`` lines start the server in the background on a free loopback port (never
  ``0.0.0.0``); the ``curl`` lines that follow talk to it; an API-keys file is written;
- ``bash scripts/test.sh`` (the command running this test) and ``bash scripts/setup_zoo.sh``
  (run by ``scripts/test.sh`` itself right after) are not run again from here.

Searches must return rows: an example that prints "0 rows matched" fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import REGION, ROOT, SCENE

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_RERUN = ("bash scripts/test.sh", "bash scripts/setup_zoo.sh")
BIN = Path(sys.executable).parent


def shell_examples() -> list[tuple[str, str]]:
    """(where, block text) of every ``bash`` block."""
    out = []
    for path in DOCS:
        for i, match in enumerate(re.finditer(r"```bash\n(.*?)```", path.read_text(), re.S)):
            out.append((f"{path.relative_to(ROOT)}#{i + 1}", match.group(1)))
    return out


def commands(block: str) -> list[str]:
    """Lines joined across ``\\`` continuations, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A scratch directory with ``examples/``, the demo DB and the products' data trees."""
    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples", work / "examples")
    env = {**os.environ, "RSEMBED_DB": str(work / "demo-db"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "COLUMNS": "160"}
    subprocess.run(["rsembed-db", "ingest", str(REGION), "--model", "mosaiks", "--tiles", "h3:8", "--year", "2017",
                    "--imagery", str(SCENE)], env=env, cwd=work, check=True, capture_output=True)
    rows = json.loads(subprocess.run(["rsembed-db", "search", "--model", "mosaiks", "--near", "12.6,52.49", "-k", "4",
                                      "--format", "json", "--include-query"], env=env, cwd=work, check=True,
                                     capture_output=True, text=True).stdout)
    keys = [r["key"] for r in rows]
    np.save(work / "q.npy", np.ones(256, np.float32))
    return work, env, keys


def tessera_trees(work: Path) -> dict[str, Path]:
    """Generated Tessera trees over the example region: the 0.7 layout and a geotessera
    download directory of today's mirror layout."""
    from rsembed_db.sources.tessera.layout import TileId
    from tests.products.tessera_helpers import make_layouts, make_tree

    tiles = [TileId(ix, iy) for ix in range(124, 128) for iy in range(523, 527)]  # 12.4-12.8 E, 52.3-52.7 N
    legacy = work / "tessera"
    make_tree(legacy, tiles, year=2024)
    layouts = make_layouts(work / "layouts", tiles, year=2024)[1]
    return {"/data/tessera": legacy, "/data/geotessera-out": layouts["mirror"]}


def substitute(command: str, work: Path, keys: list[str], trees: dict[str, Path], port: int) -> str:
    for i, key in enumerate(keys[1:4], 1):
        command = re.sub(rf"\bKEY{i}\b", key, command)
    command = re.sub(r"\bKEY\b", keys[0], command)
    for placeholder, path in trees.items():
        command = command.replace(placeholder, str(path))
    command = re.sub(r"(?<![\w/])region\.geojson", "examples/region.geojson", command)
    command = command.replace("/etc/rsembed/keys", str(work / "keys.txt"))
    command = command.replace("--host 0.0.0.0", "--host 127.0.0.1").replace(".venv/bin/", "")
    command = command.replace("--db demo-db", f"--db {work / 'demo-db'}")
    command = re.sub(r"^bash scripts/", f"bash {ROOT}/scripts/", command)
    return command.replace("localhost:8000", f"127.0.0.1:{port}")


def _wait_healthy(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited {server.returncode}: {server.stderr.read() if server.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("server did not become healthy in 120 s")


@pytest.mark.parametrize("where, block", shell_examples(), ids=[w for w, _ in shell_examples()])
def test_shell_example_runs(where, block, workspace):
    work, env, keys = workspace
    (work / "keys.txt").write_text("# a comment\nk-file:read\n")
    trees = tessera_trees(work) if any(p in block for p in ("/data/tessera", "/data/geotessera-out")) else {}
    servers: list[subprocess.Popen] = []
    port = free_port()

    def serve(command: str) -> None:
        if servers:  # a second serve line: the first server makes way
            _stop(servers.pop())
        servers.append(subprocess.Popen(["bash", "-c", f"{command} --port {port}"], cwd=work, env=env,
                                        text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True))
        _wait_healthy(port, servers[-1])

    try:
        for raw in commands(block):
            if raw in NOT_RERUN:
                continue
            command = substitute(raw, work, keys, trees, port)
            if re.search(r"\brsembed-db serve\b", command):
                serve(command)
                continue
            if raw.startswith("curl") and not servers:  # a curl example of a block without its server
                serve("rsembed-db serve")
            done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{where}: {raw}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
            assert "0 rows matched" not in done.stdout, f"{where}: {raw} returned nothing"
            if raw.startswith("curl"):
                assert '"error"' not in done.stdout, f"{where}: {raw}\n{done.stdout}"
    finally:
        for server in servers:
            _stop(server)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
