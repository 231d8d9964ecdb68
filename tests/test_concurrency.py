"""Concurrent writers end with every key stored once; ``check`` finds and ``--repair`` removes duplicates.

Real processes (``rsembed-db ingest``) over overlapping sub-regions of the example region,
small commits so that they interleave, several rounds; duplicates for ``check --repair``
are written on purpose through the Lance API, as a pre-fix writer would have left them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import shapely
from shapely.geometry import box, mapping

from rsembed_db.store import EmbeddingStore
from rsembed_db.store.check import check_table
from rsembed_db.store.commit import RETRY_HINT
from rsembed_db.tiling.plan import tile_region
from rsembed_db.tiling.region import load_region
from tests.conftest import REGION, SCENE, run_cli

INGEST = ["--model", "mosaiks", "--tiles", "h3:8", "--year", "2017", "--imagery", str(SCENE),
          "--commit-every", "1", "--batch-size", "2", "--workers", "2"]
ROUNDS = 2  # each round a fresh database; kept small: every process starts the CLI (~5 s of CPU)


def _subregions(tmp_path: Path, n: int) -> list[Path]:
    """``n`` overlapping pieces (halves or quadrants grown by half) of the middle of the
    example region (40% of its width and height: 11 H3 cells at resolution 8)."""
    region = load_region(REGION)
    minx, miny, maxx, maxy = region.bounds
    minx, maxx = minx + 0.3 * (maxx - minx), maxx - 0.3 * (maxx - minx)
    miny, maxy = miny + 0.3 * (maxy - miny), maxy - 0.3 * (maxy - miny)
    region = shapely.intersection(region, box(minx, miny, maxx, maxy))
    w, h = maxx - minx, maxy - miny
    if n == 2:
        boxes = [box(minx, miny, minx + 0.75 * w, maxy), box(minx + 0.25 * w, miny, maxx, maxy)]
    else:
        boxes = [box(minx + i * 0.25 * w, miny + j * 0.25 * h, minx + (i * 0.25 + 0.75) * w, miny + (j * 0.25 + 0.75) * h)
                 for i in (0, 1) for j in (0, 1)]
    paths = []
    for i, piece in enumerate(boxes):
        path = tmp_path / f"part{n}_{i}.geojson"
        path.write_text(json.dumps({"type": "Feature", "properties": {},
                                    "geometry": mapping(shapely.intersection(region, piece))}))
        paths.append(path)
    return paths


def _planned(regions: list[Path]) -> int:
    """Distinct tiles of all pieces together: the keys the ingests must store."""
    return len({cell.hex for path in regions for cell in tile_region(load_region(path), "h3:8")})


def _ingest_together(db: Path, regions: list[Path]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "COLUMNS": "200", "RSEMBED_DB": str(db)}
    procs = [subprocess.Popen([sys.executable, "-m", "rsembed_db", "ingest", str(r), *INGEST], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in regions]
    done = []
    for proc, region in zip(procs, regions):
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _rows_and_keys(db: Path) -> tuple[int, int]:
    keys = lance.dataset(str(db / "mosaiks.lance")).to_table(columns=["key"])["key"]
    return len(keys), len(pc.unique(keys))


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_ingests_store_every_key_exactly_once(tmp_path, writers):
    regions = _subregions(tmp_path, writers)
    planned = _planned(regions)
    assert planned == 11  # the pieces overlap: most keys are contested by 2 or 4 writers
    figures = []
    for round_ in range(ROUNDS):
        db = tmp_path / f"db{writers}_{round_}"
        procs = _ingest_together(db, regions)
        for proc, region in zip(procs, regions):
            # Every process succeeds, or says in one line to run again (exit 9, WriteConflict).
            assert proc.returncode in (0, 9), proc.stderr[-2000:]
            if proc.returncode == 9:
                assert RETRY_HINT in proc.stderr and "Traceback" not in proc.stderr
                run_cli("ingest", str(region), *INGEST, db=db)
            else:
                assert "Traceback" not in proc.stderr
        rows, keys = _rows_and_keys(db)
        figures.append((rows, keys, planned, [p.returncode for p in procs]))
        assert rows == keys == planned, figures
        report = check_table(EmbeddingStore(db), "mosaiks")
        assert (report.duplicate_keys, report.dangling_versions) == (0, [])
    check = run_cli("check", "--format", "json", db=db)
    assert all(t["healthy"] for t in json.loads(check.stdout)["tables"])
    print(f"{writers} writers, (rows, distinct keys, planned, exit codes) per round: {figures}")


def _duplicate_rows(db: Path, count: int) -> pa.Table:
    """``count`` stored rows again, newer (created_at + 1 h) and with a changed vector, appended
    through the Lance API as a writer without conflict checks would have."""
    dataset = lance.dataset(str(db / "mosaiks.lance"))
    rows = dataset.to_table(limit=count)
    newer = pc.add(rows["created_at"], pa.scalar(dt.timedelta(hours=1), pa.duration("us")))
    vectors = np.stack(rows["vector"].to_numpy(zero_copy_only=False)) + 1.0
    rows = rows.set_column(rows.schema.get_field_index("created_at"), "created_at", newer.cast(rows["created_at"].type))
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1])
    rows = rows.set_column(rows.schema.get_field_index("vector"), "vector", vectors)
    lance.write_dataset(rows, str(db / "mosaiks.lance"), mode="append")
    return rows


def test_check_reports_and_repair_keeps_the_newest_row(tmp_path, db):
    run_cli("ingest", str(_subregions(tmp_path, 2)[0]), *INGEST, db=db)
    clean = run_cli("check", db=db)
    assert "mosaiks" in clean.stdout
    rows_before, keys = _rows_and_keys(db)
    newer = _duplicate_rows(db, 5)
    # An index build killed before its commit leaves a directory no version references.
    orphan = db / "mosaiks.lance" / "_indices" / "00000000-dead-beef-0000-000000000000"
    orphan.mkdir()
    (orphan / "index.idx").write_bytes(b"partial")

    found = run_cli("check", "--format", "json", db=db, check=False)
    assert found.returncode == 1
    report = next(t for t in json.loads(found.stdout)["tables"] if t["table"] == "mosaiks")
    assert (report["rows"], report["duplicate_keys"], report["extra_rows"]) == (rows_before + 5, 5, 5)
    assert report["orphaned_index_files"] == [f"_indices/{orphan.name}"]
    assert not report["healthy"]
    versions = len(lance.dataset(str(db / "mosaiks.lance")).versions())

    fsck = run_cli("fsck", "--repair", "--format", "json", db=db)
    report = next(t for t in json.loads(fsck.stdout)["tables"] if t["table"] == "mosaiks")
    assert (report["rows"], report["removed_rows"], report["healthy"]) == (keys, 5, True)
    dataset = lance.dataset(str(db / "mosaiks.lance"))
    assert len(dataset.versions()) == versions + 1  # one atomic commit
    assert _rows_and_keys(db) == (keys, keys)
    kept = {r["key"]: r for r in dataset.to_table(filter=f"key IN ({', '.join(repr(k) for k in newer['key'].to_pylist())})")
            .to_pylist()}
    for row in newer.to_pylist():  # the newest row of each key is the one kept
        assert kept[row["key"]]["created_at"] == row["created_at"]
        assert kept[row["key"]]["vector"] == pytest.approx(row["vector"])
    assert run_cli("check", db=db).returncode == 0


def test_check_reports_a_version_whose_files_are_gone(tmp_path, db):
    run_cli("ingest", str(_subregions(tmp_path, 4)[0]), *INGEST, db=db)
    uri = str(db / "mosaiks.lance")
    extra = _duplicate_rows(db, 2)
    appended = lance.dataset(uri).version
    data_file = lance.dataset(uri).get_fragments()[-1].metadata.files[0].path
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    lance.dataset(uri).delete(f"key IN ({', '.join(repr(k) for k in extra['key'].to_pylist())})"
                              f" AND created_at > TIMESTAMP '{later:%Y-%m-%d %H:%M:%S}'")
    (db / "mosaiks.lance" / "data" / data_file).unlink()  # the appended fragment, no longer in the latest version
    found = run_cli("check", "--format", "json", db=db, check=False)
    report = next(t for t in json.loads(found.stdout)["tables"] if t["table"] == "mosaiks")
    assert found.returncode == 1 and [v["version"] for v in report["dangling_versions"]] == [appended]
    assert data_file in report["dangling_versions"][0]["problem"]
    assert report["duplicate_keys"] == 0  # the latest version is whole
