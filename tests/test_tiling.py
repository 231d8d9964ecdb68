"""Tiling: regions from GeoJSON, H3 and UTM-grid tilers, tiler strings and the size guard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h3
import pyproj
import pytest
import rasterio
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from rsembed_db.specs import BBox, GridCell, H3Cell, PointBuffer, SpecError
from rsembed_db.tiling import (
    RegionError,
    Tiler,
    TooManyTilesError,
    estimate_tiles,
    grid_tiles,
    h3_tiles,
    load_region,
    parse_tiler,
    plan,
    region_from_geojson,
    tile_id,
    tile_region,
)
from rsembed_db.tiling.region import project_lonlat

ROOT = Path(__file__).resolve().parents[1]
REGION_PATH = ROOT / "examples" / "region.geojson"
SCENE_PATH = ROOT / "examples" / "data" / "havelland_s2l1c_20170216_13band_10m.tif"


@pytest.fixture(scope="module")
def region() -> Polygon:
    return load_region(REGION_PATH)


@pytest.fixture(scope="module")
def raw_ring() -> list[list[float]]:
    data = json.loads(REGION_PATH.read_text())
    return data["features"][0]["geometry"]["coordinates"][0]


def _polygon_json(ring: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": [ring]}


def _write(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "region.geojson"
    path.write_text(json.dumps(obj))
    return path


# --- the bundled example region -------------------------------------------------------

def test_example_region_is_a_named_polygon_inside_the_scene_with_margin(region, raw_ring):
    data = json.loads(REGION_PATH.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 1
    assert data["features"][0]["properties"]["name"]
    assert isinstance(region, Polygon) and len(raw_ring) - 1 >= 6
    with rasterio.open(SCENE_PATH) as scene:
        left, bottom, right, top = scene.bounds
        native = project_lonlat(region, scene.crs.to_string())
    assert native.within(box(left + 500, bottom + 500, right - 500, top - 500))


def test_example_region_gives_40_to_60_cells_at_res_8(region):
    assert 40 <= len(h3_tiles(region, 8)) <= 60


# --- region loading and its errors ----------------------------------------------------

def test_load_region_accepts_feature_and_bare_geometries(tmp_path, region, raw_ring):
    feature = {"type": "Feature", "properties": {}, "geometry": _polygon_json(raw_ring)}
    multi = {"type": "MultiPolygon", "coordinates": [[raw_ring]]}
    for obj in (feature, _polygon_json(raw_ring), multi):
        assert load_region(_write(tmp_path, obj)).equals(region)
        assert region_from_geojson(obj).equals(region)


def test_feature_collection_is_the_union_of_its_polygons():
    west = {"type": "Feature", "properties": {}, "geometry": _polygon_json(
        [[12.55, 52.47], [12.60, 52.47], [12.60, 52.50], [12.55, 52.50], [12.55, 52.47]])}
    east = {"type": "Feature", "properties": {}, "geometry": _polygon_json(
        [[12.65, 52.47], [12.70, 52.47], [12.70, 52.50], [12.65, 52.50], [12.65, 52.47]])}
    overlapping = {"type": "Feature", "properties": {}, "geometry": _polygon_json(
        [[12.58, 52.48], [12.62, 52.48], [12.62, 52.49], [12.58, 52.49], [12.58, 52.48]])}
    two = region_from_geojson({"type": "FeatureCollection", "features": [west, east]})
    assert isinstance(two, MultiPolygon) and len(two.geoms) == 2
    merged = region_from_geojson({"type": "FeatureCollection", "features": [west, overlapping]})
    assert isinstance(merged, Polygon)
    assert merged.area == pytest.approx(0.05 * 0.03 + 0.02 * 0.01)


def _region_error(obj: object) -> RegionError:
    with pytest.raises(RegionError) as info:
        region_from_geojson(obj)
    assert info.value.field == "region"
    assert isinstance(info.value, SpecError)
    return info.value


def test_missing_file(tmp_path):
    with pytest.raises(RegionError, match="file not found") as info:
        load_region(tmp_path / "nope.geojson")
    assert info.value.field == "region" and "nope.geojson" in str(info.value)


def test_unparseable_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.geojson"
    path.write_text('{\n  "type": "Feature",\n  "geometry": ,\n}\n')
    with pytest.raises(RegionError, match="line 3 column 15") as info:
        load_region(path)
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize("obj", [[1, 2], {"features": []}, {"type": 3}])
def test_not_geojson(obj):
    assert "not GeoJSON" in str(_region_error(obj))


def test_unknown_type():
    assert "'Banana'" in str(_region_error({"type": "Banana"}))


def test_non_polygon_feature_names_index_and_type(raw_ring):
    polygon = {"type": "Feature", "properties": {}, "geometry": _polygon_json(raw_ring)}
    point = {"type": "Feature", "properties": {},
             "geometry": {"type": "Point", "coordinates": [12.6, 52.5]}}
    message = str(_region_error({"type": "FeatureCollection", "features": [polygon, point]}))
    assert "feature 1 is a Point" in message


def test_bare_non_polygon_geometry():
    line = {"type": "LineString", "coordinates": [[12.6, 52.5], [12.7, 52.5]]}
    assert "LineString" in str(_region_error(line))


def test_feature_without_geometry():
    assert "no geometry" in str(_region_error({"type": "Feature", "geometry": None}))
    assert "not a GeoJSON geometry" in str(_region_error({"type": "Feature", "geometry": [1]}))


def test_empty_feature_collection():
    assert "no features" in str(_region_error({"type": "FeatureCollection", "features": []}))


def test_malformed_coordinates():
    bad = {"type": "Polygon", "coordinates": [[[12.6, 52.5], [12.7, 52.5]]]}
    assert "malformed Polygon" in str(_region_error(bad))


def test_self_intersecting_polygon_says_where():
    bowtie = _polygon_json([[12.6, 52.5], [12.7, 52.6], [12.7, 52.5], [12.6, 52.6], [12.6, 52.5]])
    message = str(_region_error(bowtie))
    assert "Self-intersection" in message and "12.65 52.55" in message


def test_projected_coordinates_are_refused(region):
    native = project_lonlat(region, "EPSG:32633")
    message = str(_region_error(shapely.geometry.mapping(native)))
    assert "projected CRS" in message and "EPSG:4326" in message


def test_legacy_crs_member_other_than_lonlat_is_refused(raw_ring):
    obj = {**_polygon_json(raw_ring),
           "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}}
    assert "EPSG::32633" in str(_region_error(obj))
    obj["crs"]["properties"]["name"] = "urn:ogc:def:crs:OGC:1.3:CRS84"
    assert isinstance(region_from_geojson(obj), Polygon)


# --- H3 tiler ----------------------------------------------------------------------------

@pytest.mark.parametrize("res", [8, 9])
def test_h3_centre_cover_equals_h3_polygon_fill(region, raw_ring, res):
    independent = h3.polygon_to_cells(h3.LatLngPoly([(lat, lon) for lon, lat in raw_ring]), res)
    cells = h3_tiles(region, res)
    assert [c.hex for c in cells] == sorted(independent, key=h3.str_to_int)
    assert all(isinstance(c, H3Cell) and c.res == res for c in cells)


def test_h3_centre_cover_is_exactly_the_cells_whose_centre_is_inside(region):
    cells = {c.hex for c in h3_tiles(region, 9)}
    ring = set().union(*(h3.grid_disk(c, 2) for c in cells))
    for cell in ring:
        lat, lon = h3.cell_to_latlng(cell)
        assert (cell in cells) == region.contains(shapely.Point(lon, lat))


@pytest.mark.parametrize("res", [7, 8, 9])
def test_h3_full_cover_contains_centre_cover_and_covers_region(region, res):
    centre = {c.hex for c in h3_tiles(region, res)}
    full = h3_tiles(region, res, cover="full")
    full_ids = {c.hex for c in full}
    assert centre < full_ids
    hexagons = [c.lonlat_geometry() for c in full]
    assert shapely.union_all(hexagons).contains(region)
    assert all(hexagon.intersects(region) for hexagon in hexagons)
    # No overlapping cell is missing: neighbours outside the cover do not overlap.
    neighbours = set().union(*(h3.grid_disk(c, 1) for c in full_ids)) - full_ids
    assert all(H3Cell(c).lonlat_geometry().intersection(region).area == 0 for c in neighbours)


def test_h3_tiles_of_multipolygon_and_polygon_with_hole(region):
    hole = region.centroid.buffer(0.012)
    holed = region.difference(hole)
    cells = {c.hex for c in h3_tiles(holed, 9)}
    assert cells == {c.hex for c in h3_tiles(region, 9)} - {c.hex for c in h3_tiles(hole, 9)}
    west, east = box(12.55, 52.47, 12.58, 52.50), box(12.64, 52.47, 12.67, 52.50)
    both = {c.hex for c in h3_tiles(MultiPolygon([west, east]), 9)}
    assert both == {c.hex for c in h3_tiles(west, 9)} | {c.hex for c in h3_tiles(east, 9)}


def test_h3_tiles_sorted_by_cell_id(region):
    for cover in ("centre", "full"):
        ids = [c.int_id for c in h3_tiles(region, 9, cover=cover)]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize("res", [-1, 16, 8.0, "8", True, None])
def test_h3_resolution_must_be_0_to_15(region, res):
    with pytest.raises(SpecError, match="0..15") as info:
        h3_tiles(region, res)
    assert info.value.field == "tiles"


def test_h3_cover_choice(region):
    with pytest.raises(SpecError) as info:
        h3_tiles(region, 8, cover="middle")
    assert info.value.field == "cover" and info.value.allowed == ("centre", "full")


# --- grid tiler ----------------------------------------------------------------------------

_SUBPROCESS = """
import json, sys
from rsembed_db.tiling import grid_tiles, load_region
print(json.dumps([t.tile_id for t in grid_tiles(load_region(sys.argv[1]), 500)]))
"""


def test_grid_tile_ids_are_stable_across_runs_and_processes(region):
    first = [t.tile_id for t in grid_tiles(region, 500)]
    assert first == [t.tile_id for t in grid_tiles(region, 500)]
    out = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(REGION_PATH)],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == first
    assert len(set(first)) == len(first)


@pytest.mark.parametrize("size", [1000, 500, 250.0, 37.5])
def test_grid_tiles_are_size_m_squares_at_multiples_of_size_m(region, size):
    tiles = grid_tiles(region, size)
    assert {t.crs for t in tiles} == {"EPSG:32633"}
    for t in tiles:
        assert t.size_m == size
        assert t.minx % size == 0 and t.miny % size == 0
        assert t.native_geometry().area == size * size
        epsg, label, col, row = t.tile_id.split("_")
        assert (epsg, int(col) * size, int(row) * size) == ("32633", t.minx, t.miny)
        assert label == f"{size:g}m"


@pytest.mark.parametrize("size", [1000, 240])
def test_grid_tiles_meet_the_region_and_cover_it(region, size):
    native = project_lonlat(region, "EPSG:32633")
    tiles = grid_tiles(region, size)
    squares = [t.native_geometry() for t in tiles]
    assert all(square.intersection(native).area > 0 for square in squares)
    assert shapely.union_all(squares).contains(native)
    minx, miny, maxx, maxy = native.bounds
    bbox_count = (len(range(int(minx // size), int(maxx // size) + 1))
                  * len(range(int(miny // size), int(maxy // size) + 1)))
    assert len(tiles) < bbox_count  # tiles outside the polygon were dropped


def test_grid_tiles_are_ordered_north_to_south_then_west_to_east(region):
    tiles = grid_tiles(region, 500)
    assert tiles == sorted(tiles, key=lambda t: (-t.miny, t.minx))


def test_grid_tile_ids_do_not_depend_on_the_region(region):
    inner = region.buffer(-0.01)
    outer_ids = {t.tile_id for t in grid_tiles(region, 500)}
    inner_ids = [t.tile_id for t in grid_tiles(inner, 500)]
    assert inner_ids and set(inner_ids) < outer_ids


@pytest.mark.parametrize("inset, count", [(1.0, 4), (-1.0, 16)])
def test_grid_tiles_of_a_utm_square(inset, count):
    to_lonlat = pyproj.Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    x0, y0, x1, y1 = 334000 + inset, 5816000 + inset, 336000 - inset, 5818000 - inset
    square = Polygon([to_lonlat.transform(x, y) for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]])
    tiles = grid_tiles(square, 1000)
    cols = range(334, 336) if inset > 0 else range(333, 337)
    rows = range(5816, 5818) if inset > 0 else range(5815, 5819)
    assert len(tiles) == count
    assert sorted(t.tile_id for t in tiles) == sorted(
        f"32633_1000m_{c}_{r}" for c in cols for r in rows)


@pytest.mark.parametrize("size", [0, -5, float("nan"), float("inf"), "100", True])
def test_grid_size_must_be_positive(region, size):
    with pytest.raises(SpecError, match="positive number of metres") as info:
        grid_tiles(region, size)
    assert info.value.field == "tiles"


# --- tiler strings, planning, ids -----------------------------------------------------------

@pytest.mark.parametrize("text, kind, value", [
    ("h3:8", "h3", 8), (" H3:15 ", "h3", 15), ("h3:0", "h3", 0),
    ("grid:1000", "grid", 1000), ("grid:2.5", "grid", 2.5), ("grid:1e3", "grid", 1000),
])
def test_parse_tiler(text, kind, value):
    tiler = parse_tiler(text)
    assert tiler == Tiler(kind, value)
    assert parse_tiler(str(tiler)) == tiler


@pytest.mark.parametrize("text, fragment", [
    ("h3:abc", "'abc'"), ("h3:16", "16"), ("h3:-1", "'-1'"), ("h3:", "0..15"),
    ("hex:8", "'hex:8'"), ("h3", "h3:<res>"), ("", "grid:<size_m>"),
    ("grid:-5", "-5"), ("grid:0", "0"), ("grid:abc", "'abc'"), ("grid:nan", "nan"),
])
def test_parse_tiler_errors(text, fragment):
    with pytest.raises(SpecError) as info:
        parse_tiler(text)
    assert info.value.field == "tiles" and fragment in str(info.value)


def test_tile_region_matches_the_tilers(region):
    assert tile_region(region, "h3:8") == h3_tiles(region, 8)
    assert tile_region(region, "h3:8", cover="full") == h3_tiles(region, 8, cover="full")
    assert tile_region(region, parse_tiler("grid:500")) == grid_tiles(region, 500)


def test_estimate_is_close_to_the_exact_count(region):
    assert estimate_tiles(region, parse_tiler("h3:9")) == pytest.approx(371, rel=0.03)
    grid_count = len(grid_tiles(region, 100))
    assert estimate_tiles(region, parse_tiler("grid:100")) <= grid_count


def test_too_many_tiles_refused_from_the_estimate_before_materialising(region, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("tiles materialised")

    monkeypatch.setattr(plan, "iter_grid_tiles", fail)
    estimate = estimate_tiles(region, parse_tiler("grid:10"))
    with pytest.raises(TooManyTilesError) as info:
        tile_region(region, "grid:10", max_tiles=1000)
    message = str(info.value)
    assert info.value.field == "tiles" and isinstance(info.value, SpecError)
    assert f"about {estimate} tiles" in message and "--max-tiles" in message
    assert info.value.count == estimate > 300_000


def test_too_many_tiles_refused_from_the_count(region):
    exact = len(h3_tiles(region, 8, cover="full"))
    assert estimate_tiles(region, parse_tiler("h3:8")) <= 60 < exact
    with pytest.raises(TooManyTilesError) as info:
        tile_region(region, "h3:8", cover="full", max_tiles=60)
    message = str(info.value)
    assert "gives more tiles than the limit of 60" in message and "--max-tiles" in message and info.value.count == 61
    assert len(tile_region(region, "h3:8", cover="full", max_tiles=exact)) == exact


def test_tile_region_refuses_an_empty_plan_and_bad_limits(region):
    with pytest.raises(SpecError, match="no tiles") as info:
        tile_region(region, "h3:3")
    assert info.value.field == "tiles"
    assert len(tile_region(region, "h3:3", cover="full")) >= 1
    with pytest.raises(SpecError) as info:
        tile_region(region, "h3:8", max_tiles=0)
    assert info.value.field == "max_tiles"


def test_tile_ids():
    cell = H3Cell("881f1d4a01fffff")
    assert tile_id(cell) == "881f1d4a01fffff" == tile_id(H3Cell(cell.int_id))
    assert tile_id(GridCell("EPSG:32633", 335000.0, 5818000.0, 1000.0)) == "32633_1000m_335_5818"
    bbox = BBox(12.5, 52.45, 12.7, 52.5)
    assert tile_id(bbox) == tile_id(BBox(12.5, 52.45, 12.7, 52.5 + 1e-12))
    assert tile_id(bbox) != tile_id(BBox(12.5, 52.45, 12.7, 52.51))
    assert tile_id(bbox).startswith("bbox_") and len(tile_id(bbox)) == len("bbox_") + 12
    point = PointBuffer(12.6, 52.5, 500)
    assert tile_id(point).startswith("point_buffer_")
    assert tile_id(point) != tile_id(PointBuffer(12.6, 52.5, 1000))
    int(tile_id(point).rsplit("_", 1)[1], 16)
