"""Property-based fuzz of the spec vocabulary: any input gives a spec or a SpecError, nothing else.

Each constructor (and each ``from_dict`` / ``parse``) gets arbitrary values: plausible ones
near the edges (dates out of range, NaN, huge numbers, resolution 16...) mixed with values
of every other type. A success must also give its canonical form (``to_dict``), which the
storage key hashes. Examples are derandomized, so a run is reproducible.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsembed_db.errors import SpecError
from rsembed_db.specs.export import ExportConfig, ExportModelRequest, ExportTarget, ModelConfig
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.spatial import BBox, GridCell, H3Cell, PointBuffer, spatial_from_dict
from rsembed_db.specs.temporal import TemporalSpec

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=8),
    st.sampled_from(["", " ", "nan", "inf", "-1", "0", "1e309", "\x00", "\ud800", "9" * 40]))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                    st.sampled_from([0, -0.0, 1e-300, 1e308, 180, -180, 90, -90, 180.0000001, 2**63]))
dates = st.one_of(st.dates().map(str), st.sampled_from(
    ["0000-01-01", "0001-01-01", "9999-12-31", "10000-01-01", "2022-02-30", "2022-13-01", "-5000-01-01",
     "infinity", "2022-06-01T00:00:00", "20220601", "2022-6-1", " 2022-06-01 "]))
years = st.one_of(st.integers(-10**6, 10**6), st.sampled_from([0, 1, 9999, 10000, 2**63]))
cells = st.one_of(st.sampled_from(["881f1d4a01fffff", "8f1f1d4a0000000", "0", "ffffffffffffffff", "881F1D4A01FFFFF",
                                   617700169958293503, 2**64, -1]), st.text(max_size=16))
short_text = st.one_of(st.text(max_size=10), st.sampled_from(["mean", "max", "pooled", "grid", "north_up",
                                                              "resize", "tile", "auto", "median", "mosaic"]))
sizes = st.one_of(st.integers(-5, 5000), st.sampled_from([None, 0, 224, 2**40, True, 1.5]))

CONSTRUCTORS = {
    "BBox": (BBox, st.tuples(st.one_of(numbers, anything), st.one_of(numbers, anything),
                             st.one_of(numbers, anything), st.one_of(numbers, anything))),
    "PointBuffer": (PointBuffer, st.tuples(st.one_of(numbers, anything), st.one_of(numbers, anything),
                                           st.one_of(numbers, anything))),
    "H3Cell": (H3Cell, st.tuples(st.one_of(cells, anything))),
    "GridCell": (GridCell, st.tuples(st.one_of(st.sampled_from(["EPSG:32633", "EPSG:4326", "x"]), anything),
                                     numbers, numbers, st.one_of(numbers, anything))),
    "TemporalSpec": (TemporalSpec, st.tuples(st.one_of(st.sampled_from(["year", "range"]), anything),
                                             st.one_of(years, anything), st.one_of(dates, anything),
                                             st.one_of(dates, anything))),
    "TemporalSpec.range": (TemporalSpec.range, st.tuples(st.one_of(dates, anything), st.one_of(dates, anything))),
    "TemporalSpec.year": (TemporalSpec.year, st.tuples(st.one_of(years, anything))),
    "SensorSpec": (SensorSpec, st.tuples(st.one_of(st.text(max_size=20), anything),
                                         st.one_of(st.lists(st.text(max_size=4), max_size=4), anything),
                                         st.one_of(numbers, anything), st.one_of(numbers, anything))),
    "FetchSpec": (FetchSpec, st.tuples(st.one_of(numbers, anything), st.one_of(numbers, anything),
                                       st.one_of(numbers, anything), st.one_of(short_text, anything))),
    "OutputSpec": (OutputSpec, st.tuples(st.one_of(short_text, anything), st.one_of(short_text, anything),
                                         st.one_of(short_text, anything))),
    "InputPrepSpec": (InputPrepSpec, st.tuples(st.one_of(short_text, anything), st.one_of(sizes, anything),
                                               st.one_of(sizes, anything), st.one_of(sizes, anything),
                                               st.one_of(st.booleans(), anything))),
    "InputPrepSpec.parse": (InputPrepSpec.parse, st.tuples(st.one_of(short_text, anything))),
    "ExportTarget": (ExportTarget, st.tuples(st.one_of(st.sampled_from(["combined", "per_item"]), anything),
                                             st.one_of(st.none(), st.text(max_size=8), anything),
                                             st.one_of(st.none(), st.text(max_size=8), anything),
                                             st.one_of(st.none(), st.lists(st.text(max_size=3)), anything))),
    "ExportConfig": (ExportConfig, st.tuples(st.one_of(st.sampled_from(["npz", "netcdf", "parquet", "store"]), anything),
                                             st.one_of(st.booleans(), anything), st.one_of(st.booleans(), anything),
                                             st.one_of(st.booleans(), anything), st.one_of(st.booleans(), anything),
                                             st.one_of(sizes, anything))),
    "ExportModelRequest": (ExportModelRequest, st.tuples(st.one_of(st.text(max_size=10), anything),
                                                         st.none(), st.none(), st.one_of(st.none(), anything),
                                                         st.one_of(st.none(), anything))),
    "ModelConfig": (ModelConfig, st.tuples(st.one_of(st.text(max_size=10), anything), st.one_of(short_text, anything))),
}
FROM_DICTS = {
    "spatial_from_dict": spatial_from_dict,
    "TemporalSpec.from_dict": TemporalSpec.from_dict,
    "OutputSpec.from_dict": OutputSpec.from_dict,
    "SensorSpec.from_dict": SensorSpec.from_dict,
}
keys = st.sampled_from(["kind", "minlon", "minlat", "maxlon", "maxlat", "lon", "lat", "buffer_m", "cell", "crs",
                        "minx", "miny", "size_m", "mode", "year", "start", "end", "pooling", "grid_orientation",
                        "collection", "bands", "scale_m", "cloudy_pct", "composite", "orbit", "other"])
field_values = st.one_of(numbers, dates, cells, short_text, st.sampled_from(["bbox", "point_buffer", "h3", "grid"]),
                         anything)


def _canonical(spec: object) -> None:
    """A constructed spec must give its canonical form (what keys hash)."""
    to_dict = getattr(spec, "to_dict", None)
    if callable(to_dict):
        to_dict()


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_spec_constructors_raise_only_spec_errors(name):
    build, arguments = CONSTRUCTORS[name]

    @FUZZ
    @given(arguments)
    def check(args):
        try:
            spec = build(*args)
        except SpecError:
            return
        _canonical(spec)

    check()


@pytest.mark.parametrize("name", FROM_DICTS)
def test_from_dict_raises_only_spec_errors(name):
    build = FROM_DICTS[name]

    @FUZZ
    @given(st.one_of(st.dictionaries(keys, field_values, max_size=6), anything))
    def check(data):
        try:
            spec = build(data)
        except SpecError:
            return
        _canonical(spec)

    check()


def test_the_fuzz_reaches_valid_specs():
    """The strategies are not all refusals: each constructor succeeds on plausible values."""
    assert BBox(12.5, 52.4, 12.6, 52.5).to_dict()["kind"] == "bbox"
    assert PointBuffer(12.6, 52.49, 300).buffer_m == 300
    assert H3Cell("881f1d4a01fffff").res == 8
    assert TemporalSpec("range", None, "2022-01-01", "2022-02-01").end_date.month == 2
    assert SensorSpec("S2", ["B02"], 10, 30).bands == ("B02",)
    assert math.isclose(FetchSpec(20, None, None, None).scale_m, 20)
