"""The CLI under hostile input and refusing storage: one ``error:`` line and a non-zero exit,
never a traceback, and the stored table unchanged.

Storage faults are real ones raised by the OS in the child process: a read-only database
directory (``chmod -R a-w``; as root, the child runs without the capabilities that bypass
file permissions, through ``setpriv``) and a full disk (``RLIMIT_FSIZE`` of 512 bytes set
in the child, so a write past it fails with ``EFBIG``, the error a full file system or
quota gives a writer as ``ENOSPC`` / ``EDQUOT``; Python ignores ``SIGXFSZ``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import h3
import lance
import pytest

from tests.conftest import SCENE
from tests.helpers.live_server import POINT, small_store

DROP_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
            "--inh-caps=-dac_override,-dac_read_search,-fowner"]


def _cli(args: list[str], db: Path, prefix: list[str] | None = None, fsize: int | None = None
         ) -> subprocess.CompletedProcess:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "COLUMNS": "200", "RSEMBED_DB": str(db)}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "rsembed_db", *args], capture_output=True, text=True,
                          env=env, preexec_fn=limit if fsize is not None else None, timeout=600)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0]), proc.stderr[-3000:]
    return errors[0]


@pytest.fixture()
def db(tmp_path) -> Path:
    path = tmp_path / "db"
    small_store(path)
    return path


def _square(path: Path, lon: float, lat: float) -> Path:
    """A 100 m square at the centre of the resolution-9 cell at (lon, lat): one tile."""
    lat, lon = h3.cell_to_latlng(h3.latlng_to_cell(lat, lon, 9))
    d = 0.0005
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [[[lon - d, lat - d], [lon + d, lat - d],
                                                                     [lon + d, lat + d], [lon - d, lat + d],
                                                                     [lon - d, lat - d]]]}))
    return path


@pytest.fixture()
def tiny_region(tmp_path) -> Path:
    """One tile inside the demo scene whose key is not stored yet."""
    return _square(tmp_path / "tiny.geojson", POINT["lon"], POINT["lat"])


def _ingest(region: Path) -> list[str]:
    return ["ingest", str(region), "--model", "mosaiks", "--tiles", "h3:9", "--year", "2017", "--imagery", str(SCENE),
            "--workers", "1"]


def _state(db: Path) -> tuple[int, int, list]:
    dataset = lance.dataset(str(db / "mosaiks.lance"))
    return dataset.version, dataset.count_rows(), sorted(dataset.to_table(columns=["key"])["key"].to_pylist())


def _intact(db: Path, before: tuple[int, int, list]) -> None:
    assert _state(db) == before
    check = _cli(["check", "--format", "json"], db)
    assert check.returncode == 0 and all(t["healthy"] for t in json.loads(check.stdout)["tables"]), check.stdout


def test_sql_out_of_range_dates_print_as_text(db):
    sql = "SELECT 'infinity'::DATE AS d, '290000-01-01'::TIMESTAMP AS t, '-5000-01-01'::DATE AS e"
    for form in ("table", "json"):
        proc = _cli(["sql", sql, "--format", form], db)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "infinity" in proc.stdout and "290000-01-01" in proc.stdout and "-5000-01-01" in proc.stdout
    proc = _cli(["sql", "SELECT 'infinity'::DATE + 'x'"], db)
    assert proc.returncode == 2 and _one_error_line(proc).startswith("error: sql:")


@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_geojson_is_one_line(db, tmp_path, depth):
    path = tmp_path / "nested.geojson"
    path.write_text('{"type": "Polygon", "coordinates": ' + "[" * depth + "]" * depth + "}")
    before = _state(db)
    proc = _cli(_ingest(path), db)
    assert proc.returncode == 2 and _one_error_line(proc).startswith("error: region:"), proc.stderr[-2000:]
    _intact(db, before)


def test_read_only_database_is_one_line_and_the_table_stays(db, tiny_region):
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores permission bits unless it drops these capabilities
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only for the child")
        prefix = DROP_DAC
    before = _state(db)
    modes = {p: p.stat().st_mode for p in [db, *db.rglob("*")]}
    for path in modes:
        path.chmod(stat.S_IMODE(modes[path]) & ~0o222)
    try:
        proc = _cli(_ingest(tiny_region), db, prefix=prefix)
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))
    line = _one_error_line(proc)
    assert proc.returncode == 1 and "permission denied" in line and "intact" in line, line
    _intact(db, before)
    assert _cli(_ingest(tiny_region), db).returncode == 0  # writable again: the same command stores the row
    assert _state(db)[1] == before[1] + 1


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_full_disk_is_one_line_and_the_table_stays(db, tiny_region, tmp_path, where):
    """Inside the scene the row's data file cannot be written; outside, the tile fails and
    the record of that failure (a new internal table) cannot be written."""
    region = tiny_region if where == "inside" else _square(tmp_path / "off.geojson", POINT["lon"] + 1, POINT["lat"])
    before = _state(db)
    proc = _cli(_ingest(region), db, fsize=512)
    line = _one_error_line(proc)
    assert proc.returncode == 1 and "exceed the size limit" in line and "intact" in line, line
    _intact(db, before)
    if where == "outside":  # the failures table was being created: its empty directory is reported, and reused
        check = json.loads(_cli(["check", "--format", "json"], db).stdout)
        assert {t["table"]: t["unversioned"] for t in check["tables"]}["_failures"] is True
        assert _cli(_ingest(region), db).returncode == 11  # the tile fails again, and is recorded this time
        assert _cli(["failures"], db).returncode == 0
