"""The reference vocabulary as documented (rs-embed "API Specs & Data Structures"), and keys
that stay what earlier versions stored."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import rsembed_db
from rsembed_db import (
    BBox,
    ExportConfig,
    ExportLayout,
    ExportModelRequest,
    ExportTarget,
    FetchSpec,
    H3Cell,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    SpecError,
    TemporalSpec,
    get_embedding,
    get_embeddings_batch,
)
from rsembed_db.producers.catalog import make_producer

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "examples" / "data"
CELLS = ("881f1c6481fffff", "891f1c64803ffff")
# Keys computed by rsembed-db 0.1.0 (commit 64fbc92) for the same requests in its API forms.
OLD_KEYS = {
    "mosaiks/h3/881f1c6481fffff/year": "88ad0de6e68ace2a8040e12f3e4a5c3166c3bae2ebd2fd3bad788032598c5895",
    "mosaiks/h3/881f1c6481fffff/max": "4a784eba666815e120772812d1432f650201dc28ee0fec6822627a0118d21398",
    "mosaiks/h3/891f1c64803ffff/year": "658f97ffc13976430c231ba59dfaa456d1a796113ae55745e9531953f3f8e577",
    "mosaiks/h3/891f1c64803ffff/max": "4944cc81fe8b64a5a0a376ef04573caf8d7eab17970aa93fa5fd219e5eeb77c4",
    "mosaiks/pb": "208d1df060a4fa9d56ea6eb8c683ac72dca8e0d25fdf12fc11c8de9a1b643148",
    "mosaiks/bbox": "f2e52383dfdec9a66d821f302548163a36f3829df1b61ec1ef2c2c59a78aacda",
    "mosaiks/grid": "34c36d6e54ce0573b74e0753561830fa6d1d98efec2f58a24fc2c968a3b7d8fd",
    "mosaiks/seed3": "09cc1b598ccd50f15a36f6bf48790f43a0e468b5e66fcecc50a0e165d2104413",
    "tessera/h3": "a81e10876c483df9b73d9a75997b4241ebd6de156107c42c3eaaf81539e13ebd",
    "remoteclip/h3": "db4d14f4a8d84cce4576021c3cf1726b18a4ec67329bd0a89decfb6afce424ee",
}
YEAR = TemporalSpec.year(2017)


def test_every_reference_top_level_name_is_importable_and_cheap():
    reference = ["BBox", "PointBuffer", "TemporalSpec", "SensorSpec", "FetchSpec", "OutputSpec", "InputPrepSpec",
                 "ExportConfig", "ExportLayout", "ExportModelRequest", "ExportTarget", "ModelConfig", "Model",
                 "BatchExporter", "get_embedding", "get_embeddings_batch", "list_models", "describe_model",
                 "reset_runtime", "export_batch", "load_export", "ExportResult", "ModelResult",
                 "inspect_model_input", "inspect_provider_patch", "inspect_gee_patch", "enable_pretty_warnings",
                 "disable_pretty_warnings", "Embedding", "__version__"]
    assert all(callable(getattr(rsembed_db, name)) or name == "__version__" for name in reference)
    # A fresh interpreter: importing the package loads neither torch nor lancedb nor xarray.
    # The same for the CLI's command table (what `rsembed-db --help` loads before parsing).
    for module in ("rsembed_db", "rsembed_db.cli.app"):
        code = (f"import sys, {module}; heavy = [m for m in ('torch', 'lancedb', 'xarray', 'rasterio') "
                "if m in sys.modules]; print(heavy)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[]", (module, out)


def test_input_prep_constructors():
    assert InputPrepSpec.resize() == InputPrepSpec("resize")
    assert InputPrepSpec.tile() == InputPrepSpec("tile") and InputPrepSpec.tile(tile_size=224).tile_size == 224
    auto = InputPrepSpec.auto(max_tiles=4)
    assert (auto.mode, auto.max_tiles, auto.pad_edges) == ("auto", 4, True)
    assert InputPrepSpec() == InputPrepSpec(mode="resize", tile_size=None, tile_stride=None, max_tiles=9, pad_edges=True)
    assert InputPrepSpec.parse("TILE").mode == "tile"
    with pytest.raises(SpecError, match="input_prep.tile_stride"):
        InputPrepSpec.tile(tile_size=224, tile_stride=112)


def test_temporal_spec_has_the_documented_fields():
    year = TemporalSpec(mode="year", year=2022)
    assert year == TemporalSpec.year(2022) and TemporalSpec.year(2022).year == 2022
    assert (year.mode, year.year, year.start, year.end) == ("year", 2022, None, None)
    window = TemporalSpec(mode="range", start="2022-06-01", end="2022-09-01")
    assert window == TemporalSpec.range("2022-06-01", "2022-09-01")
    assert (window.mode, window.year, window.start, window.end) == ("range", None, "2022-06-01", "2022-09-01")
    assert TemporalSpec.range(dt.date(2022, 6, 1), dt.date(2022, 9, 1)).start == "2022-06-01"  # ISO strings
    assert (year.start_date, year.end_date) == (dt.date(2022, 1, 1), dt.date(2023, 1, 1))     # typed accessors
    assert year.to_dict() == TemporalSpec.range("2022-01-01", "2023-01-01").to_dict()       # one key
    for bad, field in [({"mode": "year"}, "year"), ({"mode": "range", "start": "2022-01-01"}, "end"),
                       ({"mode": "decade"}, "temporal.mode"), ({"mode": "range", "start": "2022-02-30",
                                                               "end": "2022-03-01"}, "start"),
                       ({"mode": "range", "start": "2022-03-01", "end": "2022-03-01"}, "end")]:
        with pytest.raises(SpecError) as err:
            TemporalSpec(**bad)
        assert err.value.field == field


def test_sensor_and_fetch_accept_documented_forms():
    sensor = SensorSpec("COPERNICUS/S1_GRD", ("VV", "VH"), orbit="descending")
    assert sensor.orbit == "DESCENDING" and (sensor.scale_m, sensor.cloudy_pct) == (10, 30)
    assert SensorSpec("c", ("B4",), scale_m=20, cloudy_pct=10).to_dict()["scale_m"] == 20.0
    assert SensorSpec("c", ("B4",)).to_dict() == SensorSpec("c", ("B4",), scale_m=10.0, cloudy_pct=30.0).to_dict()
    assert "s1_require_iw" not in sensor.to_dict()                       # defaults keep old keys
    assert SensorSpec("c", ("VV",), s1_require_iw=False).to_dict()["s1_require_iw"] is False
    assert FetchSpec(scale_m=30, cloudy_pct=10).scale_m == 30
    with pytest.raises(SpecError, match="orbit"):
        SensorSpec("c", ("VV",), orbit="sideways")


def test_export_vocabulary():
    combined = ExportTarget.combined("exports/run")
    assert (combined.layout, combined.out_file, combined.out_dir) == ("combined", "exports/run", None)
    per_item = ExportTarget.per_item("exports", names=["p1", "p2"])
    assert (per_item.layout, per_item.out_dir, per_item.names) == ("per_item", "exports", ["p1", "p2"])
    assert ExportTarget(ExportLayout.COMBINED, out_file="x.npz").layout == "combined"
    config = ExportConfig(save_inputs=True, save_embeddings=True, chunk_size=32, num_workers=8, resume=True)
    assert (config.format, config.save_manifest, config.max_retries, config.show_progress) == ("npz", True, 0, True)
    assert ExportConfig() == ExportConfig(format="npz", save_inputs=True, save_embeddings=True, chunk_size=16,
                                          num_workers=8, resume=False)
    request = ExportModelRequest.configure("thor", variant="large")
    assert (request.name, request.model_config) == ("thor", {"variant": "large"})
    s1 = SensorSpec("COPERNICUS/S1_GRD", ("VV", "VH"))
    assert ExportModelRequest("terrafm", modality="s1", sensor=s1).sensor is s1
    assert ExportModelRequest("remoteclip") == ExportModelRequest("remoteclip", None, None, None, None)
    with pytest.raises(SpecError, match="fetch"):
        ExportModelRequest("x", sensor=s1, fetch=FetchSpec(scale_m=30))


def test_keys_of_stored_data_do_not_change():
    mosaiks = make_producer("mosaiks", imagery=SCENE)
    old_range = TemporalSpec.range(dt.date(2017, 1, 1), dt.date(2018, 1, 1))
    for cell in CELLS:
        assert mosaiks.request(H3Cell(cell), YEAR).key == OLD_KEYS[f"mosaiks/h3/{cell}/year"]
        assert mosaiks.request(H3Cell(cell), old_range).key == OLD_KEYS[f"mosaiks/h3/{cell}/year"]
        assert mosaiks.request(H3Cell(cell), TemporalSpec(mode="year", year=2017)).key == \
            OLD_KEYS[f"mosaiks/h3/{cell}/year"]
        assert mosaiks.request(H3Cell(cell), YEAR, OutputSpec.pooled("max")).key == OLD_KEYS[f"mosaiks/h3/{cell}/max"]
    assert mosaiks.request(PointBuffer(12.6, 52.49, 500), YEAR, input_prep="resize").key == OLD_KEYS["mosaiks/pb"]
    assert mosaiks.request(PointBuffer(12.6, 52.49, 500), YEAR).key == OLD_KEYS["mosaiks/pb"]   # new default
    assert mosaiks.request(BBox(12.55, 52.47, 12.6, 52.5), TemporalSpec.range("2017-02-01", "2017-03-01")).key == \
        OLD_KEYS["mosaiks/bbox"]
    assert mosaiks.request(PointBuffer(12.6, 52.49, 300), YEAR, OutputSpec.grid()).key == OLD_KEYS["mosaiks/grid"]
    seeded = make_producer("mosaiks", imagery=SCENE, model_config={"seed": 3})
    assert seeded.request(H3Cell(CELLS[0]), YEAR).key == OLD_KEYS["mosaiks/seed3"]
    assert make_producer("tessera").request(H3Cell(CELLS[0]), TemporalSpec.year(2024)).key == OLD_KEYS["tessera/h3"]
    remoteclip = make_producer("remoteclip", imagery=SCENE)          # a chip smaller than one tile
    for prep in (None, "resize", "tile", "auto", InputPrepSpec.tile(tile_size=224)):
        assert remoteclip.request(H3Cell(CELLS[1]), YEAR, input_prep=prep).key == OLD_KEYS["remoteclip/h3"]


def test_ingest_with_the_old_forms_then_read_every_key_back(tmp_path):
    db = tmp_path / "db"
    subprocess.run([sys.executable, "-m", "rsembed_db", "ingest", str(ROOT / "examples" / "region.geojson"),
                    "--model", "mosaiks", "--tiles", "h3:8", "--year", "2017", "--imagery", str(SCENE),
                    "--db", str(db)], check=True, capture_output=True, text=True)
    from rsembed_db.store import EmbeddingStore

    stored = set(EmbeddingStore(db).table("mosaiks").to_arrow()["key"].to_pylist())
    assert OLD_KEYS["mosaiks/h3/881f1c6481fffff/year"] in stored
    assert len(stored) == 54
    back = get_embedding("mosaiks", spatial=H3Cell(CELLS[0]), temporal=TemporalSpec(mode="year", year=2017),
                         store=db, imagery=SCENE)
    assert back.meta["from_store"] and back.meta["key"] == OLD_KEYS["mosaiks/h3/881f1c6481fffff/year"]
    assert (back.meta["type"], back.meta["output"], back.meta["backend"]) == ("on_the_fly", "pooled", "local")


def test_get_embedding_signature_and_model_keywords():
    point = PointBuffer(12.6, 52.49, 300)
    by_keyword = get_embedding("mosaiks", spatial=point, temporal=YEAR, imagery=SCENE, seed=3, backend="auto",
                               device="cpu", input_prep=None)
    by_mapping = get_embedding("mosaiks", spatial=point, temporal=YEAR, imagery=SCENE, model_config={"seed": 3})
    assert np.array_equal(by_keyword.data, by_mapping.data) and by_keyword.meta["key"] == by_mapping.meta["key"]
    with pytest.raises(SpecError) as err:
        get_embedding("mosaiks", spatial=point, temporal=YEAR, imagery=SCENE, seed=3, model_config={"seed": 4})
    assert err.value.field == "seed"
    with pytest.raises(SpecError) as err:
        get_embedding("mosaiks", spatial=point, temporal=YEAR, imagery=SCENE, device="cuda")
    assert err.value.field == "device"
    with pytest.raises(SpecError) as err:
        get_embedding("mosaiks", spatial=point, temporal=YEAR, imagery=SCENE, backend="planet")
    assert err.value.field == "backend"
    batch = get_embeddings_batch("mosaiks", spatials=[point, PointBuffer(12.61, 52.49, 300)], temporal=YEAR,
                                 imagery=SCENE)
    assert [e.data.shape for e in batch] == [(256,), (256,)]


def test_temporal_none_resolves_to_the_documented_default():
    point = PointBuffer(12.6, 52.49, 300)
    with pytest.warns(UserWarning, match="2022-06-01..2022-09-01"):
        request = make_producer("mosaiks", imagery=SCENE).request(point, None)
    assert request.temporal == TemporalSpec.range("2022-06-01", "2022-09-01")
    with pytest.warns(UserWarning, match="tessera defaults to year 2021"):
        request = make_producer("tessera").request(H3Cell(CELLS[0]), None)
    assert request.temporal == TemporalSpec.year(2021)
    for product in ("gse", "copernicus"):
        with pytest.raises(SpecError) as err:
            make_producer(product).request(H3Cell(CELLS[0]), None)
        assert err.value.field == "temporal"


def test_a_range_window_on_an_annual_product_reads_the_year_it_starts_in():
    tessera = make_producer("tessera")
    with pytest.warns(UserWarning, match="reads year 2022"):
        request = tessera.request(H3Cell(CELLS[0]), TemporalSpec.range("2022-06-01", "2022-09-01"))
    assert request.temporal == TemporalSpec.year(2022)
    assert request.key == tessera.request(H3Cell(CELLS[0]), TemporalSpec.year(2022)).key
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # a calendar-year range needs no warning
        assert tessera.request(H3Cell(CELLS[0]), TemporalSpec.range("2022-01-01", "2023-01-01")).key == request.key
    with pytest.raises(SpecError) as err:
        tessera.request(H3Cell(CELLS[0]), TemporalSpec.range("2012-06-01", "2012-09-01"))
    assert err.value.field == "year"


def test_describe_model_reads_like_the_reference():
    desc = rsembed_db.describe_model("mosaiks")
    assert desc["type"] == "on_the_fly" and desc["output"] == ["pooled", "grid"]
    assert desc["defaults"]["scale_m"] == 10 and desc["dim"] == desc.dim == 256
    assert rsembed_db.describe_model("tessera")["temporal"] == {"mode": "year"}
    model = rsembed_db.Model("mosaiks", imagery=SCENE)
    assert model.describe()["type"] == "on_the_fly"
    assert model.get_embedding(PointBuffer(12.6, 52.49, 300), temporal=YEAR).data.shape == (256,)
