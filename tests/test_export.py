"""Export to Parquet, GeoParquet (valid 'geo' metadata, read back by geopandas) and Arrow IPC."""

from __future__ import annotations

import json

import geopandas as gpd
import h3
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely

from rsembed_db.query.export import export_table
from rsembed_db.specs import SpecError
from tests.conftest import run_cli
from tests.store_rows import toy_store


@pytest.fixture
def store(tmp_path):
    return toy_store(tmp_path / "db")


def test_geoparquet_metadata_and_geopandas_round_trip(store, tmp_path):
    out = tmp_path / "toy.parquet"
    summary = export_table(store, "toy", out, "geoparquet")
    assert summary.rows == 19
    geo = json.loads(pq.read_metadata(out).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert pyproj.CRS.from_json_dict(column["crs"]) == pyproj.CRS("EPSG:4326")
    stored = store.table("toy").to_arrow()
    hexagons = shapely.from_wkb(stored["geometry"].to_numpy(zero_copy_only=False))
    assert column["bbox"] == pytest.approx(list(shapely.total_bounds(hexagons)))

    frame = gpd.read_parquet(out)
    assert frame.crs == "EPSG:4326" and frame.crs.to_epsg() == 4326
    assert len(frame) == 19 and set(frame["key"]) == set(stored["key"].to_pylist())
    by_key = dict(zip(stored["key"].to_pylist(), hexagons))
    assert all(geom.equals_exact(by_key[key], 1e-12) for key, geom in zip(frame["key"], frame.geometry))
    # H3 ids survive pandas as hex strings (the uint64 column with nulls becomes float64)
    ids = dict(zip(stored["key"].to_pylist(), stored["h3"].to_pylist()))
    assert all(h3.str_to_int(hexid) == ids[key] for key, hexid in zip(frame["key"], frame["h3_id"]))
    assert all(h3.is_valid_cell(hexid) for hexid in frame["h3_id"])
    # lon/lat order: the centroid of each footprint is near its stored centre
    centres = shapely.centroid(frame.geometry.to_numpy())
    assert abs(shapely.get_x(centres) - frame["lon"].to_numpy()).max() < 1e-6


def test_where_filter_plain_parquet_and_arrow(store, tmp_path):
    summary = export_table(store, "toy", tmp_path / "few.parquet", "parquet", where="vector[1] < 3")
    assert summary.rows == 3
    table = pq.read_table(tmp_path / "few.parquet")
    assert b"geo" not in (table.schema.metadata or {}) and table.num_rows == 3
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 4)
    export_table(store, "toy", tmp_path / "all.arrow", "arrow")
    ipc = pa.ipc.open_file(tmp_path / "all.arrow").read_all()
    stored = store.table("toy").schema
    assert ipc.num_rows == 19 and ipc.schema.names == [*stored.names[:7], "h3_id", *stored.names[7:]]
    assert ipc.schema.field("geometry").metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    crs = json.loads(ipc.schema.field("geometry").metadata[b"ARROW:extension:metadata"])["crs"]
    assert pyproj.CRS.from_json_dict(crs) == pyproj.CRS("EPSG:4326")


def test_bad_filter_names_where_and_leaves_no_file(store, tmp_path):
    with pytest.raises(SpecError) as info:
        export_table(store, "toy", tmp_path / "x.parquet", "geoparquet", where="no_such_column = 1")
    assert info.value.field == "where"
    assert list(tmp_path.glob("x.parquet*")) == []
    with pytest.raises(SpecError, match="format"):
        export_table(store, "toy", tmp_path / "x.csv", "csv")


def test_cli_export_geoparquet(tmp_path):
    db = tmp_path / "db"
    store = toy_store(db, model="mosaiks", dim=256)
    out = tmp_path / "m.parquet"
    done = run_cli("export", "--model", "mosaiks", "--format", "geoparquet", "--where", "h3_res = 8",
                   "--out", str(out), db=db)
    assert "wrote 19 rows" in done.stdout
    assert gpd.read_parquet(out).crs.to_epsg() == 4326
    assert store.table("mosaiks").count_rows() == 19
