"""The tile-count guard cannot be bypassed: regions that used to hang, overflow, exhaust
memory or plan nothing are refused from an equal-area estimate (or a count that stops at
the cap) at once, and a ring across the antimeridian is tiled on both sides of it.

Before: a -180..180 ring estimated 0 tiles and ``grid:1`` hung a server thread for 25 min;
an antimeridian ring with a grid raised OverflowError; the world at h3:15 MemoryError; the
world at h3:8 "gives no tiles"; a 5 x 1e-7 degree sliver at grid:10 took 72 s to refuse.
The bound asserted on refusal times is loose (a loaded CI machine); figures are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import h3
import pytest

from rsembed_db.errors import SpecError
from rsembed_db.tiling.plan import TooManyTilesError, tile_region
from rsembed_db.tiling.region import region_from_geojson
from tests.conftest import SCENE


def _ring(minlon: float, minlat: float, maxlon: float, maxlat: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[minlon, minlat], [maxlon, minlat], [maxlon, maxlat],
                                                [minlon, maxlat], [minlon, minlat]]]}


WORLD = _ring(-180, -85, 180, 85)
ANTIMERIDIAN = {"type": "Polygon", "coordinates": [[[170, -10], [-170, -10], [-170, 10], [170, 10], [170, -10]]]}
SLIVER = _ring(10, 50, 15, 50.0000001)
REFUSE_WITHIN_S = 5.0

OVER_CAP = [
    ("world grid:1", WORLD, "grid:1", 100),
    ("world grid:10000", WORLD, "grid:10000", 100),
    ("world h3:15", WORLD, "h3:15", 100),
    ("world h3:8", WORLD, "h3:8", 100),
    ("antimeridian grid:1", ANTIMERIDIAN, "grid:1", 1000),
    ("antimeridian h3:12", ANTIMERIDIAN, "h3:12", 1000),
    ("sliver grid:10", SLIVER, "grid:10", 1000),
]


@pytest.mark.parametrize("name,geojson,tiler,cap", OVER_CAP, ids=[c[0] for c in OVER_CAP])
def test_over_cap_regions_are_refused_at_once(name, geojson, tiler, cap):
    started = time.perf_counter()
    with pytest.raises(TooManyTilesError) as info:
        tile_region(region_from_geojson(geojson), tiler, max_tiles=cap)
    seconds = time.perf_counter() - started
    print(f"{name}: refused in {seconds:.3f} s ({info.value})")
    assert info.value.field == "tiles" and info.value.count > cap
    assert seconds < REFUSE_WITHIN_S


def test_antimeridian_ring_is_tiled_on_both_sides():
    region = region_from_geojson(ANTIMERIDIAN)
    assert region.bounds[2] - region.bounds[0] > 300  # split into pieces at +-180, not one 340-degree band
    cells = tile_region(region, "h3:2", max_tiles=1000)
    lons = [h3.cell_to_latlng(c.hex)[1] for c in cells]
    east, west = [x for x in lons if x > 0], [x for x in lons if x < 0]
    assert east and west and min(east) > 168 and max(west) < -168, sorted(lons)
    # About as many cells as a 20 x 20 degree square at the equator holds (h3:2: ~86,800 km2 a cell).
    assert 40 < len(cells) < 90
    assert len({c.hex for c in cells}) == len(cells)


def test_antimeridian_ring_with_a_grid_is_a_spec_error():
    with pytest.raises(SpecError) as info:  # was OverflowError: UTM tiles cannot span 20 degrees of longitude
        tile_region(region_from_geojson(ANTIMERIDIAN), "grid:100000", max_tiles=1000)
    assert info.value.field == "region" and "split it" in str(info.value)


def test_cli_dry_run_over_the_cap_is_refused_at_once(tmp_path):
    world = tmp_path / "world.geojson"
    world.write_text(json.dumps(WORLD))
    env = {**os.environ, "COLUMNS": "200", "RSEMBED_DB": str(tmp_path / "db")}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rsembed_db", "ingest", str(world), "--model", "mosaiks", "--tiles",
                           "grid:10000", "--dry-run", "--max-tiles", "100", "--year", "2017", "--imagery", str(SCENE)],
                          capture_output=True, text=True, env=env, timeout=300)
    seconds = time.perf_counter() - started
    print(f"CLI dry run of the world at grid:10000: exit {proc.returncode} in {seconds:.2f} s (with start-up)")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: tiles:") and "--max-tiles" in proc.stderr
