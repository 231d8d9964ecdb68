"""``rsembed-db search | index | optimize`` (in-process; one subprocess for the exit code)."""

from __future__ import annotations

import json

import h3
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from rsembed_db.cli.app import app
from rsembed_db.specs import SpecError
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.synthetic import write_synthetic
from tests.conftest import run_cli

PARENT = h3.latlng_to_cell(52.5, 12.8, 6)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "db"
    write_synthetic(EmbeddingStore(path), "syn", PARENT, 9, [2020, 2021], 16)
    return path


@pytest.fixture(scope="module")
def keys(db):
    return EmbeddingStore(db).table("syn").to_lance().to_table(columns=["key"])["key"].to_pylist()


def cli(db, *args: str):
    result = CliRunner().invoke(app, [*args, "--db", str(db)], env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_table_output(db, keys):
    out = cli(db, "search", "--table", "syn", "--key", keys[0], "-k", "5")
    assert "5 most similar to" in out and "exact search" in out
    rows = [line for line in out.splitlines() if line.startswith("│ ")]
    distances = [float(r.split("│")[4]) for r in rows]
    assert len(rows) == 5 and distances == sorted(distances)


def test_json_with_filters(db, keys):
    out = cli(db, "search", "--table", "syn", "--key", keys[0], "-k", "8", "--format", "json", "--year", "2021",
              "--bbox", "12.0,52.0,13.5,53.0", "--h3-parent", PARENT, "--where", "lat > 52.0")
    rows = json.loads(out)
    assert len(rows) == 8 and keys[0] not in {r["key"] for r in rows}
    assert all(r["year"] == 2021 and r["lat"] > 52.0 for r in rows)
    assert [r["rank"] for r in rows] == list(range(1, 9))


def test_geojson_and_arrow_files(db, keys, tmp_path):
    polygon = tmp_path / "area.geojson"
    lat, lon = h3.cell_to_latlng(PARENT)
    polygon.write_text(json.dumps({"type": "Polygon", "coordinates": [[[lon - 0.05, lat - 0.05], [lon + 0.05, lat - 0.05],
                                                                      [lon, lat + 0.05], [lon - 0.05, lat - 0.05]]]}))
    geojson = tmp_path / "out.geojson"
    cli(db, "search", "--table", "syn", "--key", keys[3], "--polygon", str(polygon), "--format", "geojson",
        "--out", str(geojson))
    collection = json.loads(geojson.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 10
    arrow = tmp_path / "out.arrow"
    cli(db, "search", "--table", "syn", "--key", keys[3], "--format", "arrow", "--out", str(arrow), "-k", "4",
        "--metric", "l2", "--include-query")
    table = pa.ipc.open_file(str(arrow)).read_all()
    assert table.num_rows == 4 and table["key"][0].as_py() == keys[3] and "geometry" in table.column_names
    assert table.schema.field("geometry").metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert [h3.str_to_int(v) for v in table["h3_id"].to_pylist()] == table["h3"].to_pylist()
    assert collection["features"][0]["properties"]["h3_id"] == collection["features"][0]["properties"]["h3"]


def test_vector_file_examples_and_location(db, keys, tmp_path):
    vector = tmp_path / "q.npy"
    np.save(vector, np.ones(16, np.float32))
    assert len(json.loads(cli(db, "search", "--table", "syn", "--vector-file", str(vector), "--format", "json",
                              "--exact"))) == 10
    rows = json.loads(cli(db, "search", "--table", "syn", "--positive", keys[1], "--positive", keys[2],
                          "--negative", keys[3], "--format", "json", "-k", "3"))
    assert len(rows) == 3 and not {r["key"] for r in rows} & set(keys[1:4])
    cell = h3.cell_to_children(PARENT, 9)[0]
    lat, lon = h3.cell_to_latlng(cell)
    by_cell = json.loads(cli(db, "search", "--table", "syn", "--h3", cell, "--year", "2020", "--format", "json"))
    by_point = json.loads(cli(db, "search", "--table", "syn", "--near", f"{lon},{lat}", "--year", "2020",
                              "--format", "json"))
    assert [r["key"] for r in by_cell] == [r["key"] for r in by_point]


@pytest.mark.parametrize("args, field", [
    (("--key", "k", "--where", "lon > 1; DROP TABLE syn"), "filters.where"),
    (("--key", "k", "--bbox", "1,2,3"), "filters.bbox"),
    (("--key", "k", "--format", "xml"), "format"),
    (("--key", "k", "--format", "arrow"), "out"),
    (("--key", "k", "--model", "mosaiks"), "model"),
    (("-k", "3",), "query"),
    (("--key", "absent",), "key"),
])
def test_errors_name_the_field(db, args, field):
    with pytest.raises(SpecError) as info:
        cli(db, "search", "--table", "syn", *args)
    assert info.value.field == field


def test_index_and_optimize_commands(db):
    out = cli(db, "index", "--min-rows", "256")
    assert "syn" in out and "IVF_RQ cosine" in out
    with pytest.warns(UserWarning, match="removes every version"):
        out = cli(db, "optimize", "--retention-days", "0")
    assert "686" in out  # rows before and after


def test_bad_where_exits_2_with_one_line(db):
    proc = run_cli("search", "--table", "syn", "--key", "x", "--where", "key IN (SELECT key FROM syn)", db=db,
                   check=False)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "filters.where: subqueries" in lines[0], proc.stderr


def test_search_defaults_to_the_query_rows_tiling(tmp_path):
    """A table mixing H3 res 8, res 9 and point buffers: a query answers in its own tiling."""
    from rsembed_db.producers.records import EmbeddingRecord
    from rsembed_db.specs import EmbeddingRequest, H3Cell, PointBuffer, TemporalSpec

    store = EmbeddingStore(tmp_path / "db")
    centre = h3.latlng_to_cell(52.49, 12.6, 8)
    spatials = [H3Cell(c) for c in sorted(h3.grid_disk(centre, 1))]
    spatials += [H3Cell(c) for c in sorted(h3.cell_to_children(centre, 9))]
    lat, lon = h3.cell_to_latlng(centre)
    spatials += [PointBuffer(lon + 0.001 * i, lat, 200) for i in range(5)]
    rng = np.random.default_rng(0)
    records = [EmbeddingRecord(EmbeddingRequest("toy", s, TemporalSpec.year(2021)), f"t{i}",
                               rng.normal(size=4).astype(np.float32)) for i, s in enumerate(spatials)]
    store.write("toy", records, 4)
    assert store.info()[0].tilings == {"h3:8": 7, "h3:9": 7, "point_buffer": 5}
    tables = cli(tmp_path / "db", "tables")
    assert "h3:8 (7), h3:9 (7), point_buffer (5)" in tables
    near = json.loads(cli(tmp_path / "db", "search", "--table", "toy", "--near", f"{lon},{lat}", "-k", "20",
                          "--format", "json"))
    assert len(near) == 6 and {r["h3_res"] for r in near} == {9}      # the finest H3 row was the query
    by_point = json.loads(cli(tmp_path / "db", "search", "--table", "toy", "--key", records[-1].request.key,
                              "-k", "20", "--format", "json"))
    assert len(by_point) == 4 and all(r["h3"] is None for r in by_point)
    every = json.loads(cli(tmp_path / "db", "search", "--table", "toy", "--key", records[-1].request.key,
                           "-k", "20", "--format", "json", "--tiling", "any"))
    assert len(every) == 18
    chosen = json.loads(cli(tmp_path / "db", "search", "--table", "toy", "--near", f"{lon},{lat}", "-k", "20",
                            "--format", "json", "--tiling", "h3:8"))
    assert len(chosen) == 6 and {r["h3_res"] for r in chosen} == {8}
    empty = cli(tmp_path / "db", "search", "--table", "toy", "--near", f"{lon},{lat}", "--bbox", "0,0,1,1")
    assert "0 rows matched the filters" in empty
