"""Spec validation, canonical serialisation and storage keys."""

from __future__ import annotations

import json

import pytest

from rsembed_db.specs import (
    BBox,
    EmbeddingRequest,
    ExportConfig,
    ExportModelRequest,
    ExportTarget,
    FetchSpec,
    GridCell,
    H3Cell,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    SpecError,
    TemporalSpec,
    resolve_sensor,
    spatial_from_dict,
)
from rsembed_db.specs.canonical import canonical_json

S2 = SensorSpec("local", ("B02", "B03", "B04", "B08"))


def _raises(field: str, fn, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        fn(*args, **kwargs)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"{field}:")
    return info.value


@pytest.mark.parametrize("args, field", [
    ((10, 0, 5, 1), "minlon"),
    ((0, 1, 1, 1), "minlat"),
    ((-181, 0, 1, 1), "minlon"),
    ((0, -91, 1, 1), "minlat"),
    ((0, 0, 181, 1), "maxlon"),
    ((0, 0, 1, 91), "maxlat"),
    (("a", 0, 1, 1), "minlon"),
    ((0, 0, float("nan"), 1), "maxlon"),
])
def test_bbox_invalid_fields(args, field):
    _raises(field, BBox, *args)


def test_bbox_crs_must_be_wgs84():
    err = _raises("crs", BBox, 0, 0, 1, 1, crs="EPSG:3857")
    assert err.allowed == ("EPSG:4326",)


@pytest.mark.parametrize("kwargs, field", [
    ({"lon": 200, "lat": 0, "buffer_m": 10}, "lon"),
    ({"lon": 0, "lat": -95, "buffer_m": 10}, "lat"),
    ({"lon": 0, "lat": 0, "buffer_m": 0}, "buffer_m"),
    ({"lon": 0, "lat": 0, "buffer_m": -5}, "buffer_m"),
])
def test_point_buffer_invalid(kwargs, field):
    _raises(field, PointBuffer, **kwargs)


def test_point_buffer_is_a_square_of_twice_the_buffer():
    geom = PointBuffer(12.6, 52.5, 500).lonlat_geometry()
    from pyproj import Geod
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geom)
    assert abs(abs(area) - 1000 * 1000) / 1e6 < 0.01  # UTM scale factor ~0.9996-1.0004


def test_h3_cell_accepts_int_and_hex():
    a, b = H3Cell("881f1d4b1bfffff"), H3Cell(0x881F1D4B1BFFFFF)
    assert a.hex == b.hex and a.int_id == b.int_id and a.res == 8
    _raises("cell", H3Cell, "not-a-cell")
    _raises("cell", H3Cell, 12345)


def test_grid_cell_validation_and_id():
    cell = GridCell("EPSG:32633", 330000, 5814000, 1000)
    assert cell.tile_id == "32633_1000m_330_5814"
    _raises("crs", GridCell, "EPSG:4326", 0, 0, 10)
    _raises("crs", GridCell, "EPSG:99999999", 0, 0, 10)
    _raises("size_m", GridCell, "EPSG:32633", 0, 0, 0)


def test_temporal_year_is_half_open_range():
    year = TemporalSpec.year(2022)
    assert (year.start_date.isoformat(), year.end_date.isoformat()) == ("2022-01-01", "2023-01-01")
    assert year.contains(year.start_date) and not year.contains(year.end_date)
    assert year.calendar_year == 2022 and TemporalSpec.range("2022-03-01", "2022-04-01").calendar_year is None


@pytest.mark.parametrize("start, end, field", [
    ("2022-13-01", "2023-01-01", "start"),
    ("2022-01-01", "yesterday", "end"),
    ("2022-06-01", "2022-06-01", "end"),
    ("2022-06-02", "2022-06-01", "end"),
    (20220101, "2023-01-01", "start"),
])
def test_temporal_range_invalid(start, end, field):
    _raises(field, TemporalSpec.range, start, end)


def test_temporal_year_invalid():
    _raises("year", TemporalSpec.year, 1800)
    _raises("year", TemporalSpec.year, "twenty")


@pytest.mark.parametrize("kwargs, field", [
    ({"collection": "", "bands": ("B02",)}, "collection"),
    ({"collection": "x", "bands": ()}, "bands"),
    ({"collection": "x", "bands": ("B02", "B02")}, "bands"),
    ({"collection": "x", "bands": ("B02",), "scale_m": 0}, "scale_m"),
    ({"collection": "x", "bands": ("B02",), "cloudy_pct": 101}, "cloudy_pct"),
    ({"collection": "x", "bands": ("B02",), "composite": "mean"}, "composite"),
    ({"collection": "x", "bands": ("B02",), "orbit": "UP"}, "orbit"),
])
def test_sensor_invalid(kwargs, field):
    _raises(field, SensorSpec, **kwargs)


