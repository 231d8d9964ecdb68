"""export_batch with MOSAIKS over the bundled scene: formats, manifests, resume, shared fetches."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import xarray as xr

from rsembed_db.api import export_batch, get_embedding
from rsembed_db.sources.local import LocalImagerySource
from rsembed_db.specs import (
    ExportConfig,
    ExportModelRequest,
    ExportTarget,
    OutputSpec,
    PointBuffer,
    SpecError,
    TemporalSpec,
)
from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.chip_grid import chip_grid_for
from tests.conftest import REGION, SCENE, run_cli

YEAR = TemporalSpec.year(2017)
POINTS = [PointBuffer(12.55, 52.48, 150), PointBuffer(12.60, 52.49, 150), PointBuffer(12.65, 52.50, 150)]
OUTSIDE = PointBuffer(13.5, 52.5, 150)
SMALL = {"num_filters": 8}
MODELS = [ExportModelRequest("mosaiks", model_config=SMALL),
          ExportModelRequest("mosaiks", model_config={**SMALL, "seed": 1})]


@pytest.fixture
def fetches(monkeypatch):
    """Count the real (uncached) fetches of the local source."""
    calls: list[int] = []
    original = LocalImagerySource.fetch

    def counted(self, grid, temporal, sensor):
        calls.append(1)
        return original(self, grid, temporal, sensor)

    monkeypatch.setattr(LocalImagerySource, "fetch", counted)
    return calls


def run(target, config=ExportConfig(save_inputs=False), **kwargs):
    return export_batch(spatials=kwargs.pop("spatials", POINTS), temporal=YEAR,
                        models=kwargs.pop("models", MODELS), target=target, config=config,
                        imagery=SCENE, **kwargs)


def test_combined_npz_with_inputs_and_one_fetch_per_chip(tmp_path, fetches):
    manifest = run(ExportTarget.combined(tmp_path / "run"), ExportConfig(save_inputs=True))
    path = tmp_path / "run.npz"
    assert manifest["path"] == str(path) and manifest["status"] == "ok"
    assert len(fetches) == 3                  # both models share each chip
    assert manifest["fetch_stats"] == {"planned": 6, "done": 3, "failed": 0, "cached": 3, "retries": 0}
    data = np.load(path)
    assert data["names"].tolist() == ["item_00000", "item_00001", "item_00002"]
    assert data["embedding__mosaiks"].shape == (3, 16) and data["embedding__mosaiks_2"].shape == (3, 16)
    assert not np.array_equal(data["embedding__mosaiks"], data["embedding__mosaiks_2"])   # other seed
    side = chip_grid_for(POINTS[0], 10).width
    assert data["input__mosaiks"].shape == (3, 4, side, side)
    assert data["input_bands__mosaiks"].tolist() == ["B02", "B03", "B04", "B08"]
    one = get_embedding("mosaiks", spatial=POINTS[1], temporal=YEAR, imagery=SCENE, model_config=SMALL)
    assert np.array_equal(data["embedding__mosaiks"][1], one.data)
    assert data["key__mosaiks"][1] == one.meta["key"]


def test_manifest_records_keys_models_specs_versions_timings(tmp_path):
    manifest = run(ExportTarget.combined(tmp_path / "run.npz"))
    on_disk = json.loads((tmp_path / "run.manifest.json").read_text())
    assert on_disk["fingerprint"] == manifest["fingerprint"] and len(manifest["fingerprint"]) == 64
    assert [m["label"] for m in on_disk["models"]] == ["mosaiks", "mosaiks_2"]
    assert on_disk["models"][1]["model_config"]["seed"] == 1
    assert on_disk["models"][0]["sensor"]["bands"] == ["B02", "B03", "B04", "B08"]
    assert on_disk["specs"]["temporal"] == {"start": "2017-01-01", "end": "2018-01-01"}
    assert {"python", "numpy", "torch", "rsembed-db"} <= set(on_disk["versions"])
    assert {"fetch_s", "embed_s", "write_s"} <= set(on_disk["timings"])
    item = on_disk["items"][0]
    assert item["spatial"]["kind"] == "point_buffer" and len(item["models"]["mosaiks"]["key"]) == 64


def test_resume_skips_matching_outputs_and_redoes_changed_ones(tmp_path, fetches):
    target = ExportTarget.combined(tmp_path / "run")
    first = run(target)
    mtime = (tmp_path / "run.npz").stat().st_mtime_ns
    fetches.clear()
    again = run(target, ExportConfig(save_inputs=False, resume=True))
    assert again["resume_skipped"] is True and fetches == []
    assert again["fingerprint"] == first["fingerprint"]
    assert (tmp_path / "run.npz").stat().st_mtime_ns == mtime
    changed = run(target, ExportConfig(save_inputs=False, resume=True), models=["mosaiks"])
    assert "resume_skipped" not in changed and changed["fingerprint"] != first["fingerprint"]
    assert len(fetches) == 3


def test_per_item_netcdf_resumes_only_missing_items(tmp_path, fetches):
    target = ExportTarget.per_item(tmp_path / "items", names=["a", "b", "c"])
    netcdf = ExportConfig(format="netcdf", save_inputs=False)
    manifests = run(target, netcdf, models=MODELS[:1])
    assert [m["n_items"] for m in manifests] == [1, 1, 1]
    with xr.open_dataset(tmp_path / "items" / "b.nc") as ds:
        assert ds["embedding__mosaiks"].shape == (1, 16)
        assert ds["item"].values.tolist() == ["b"]
    (tmp_path / "items" / "b.manifest.json").unlink()
    fetches.clear()
    again = run(target, ExportConfig(format="netcdf", save_inputs=False, resume=True), models=MODELS[:1])
    assert [m.get("resume_skipped", False) for m in again] == [True, False, True]
    assert len(fetches) == 1


def test_parquet_rows_per_item_and_model(tmp_path):
    run(ExportTarget.combined(tmp_path / "run"), ExportConfig(format="parquet", save_inputs=True))
    table = pq.read_table(tmp_path / "run.parquet").to_pylist()
    assert len(table) == 6
    assert {(row["item"], row["model"]) for row in table} == {(i, m) for i in range(3)
                                                              for m in ("mosaiks", "mosaiks_2")}
    row = table[0]
    assert len(row["embedding"]) == 16 and row["embedding_shape"] == [16]
    side = chip_grid_for(POINTS[0], 10).width
    assert row["input_shape"] == [4, side, side] and len(row["input"]) == 4 * side * side


def test_store_format_writes_rows_and_resumes(tmp_path, fetches):
    store = EmbeddingStore(tmp_path / "db")
    target = ExportTarget.combined(tmp_path / "exports" / "run")
    to_store = ExportConfig(format="store", save_inputs=False)
    manifest = run(target, to_store, store=store, models=MODELS[:1])
    assert manifest["path"] == store.uri
    assert (tmp_path / "exports" / "run.manifest.json").exists()
    table = manifest["models"][0]["table"]
    assert table == "mosaiks_d16"
    for item in manifest["items"]:
        assert store.get(table, item["models"]["mosaiks"]["key"]) is not None
    assert run(target, ExportConfig(format="store", save_inputs=False, resume=True), store=store,
               models=MODELS[:1])["resume_skipped"]
    fetches.clear()
    npz = run(ExportTarget.combined(tmp_path / "from_store"), store=store, models=MODELS[:1])
    assert fetches == [] and all(i["models"]["mosaiks"]["from_store"] for i in npz["items"])


def test_failed_rois_are_recorded_not_fatal(tmp_path):
    manifest = run(ExportTarget.combined(tmp_path / "run"), spatials=[POINTS[0], OUTSIDE], models=MODELS[:1])
    assert manifest["status"] == "partial" and manifest["summary"] == {"total": 2, "ok": 1, "failed": 1}
    failed = manifest["items"][1]["models"]["mosaiks"]
    assert failed["ok"] is False and "outside the footprint" in failed["error"]
    data = np.load(tmp_path / "run.npz")
    assert data["ok__mosaiks"].tolist() == [True, False]
    assert np.isnan(data["embedding__mosaiks"][1]).all()
    again = run(ExportTarget.combined(tmp_path / "run"), ExportConfig(save_inputs=False, resume=True),
                spatials=[POINTS[0], OUTSIDE], models=MODELS[:1])
    assert "resume_skipped" not in again      # partial outputs are redone


def test_grid_output_exports_grids_and_transforms(tmp_path):
    run(ExportTarget.combined(tmp_path / "grid"), output=OutputSpec.grid(), models=MODELS[:1])
    data = np.load(tmp_path / "grid.npz")
    side = chip_grid_for(POINTS[0], 10).width
    assert data["embedding__mosaiks"].shape == (3, 16, side, side)
    assert data["transform__mosaiks"].shape == (3, 6) and data["transform__mosaiks"][0, 0] == 10.0


def test_invalid_targets(tmp_path):
    with pytest.raises(SpecError, match="store"):
        run(ExportTarget.combined(tmp_path / "x"), ExportConfig(format="store"))
    with pytest.raises(SpecError, match="target.names"):
        run(ExportTarget.per_item(tmp_path / "x", names=["only-one"]))


def test_cli_export_batch_per_item_and_resume(tmp_path):
    args = ("export-batch", str(REGION), "--model", "mosaiks", "--out", str(tmp_path / "items"),
            "--per-item", "--format", "npz", "--year", "2017", "--tiles", "grid:4000",
            "--imagery", str(SCENE), "--config", "num_filters=4")
    first = run_cli(*args)
    assert "0 skipped by resume" in first.stdout and "fetches:" in first.stdout
    files = sorted((tmp_path / "items").glob("*.npz"))
    assert files and len(list((tmp_path / "items").glob("*.manifest.json"))) == len(files)
    again = run_cli(*args, "--resume")
    assert f"({len(files)} skipped by resume)" in again.stdout
    assert all(oct(f.stat().st_mode & 0o777) == oct(0o666 & ~_umask()) for f in files)   # not 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cli_export_batch_reads_through_rsembed_db(tmp_path):
    """With $RSEMBED_DB set, stored tiles are read back, not recomputed; a progress bar shows."""
    db = tmp_path / "db"
    common = ("--model", "mosaiks", "--year", "2017", "--tiles", "h3:8", "--imagery", str(SCENE))
    run_cli("ingest", str(REGION), *common, db=db)
    out = run_cli("export-batch", str(REGION), *common, "--out", str(tmp_path / "run"), db=db)
    manifest = json.loads((tmp_path / "run.manifest.json").read_text())
    flags = [m["models"]["mosaiks"]["from_store"] for m in manifest["items"]]
    assert len(flags) == 54 and all(flags) and manifest["fetch_stats"]["done"] == 0
    assert "export" in out.stderr and "54/54" in out.stderr


def test_cli_ingest_shows_fetch_counters(tmp_path):
    proc = run_cli("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--tiles", "grid:4000",
                   "--source", f"local:{SCENE}", "--config", "num_filters=4", db=tmp_path / "db")
    assert "fetched" in proc.stderr  # the progress line
    summary = next(line for line in proc.stdout.splitlines() if "imagery fetches" in line)
    assert "0 failed" in summary and "done" in summary
