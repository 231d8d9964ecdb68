"""Ingest through the CLI on the bundled scene: summary, idempotence, kill -9 + resume, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region
from rsembed_db.tiling.region import load_region
from tests.conftest import REGION, SCENE, run_cli

INGEST = ("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE))


def _summary(text: str) -> dict[str, str]:
    """The summary table's rows as {name: value}."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\s+([a-z/ ]+?)\s{2,}(\S+)\s*$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def _stored_tiles(db: Path) -> list[str]:
    table = EmbeddingStore(db).table("mosaiks")
    return table.to_lance().to_table(columns=["tile_id"])["tile_id"].to_pylist()


def _expected_cells(res: int) -> list[str]:
    return [c.hex for c in tile_region(load_region(REGION), f"h3:{res}")]


def test_ingest_then_rerun_computes_nothing_then_search(db):
    first = run_cli(*INGEST, "--tiles", "h3:8", db=db)
    expected = _expected_cells(8)
    summary = _summary(first.stdout)
    assert summary["planned tiles"] == summary["computed"] == str(len(expected))
    assert summary["already stored"] == summary["failed"] == "0"
    assert sorted(_stored_tiles(db)) == sorted(expected)

    second = run_cli(*INGEST, "--tiles", "h3:8", db=db)
    assert _summary(second.stdout)["already stored"] == str(len(expected))
    assert _summary(second.stdout)["computed"] == "0"

    tables = run_cli("tables", db=db)
    assert "mosaiks" in tables.stdout and str(len(expected)) in tables.stdout

    found = run_cli("search", "--model", "mosaiks", "--near", "12.58,52.49", "-k", "5", db=db)
    assert "5 most similar to" in found.stdout
    rows = [line for line in found.stdout.splitlines() if line.startswith("│ ") and "│" in line[2:]]
    assert len(rows) == 5
    distances = [float(r.split("│")[4]) for r in rows]
    assert distances == sorted(distances)


def test_dry_run_stores_nothing(db):
    out = run_cli(*INGEST, "--tiles", "h3:8", "--dry-run", db=db)
    assert "to compute" in out.stdout
    assert not EmbeddingStore(db).table_names()


def test_grid_output_keeps_a_grid_per_row(db):
    run_cli(*INGEST, "--tiles", "grid:500", "--output", "both", db=db)
    rows = EmbeddingStore(db).table("mosaiks").to_lance().to_table(
        columns=["grid_shape", "grid_crs", "spatial_kind"]).to_pylist()
    assert rows and all(r["grid_shape"] == [256, 50, 50] for r in rows)
    assert {r["grid_crs"] for r in rows} == {"EPSG:32633"} and {r["spatial_kind"] for r in rows} == {"grid"}


def test_sigkill_mid_run_then_resume_stores_every_tile_once(db):
    expected = _expected_cells(9)
    cmd = [sys.executable, "-m", "rsembed_db", *INGEST, "--tiles", "h3:9",
           "--commit-every", "8", "--batch-size", "4", "--workers", "2"]
    env = {**os.environ, "RSEMBED_DB": str(db)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    versions = db / "mosaiks.lance" / "_versions"
    deadline = time.time() + 120
    # Kill once some (but not all) commits have landed.
    while time.time() < deadline and proc.poll() is None:
        if versions.exists() and len(list(versions.iterdir())) >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _stored_tiles(db)
    assert 0 < len(partial) < len(expected)

    resumed = run_cli(*INGEST, "--tiles", "h3:9", db=db)
    assert _summary(resumed.stdout)["already stored"] == str(len(partial))
    stored = _stored_tiles(db)
    assert len(stored) == len(set(stored)) == len(expected)
    assert sorted(stored) == sorted(expected)


def test_tiles_outside_imagery_are_failures_retried_next_run(db, tmp_path):
    # A region half over the scene, half east of it: the eastern cells have no imagery.
    region = tmp_path / "half.geojson"
    region.write_text(json.dumps({"type": "Polygon", "coordinates": [[
        [12.70, 52.48], [12.76, 52.48], [12.76, 52.50], [12.70, 52.50], [12.70, 52.48]]]}))
    args = ("ingest", str(region), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE),
            "--tiles", "h3:8")
    first = run_cli(*args, db=db, check=False)
    assert first.returncode == 10                                   # some tiles failed (the rest committed)
    store = EmbeddingStore(db)
    failures = store.failures("mosaiks")
    assert failures and all("outside" in f["error"] for f in failures)
    assert "retried on the next run" in first.stdout
    assert _summary(first.stdout)["failed"] == str(len(failures))
    assert store.table("mosaiks").count_rows() == int(_summary(first.stdout)["computed"]) > 0
    second = run_cli(*args, db=db, check=False)
    assert second.returncode == 11                                  # every tile of this run failed
    assert _summary(second.stdout)["computed"] == "0"
    assert _summary(second.stdout)["failed"] == str(len(failures))
    listing = run_cli("failures", db=db)
    assert failures[0]["tile_id"] in listing.stdout