def test_fetch_patches_default_and_conflicts_with_sensor():
    patched = resolve_sensor(S2, fetch=FetchSpec(scale_m=20, composite="mosaic"))
    assert (patched.scale_m, patched.composite, patched.bands) == (20, "mosaic", S2.bands)
    assert resolve_sensor(S2) is S2
    other = SensorSpec("local", ("B04",))
    assert resolve_sensor(S2, sensor=other) is other
    _raises("fetch", resolve_sensor, S2, sensor=other, fetch=FetchSpec(scale_m=20))
    _raises("fetch.composite", FetchSpec, composite="best")
    _raises("fetch.cloudy_pct", FetchSpec, cloudy_pct=-1)


def test_output_and_input_prep():
    assert OutputSpec.pooled().to_dict() == {"mode": "pooled", "pooling": "mean", "grid_orientation": "north_up"}
    assert OutputSpec.grid("native").grid_orientation == "native"
    _raises("output.pooling", OutputSpec.pooled, "median")
    _raises("output.grid_orientation", OutputSpec.grid, "south_up")
    assert InputPrepSpec.parse("tile").mode == "tile" and InputPrepSpec.parse(None).mode == "resize"
    _raises("input_prep", InputPrepSpec.parse, "crop")
    _raises("input_prep.tile_stride", InputPrepSpec, "tile", tile_size=224, tile_stride=112)
    _raises("input_prep.tile_size", InputPrepSpec, "tile", tile_size=0)
    _raises("input_prep.max_tiles", InputPrepSpec, "auto", max_tiles=0)


def test_export_specs():
    target = ExportTarget.per_item("out", names=["a", "b"])
    assert target.names == ["a", "b"] and target.mode == "per_item" and target.out_dir == "out"
    assert ExportTarget.combined(out_file="x.npz").out_file == "x.npz"
    _raises("config.format", ExportConfig, format="zip")
    _raises("target.names", ExportTarget.per_item, "out", names=["a", "a"])
    _raises("config.chunk_size", ExportConfig, chunk_size=0)
    _raises("config.save_embeddings", ExportConfig, save_inputs=False, save_embeddings=False)
    _raises("name", ExportModelRequest, "")


def _key(spatial, temporal, **kw) -> str:
    return EmbeddingRequest("mosaiks", spatial, temporal, sensor=S2, **kw).key


def test_year_and_equivalent_range_share_a_key():
    cell = H3Cell("881f1d4b1bfffff")
    assert _key(cell, TemporalSpec.year(2022)) == _key(cell, TemporalSpec.range("2022-01-01", "2023-01-01"))
    assert _key(cell, TemporalSpec.year(2022)) != _key(cell, TemporalSpec.year(2023))


def test_float_noise_does_not_change_a_key():
    t = TemporalSpec.year(2022)
    base = _key(BBox(12.5, 52.45, 12.6, 52.5), t)
    assert _key(BBox(12.5 + 4e-10, 52.45 - 3e-10, 12.6, 52.5 + 1e-10), t) == base
    assert _key(BBox(12.5 + 1e-6, 52.45, 12.6, 52.5), t) != base
    assert _key(PointBuffer(12.5, 52.4, 500.0), t) == _key(PointBuffer(12.5 + 2e-10, 52.4, 500), t)


def test_key_covers_what_changes_values_only():
    cell, t = H3Cell("881f1d4b1bfffff"), TemporalSpec.year(2022)
    base = _key(cell, t)
    assert _key(cell, t, output=OutputSpec.grid()) == base  # one row keeps vector + grid
    assert _key(cell, t, output=OutputSpec.pooled("max")) != base
    assert _key(cell, t, model_config={"seed": 1}) != base
    debug = SensorSpec("local", S2.bands, check_input=True, check_save_dir="/tmp/x")
    assert EmbeddingRequest("mosaiks", cell, t, sensor=debug).key == base


def test_json_round_trips():
    for spatial in (BBox(1, 2, 3, 4), PointBuffer(12.5, 52.4, 250), H3Cell("881f1d4b1bfffff"),
                    GridCell("EPSG:32633", 330000, 5814000, 500)):
        data = json.loads(canonical_json(spatial.to_dict()))
        assert spatial_from_dict(data) == spatial or spatial_from_dict(data).to_dict() == spatial.to_dict()
    t = TemporalSpec.range("2022-06-01", "2022-09-01")
    assert TemporalSpec.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert SensorSpec.from_dict(json.loads(json.dumps(S2.to_dict()))) == S2
    assert OutputSpec.from_dict(OutputSpec.grid().to_dict()) == OutputSpec.grid()
    _raises("spatial.kind", spatial_from_dict, {"kind": "circle"})
    _raises("sensor.colour", SensorSpec.from_dict, {"collection": "x", "bands": ["B02"], "colour": 1})
