"""float16 vector tables: created per table, recorded in the schema, read back as float32
by search, get, export, SQL and the service; refused where they would change meaning."""

from __future__ import annotations

import json
import time

import h3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rsembed_db.cli.app import app
from rsembed_db.ingest.engine import IngestOptions, run_ingest
from rsembed_db.producers.catalog import make_producer
from rsembed_db.producers.records import EmbeddingRecord
from rsembed_db.query.export import export_table
from rsembed_db.query.request import SearchRequest
from rsembed_db.query.search import search
from rsembed_db.service import ServiceSettings, create_app
from rsembed_db.specs import H3Cell, SpecError, TemporalSpec
from rsembed_db.store import EmbeddingStore
from rsembed_db.store.synthetic import write_synthetic
from rsembed_db.tiling.plan import tile_region
from rsembed_db.tiling.region import load_region
from tests.conftest import REGION, SCENE, run_cli

PARENT = h3.latlng_to_cell(52.5, 12.8, 6)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """The same vectors in a float16 and a float32 table (343 cells x 2 years, 16-d)."""
    path = tmp_path_factory.mktemp("f16") / "db"
    store = EmbeddingStore(path)
    vectors = write_synthetic(store, "syn16", PARENT, 9, [2020, 2021], 16, vector_dtype="float16")
    write_synthetic(store, "syn32", PARENT, 9, [2020, 2021], 16)
    return path, vectors