@pytest.mark.parametrize("args, needle", [
    (("ingest", "missing.geojson", "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE)), "region"),
    (("ingest", str(REGION), "--model", "nope", "--year", "2017", "--imagery", str(SCENE)), "model: unknown model 'nope'"),
    (("ingest", str(REGION), "--model", "[bold]x", "--year", "2017", "--imagery", str(SCENE)),
     "unknown model '[bold]x'"),  # printed as given, not as console markup
    (("ingest", str(REGION), "--model", "mosaiks", "--start", "2017-02-30", "--end", "2018-01-01",
      "--imagery", str(SCENE)), "start:"),
    (("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE), "--tiles", "hex:8"), "tiles:"),
    (("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE), "--tiles", "h3:12",
      "--max-tiles", "100"), "--max-tiles"),
    (("ingest", str(REGION), "--model", "mosaiks", "--year", "2017"), "imagery:"),
    (("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE),
      "--output", "cube"), "output:"),
    (("search", "--model", "mosaiks", "--near", "east,north"), "near:"),
    (("search", "--model", "mosaiks", "--text", "solar farm"), "text: model 'mosaiks' has no text tower"),
    (("ingest", str(REGION), "--model", "tessera", "--year", "2020", "--imagery", str(SCENE)),
     "imagery: 'tessera' is a precomputed product"),
])
def test_bad_input_exits_2_with_one_line(db, tmp_path, args, needle):
    proc = run_cli(*args, db=db, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_broken_geojson_exits_2(db, tmp_path):
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "Polygon", "coordinates": [[[12.5, 52.4], [12.6')
    proc = run_cli("ingest", str(broken), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE),
                   db=db, check=False)
    assert proc.returncode == 2 and "region" in proc.stderr and "line" in proc.stderr


def test_get_reads_through_the_store(db, tmp_path):
    args = ("get", "--model", "mosaiks", "--lon", "12.6", "--lat", "52.49", "--buffer-m", "300",
            "--year", "2017", "--imagery", str(SCENE))
    first = run_cli(*args, "--out", str(tmp_path / "v.npy"), db=db)
    assert "(computed)" in first.stdout
    second = run_cli(*args, "--out", str(tmp_path / "w.npy"), db=db)
    assert "(store)" in second.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), np.load(tmp_path / "w.npy"))
    grid = run_cli(*args, "--output", "grid", "--out", str(tmp_path / "g.nc"), db=db)
    assert "shape (256, 60, 60)" in grid.stdout or "shape (256, 61, 61)" in grid.stdout
    run_cli(*args, "--output", "grid", "--out", str(tmp_path / "g.tif"), db=db)
    import rasterio
    import xarray as xr
    from rasterio.crs import CRS

    with xr.open_dataset(tmp_path / "g.nc") as ds:
        arr = ds["embedding"]
        assert arr.dims == ("band", "y", "x") and arr.attrs["grid_mapping"] == "spatial_ref"
        side = arr.sizes["x"]
        left, top = float(arr.x[0]) - 5, float(arr.y[0]) + 5             # pixel centres at 10 m
    expected = (left, top - 10 * side, left + 10 * side, top)
    # GDAL / QGIS read the CF grid mapping and the GeoTIFF alike: same CRS and bounds.
    with rasterio.open(f"netcdf:{tmp_path / 'g.nc'}:embedding") as nc, rasterio.open(tmp_path / "g.tif") as tif:
        assert nc.crs == tif.crs == CRS.from_epsg(32633)
        assert nc.bounds == pytest.approx(expected) and tif.bounds == pytest.approx(expected)
        assert tif.count == nc.count == 256 and tif.descriptions[0] == "emb_000"
        assert tif.is_tiled and tif.overviews(1) is not None
        np.testing.assert_allclose(tif.read(1), nc.read(1)[::-1] if nc.transform.e > 0 else nc.read(1))


def test_search_stays_within_one_model_variant(db):
    base = (*INGEST, "--tiles", "h3:7", "--config", "num_filters=8")
    run_cli(*base, db=db)
    run_cli(*base, "--config", "seed=5", db=db)
    tiles = _expected_cells(7)
    assert EmbeddingStore(db).table("mosaiks_d16").count_rows() == 2 * len(tiles)  # one table per width
    results = {}
    for seed in (0, 5):
        out = run_cli("search", "--model", "mosaiks", "--near", "12.6,52.49", "-k", "50", "--format", "json",
                      "--config", "num_filters=8", "--config", f"seed={seed}", db=db)
        rows = json.loads(out.stdout)
        assert len(rows) == len(tiles) - 1  # every other tile once, the anchor excluded
        assert len({r["tile_id"] for r in rows}) == len(rows)
        results[seed] = {r["key"] for r in rows}
    assert not results[0] & results[5]


@pytest.mark.parametrize("args, needle", [
    (("tables", "--bogus"), "No such option"),
    (("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE), "--batch-size", "0"),
     "batch-size: must be an integer >= 1"),
])
def test_usage_errors_exit_2(db, args, needle):
    proc = run_cli(*args, db=db, check=False)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