def cli(path, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--db", str(path)], env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_dtype_is_recorded_in_the_schema(db):
    path, _ = db
    schema = EmbeddingStore(path).table("syn16").schema
    assert schema.field("vector").type == pa.list_(pa.float16(), 16)
    assert schema.metadata[b"rsembed.vector_dtype"] == b"float16"
    assert EmbeddingStore(path).table("syn32").schema.metadata[b"rsembed.vector_dtype"] == b"float32"
    info = {i.name: i.vector_dtype for i in EmbeddingStore(path).info()}
    assert info == {"syn16": "float16", "syn32": "float32"}
    assert "float16" in cli(path, "tables")


def test_exact_search_ranks_the_stored_float16_values(db, tmp_path):
    path, vectors = db
    store = EmbeddingStore(path)
    query = np.random.default_rng(7).normal(size=16).astype(np.float32)
    np.save(tmp_path / "q.npy", query)
    rows = json.loads(cli(path, "search", "--table", "syn16", "--vector-file", str(tmp_path / "q.npy"), "-k", "10",
                          "--format", "json", "--tiling", "any", "--exact"))
    stored = vectors.astype(np.float16).astype(np.float32)  # what the table holds
    cosine = 1 - stored @ query / (np.linalg.norm(stored, axis=1) * np.linalg.norm(query))
    keys = store.table("syn16").to_lance().to_table(columns=["key"])["key"].to_pylist()
    assert [r["key"] for r in rows] == [keys[i] for i in np.argsort(cosine, kind="stable")[:10]]
    # Lance computes a float16 column's distances in float16 arithmetic: equal to ~1e-4
    np.testing.assert_allclose([r["distance"] for r in rows], np.sort(cosine)[:10], atol=2e-4)
    # the same query on the float32 copy finds the same ten rows
    rows32 = json.loads(cli(path, "search", "--table", "syn32", "--vector-file", str(tmp_path / "q.npy"), "-k",
                            "10", "--format", "json", "--tiling", "any", "--exact"))
    assert {r["key"] for r in rows32} == {r["key"] for r in rows}


def test_readers_hand_out_float32(db, tmp_path):
    path, vectors = db
    store = EmbeddingStore(path)
    key = store.table("syn16").to_lance().to_table(columns=["key"], limit=1)["key"][0].as_py()
    row = store.get("syn16", key)
    assert row["vector"] == vectors[0].astype(np.float16).astype(np.float32).tolist()
    result = search(store, "syn16", SearchRequest.from_dict({"key": key, "k": 3, "include_vector": True}))
    assert result.rows.schema.field("vector").type == pa.list_(pa.float32(), 16)

    export_table(store, "syn16", tmp_path / "x.parquet", where="year = 2020")
    exported = pq.read_table(tmp_path / "x.parquet")
    assert exported.schema.field("vector").type == pa.list_(pa.float32(), 16)
    assert exported.num_rows == 343
    np.testing.assert_array_equal(np.stack(exported["vector"].to_numpy(zero_copy_only=False)),
                                  vectors[:343].astype(np.float16).astype(np.float32))

    sql = json.loads(cli(path, "sql", "SELECT key, vector FROM syn16 WHERE year = 2020 ORDER BY key LIMIT 2",
                         "--format", "json"))
    out = sql["rows"]
    assert "float>[16]" in sql["columns"][1]["type"] and "half" not in sql["columns"][1]["type"]
    assert len(out) == 2 and len(out[0]["vector"]) == 16
    assert out[0]["vector"] == store.get("syn16", out[0]["key"])["vector"]


def test_float16_overflow_is_refused_naming_the_field(tmp_path):
    producer = make_producer("mosaiks", SCENE)
    request = producer.request(H3Cell("881f1d4b1bfffff"), TemporalSpec.year(2017))
    record = EmbeddingRecord(request, "t0", np.full(256, 1e6, np.float32))
    with pytest.raises(SpecError) as err:
        EmbeddingStore(tmp_path / "db").write("mosaiks", [record], 256, create_dtype="float16")
    assert err.value.field == "vector_dtype"


def test_ingest_float16_matches_float32_rounded_and_refuses_a_mismatch(tmp_path):
    producer = make_producer("mosaiks", SCENE)
    cells = tile_region(load_region(REGION), "h3:8")[:2]
    requests = [producer.request(c, TemporalSpec.year(2017)) for c in cells]
    stores = {dtype: EmbeddingStore(tmp_path / dtype) for dtype in ("float16", "float32")}
    for dtype, store in stores.items():
        summary = run_ingest(store, producer, requests, IngestOptions(vector_dtype=dtype))
        assert summary.computed == 2
    for request in requests:
        v16 = np.asarray(stores["float16"].get("mosaiks", request.key)["vector"], np.float32)
        v32 = np.asarray(stores["float32"].get("mosaiks", request.key)["vector"], np.float32)
        np.testing.assert_array_equal(v16, v32.astype(np.float16).astype(np.float32))
    with pytest.raises(SpecError) as err:
        run_ingest(stores["float16"], producer, requests, IngestOptions(vector_dtype="float32"))
    assert err.value.field == "vector_dtype"
    # the CLI: exit 2 and one line naming the field; no flag: the table's own dtype is kept
    bad = run_cli("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE),
                  "--vector-dtype", "float32", "--dry-run", db=tmp_path / "float16", check=False)
    assert bad.returncode == 2 and "vector_dtype" in bad.stderr and "float16" in bad.stderr
    unknown = run_cli("ingest", str(REGION), "--model", "mosaiks", "--year", "2017", "--imagery", str(SCENE),
                      "--vector-dtype", "int8", "--dry-run", db=tmp_path / "new", check=False)
    assert unknown.returncode == 2 and "vector-dtype" in unknown.stderr


def test_service_serves_float16_rows_and_takes_vector_dtype(tmp_path):
    db = str(tmp_path / "db")
    producer = make_producer("mosaiks", SCENE)
    request = producer.request(H3Cell("881f1d4b1bfffff"), TemporalSpec.year(2017))
    value = np.linspace(-1, 1, 256, dtype=np.float32)
    EmbeddingStore(db).write("mosaiks", [EmbeddingRecord(request, "t0", value)], 256, create_dtype="float16")
    with TestClient(create_app(ServiceSettings(db=db)), raise_server_exceptions=False) as c:
        one = c.get("/v1/embeddings", params={"model": "mosaiks", "h3": "881f1d4b1bfffff", "year": 2017,
                                              "compute": "never"}).json()
        assert one["from_store"] and one["vector"] == value.astype(np.float16).astype(np.float32).tolist()
        assert c.get("/v1/tables").json()["tables"][0]["vector_dtype"] == "float16"
        region = json.loads(REGION.read_text())
        refused = c.post("/v1/ingest", json={"model": "mosaiks", "region": region, "temporal": {"year": 2017},
                                             "vector_dtype": "float32"})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "vector_dtype"
        unknown = c.post("/v1/ingest", json={"model": "mosaiks", "region": region, "temporal": {"year": 2017},
                                             "vector_dtype": "bfloat16"})
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "vector_dtype"


def test_http_ingest_creates_a_float16_table(tmp_path):
    db = str(tmp_path / "db")
    body = {"model": "mosaiks", "region": json.loads(REGION.read_text()), "temporal": {"year": 2017},
            "tiles": "h3:8", "vector_dtype": "float16"}
    with TestClient(create_app(ServiceSettings(db=db, imagery=(str(SCENE),)))) as c:
        started = c.post("/v1/ingest", json=body)
        assert started.status_code == 202, started.text
        for _ in range(3000):
            job = c.get(f"/v1/ingest/{started.json()['id']}").json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert job["state"] == "succeeded" and job["computed"] == job["planned"] == 54
        assert c.get("/v1/tables").json()["tables"][0]["vector_dtype"] == "float16"
    assert EmbeddingStore(db).table("mosaiks").schema.field("vector").type.value_type == pa.float16()
