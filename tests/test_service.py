"""The HTTP service in-process (TestClient): endpoints, errors, auth, limits, negotiation, jobs."""

from __future__ import annotations

import io
import json
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from rsembed_db.producers.catalog import get_embedder
from rsembed_db.producers.onthefly import OnTheFlyProducer
from rsembed_db.service import ServiceSettings, create_app
from rsembed_db.service.auth import ApiKeys
from rsembed_db.specs import SpecError
from rsembed_db.store import EmbeddingStore
from tests.conftest import REGION, SCENE
from tests.helpers.live_server import CELL, POINT, fake_mosaiks_rows
from tests.store_rows import toy_store

KEYS = ApiKeys.parse("r1:read,w1:write", "test")


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "db")


def client(db: str, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(db=db, **settings)), raise_server_exceptions=False)


@pytest.fixture
def stored(db):
    """Two fake mosaiks rows (a point and an H3 cell) whose keys the service will ask for."""
    return fake_mosaiks_rows(db)


@pytest.fixture
def no_compute(monkeypatch):
    def refuse(self, batch):
        raise AssertionError("nothing should be computed")
    monkeypatch.setattr(OnTheFlyProducer, "finish", refuse)


def test_openapi_health_models_tables(db):
    toy_store(db)
    with client(db) as c:
        schema = c.get("/openapi.json").json()
        assert {"/healthz", "/v1/models", "/v1/tables", "/v1/embeddings", "/v1/sql", "/v1/ingest",
                "/v1/ingest/{job_id}"} <= set(schema["paths"])
        assert {"APIKeyHeader", "HTTPBearer"} <= set(schema["components"]["securitySchemes"])
        assert c.get("/healthz").json()["status"] == "ok"
        assert "mosaiks" in [m["name"] for m in c.get("/v1/models").json()["models"]]
        assert c.get("/v1/models/mosaiks").json()["dim"] == 256
        assert c.get("/v1/models/nope").json()["error"]["field"] == "model"
        assert c.get("/v1/tables").json()["tables"] == [{"name": "toy", "rows": 19, "dim": 4, "models": ["toy"],
                                                          "tilings": {"h3:8": 19}, "vector_dtype": "float32"}]
        assert "vector" in [col["name"] for col in c.get("/v1/tables/toy").json()["columns"]]
        assert c.get("/v1/tables/nope").status_code == 404


def test_stored_keys_come_from_the_store(db, stored, no_compute):
    with client(db) as c:  # no imagery configured: stored keys are still served
        one = c.get("/v1/embeddings", params={"model": "mosaiks", **POINT, "year": 2017}).json()
        assert one["key"] == stored[0] and one["from_store"] and one["vector"] == [0.5] * 256
        assert one["table"] == "mosaiks" and one["meta"]["fake"] is True
        batch = c.post("/v1/embeddings", json={"model": "mosaiks", "temporal": {"start": "2017-01-01",
                                                                               "end": "2018-01-01"},
                                               "spatials": [{"h3": CELL}, POINT, {"h3": CELL}]}).json()
        assert [i["key"] for i in batch["items"]] == [stored[1], stored[0], stored[1]]
        missing = c.get("/v1/embeddings", params={"model": "mosaiks", **POINT, "buffer_m": 301,
                                                  "year": 2017, "compute": "never"})
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "key"
        no_imagery = c.get("/v1/embeddings", params={"model": "mosaiks", **POINT, "buffer_m": 301, "year": 2017})
        assert no_imagery.status_code == 503 and no_imagery.json()["error"]["field"] == "imagery"


@pytest.mark.parametrize("params,field", [
    ({"lon": 200}, "lon"), ({"buffer_m": -1}, "buffer_m"), ({"pooling": "median"}, "pooling"),
    ({"year": 1066}, "year"), ({"model": "nope"}, "model"), ({"scale_m": 0}, "scale_m"),
    ({"composite": "best"}, "composite"), ({"lon": "east"}, "lon"), ({"model_config": "[1"}, "model_config"),
    ({"bbox": "1,2,3"}, "spatial"), ({"output": "cube"}, "output"),
    ({"model_config": '{"weights_dir": "/tmp"}'}, "model_config.weights_dir"),  # server settings only
])
def test_get_errors_name_the_field(db, params, field):
    with client(db) as c:
        answer = c.get("/v1/embeddings", params={"model": "mosaiks", **POINT, "year": 2017, **params})
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == field, answer.json()


@pytest.mark.parametrize("change,field", [
    ({"spatials": [POINT, {"lon": 12.6, "lat": 99, "buffer_m": 5}]}, "spatials[1].lat"),
    ({"spatials": [{"h3": "not-a-cell"}]}, "spatials[0].cell"),
    ({"temporal": {"start": "2017-05-01", "end": "2017-01-01"}}, "temporal.end"),
    ({"output": {"mode": "grid", "pooling": "median"}}, "output.pooling"),
    ({"fetch": {"cloudy_pct": 150}}, "fetch.cloudy_pct"),
    ({"fetch": {"scale_m": 20}, "sensor": {"collection": "local", "bands": ["B02"]}}, "fetch"),
    ({"spatials": []}, "spatials"), ({"colour": "red"}, "colour"),
])
def test_post_errors_name_the_field(db, change, field):
    body = {"model": "mosaiks", "spatials": [POINT], "temporal": {"year": 2017}, **change}
    with client(db) as c:
        answer = c.post("/v1/embeddings", json=body)
        assert answer.status_code == 422 and answer.json()["error"]["field"] == field, answer.json()


def test_api_keys_guard_reads(db, stored, no_compute):
    miss = {"model": "mosaiks", **POINT, "buffer_m": 302, "year": 2017}
    with client(db, api_keys=KEYS) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/tables").json()["error"] == {
            "field": "X-API-Key", "message": "an API key is required: send X-API-Key or Authorization: Bearer"}
        assert c.get("/v1/tables", headers={"X-API-Key": "r1"}).status_code == 200
        assert c.get("/v1/tables", headers={"Authorization": "Bearer r1"}).status_code == 200
        assert c.get("/v1/tables", headers={"X-API-Key": "guess"}).status_code == 401
        assert c.post("/v1/sql", json={"sql": "SELECT 1"}).status_code == 401
        # computing a miss is a write; reading a stored key is not
        refused = c.get("/v1/embeddings", params=miss, headers={"X-API-Key": "r1"})
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "X-API-Key"
        assert c.get("/v1/embeddings", params={**miss, "compute": "never"},
                     headers={"X-API-Key": "r1"}).status_code == 404
        hit = c.get("/v1/embeddings", params={"model": "mosaiks", **POINT, "year": 2017},
                    headers={"X-API-Key": "r1"})
        assert hit.status_code == 200 and hit.json()["key"] == stored[0]
    with client(db, api_keys=KEYS, public_reads=True) as c:
        assert c.get("/v1/tables").status_code == 200
        assert c.get("/v1/embeddings", params=miss).status_code == 403


def test_api_keys_guard_writes(db):
    square = [[12.6, 52.49], [12.6012, 52.49], [12.6012, 52.4907], [12.6, 52.4907], [12.6, 52.49]]
    ingest = {"model": "mosaiks", "region": {"type": "Polygon", "coordinates": [square]},
              "temporal": {"year": 2017}, "tiles": "grid:50"}
    with client(db, api_keys=KEYS, public_reads=True, imagery=(str(SCENE),)) as c:
        assert c.post("/v1/ingest", json=ingest).status_code == 401
        assert c.post("/v1/ingest", json=ingest, headers={"X-API-Key": "nope"}).status_code == 401
        refused = c.post("/v1/ingest", json=ingest, headers={"X-API-Key": "r1"})
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "X-API-Key"
        accepted = c.post("/v1/ingest", json=ingest, headers={"Authorization": "Bearer w1"})
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]
        assert c.delete(f"/v1/ingest/{job_id}", headers={"X-API-Key": "r1"}).status_code == 403
        job, _ = _wait(c, job_id)
        assert job["state"] == "succeeded" and job["computed"] == job["planned"] > 0
    with client(db) as c:  # no imagery: an on-the-fly ingest is refused up front
        refused = c.post("/v1/ingest", json=ingest)
        assert refused.status_code == 503 and refused.json()["error"]["field"] == "imagery"


def test_size_limits_answer_413_naming_the_field(db):
    region = json.loads(REGION.read_text())
    with client(db, max_body_bytes=4096, max_batch=2, max_region_tiles=10) as c:
        big = c.post("/v1/sql", json={"sql": "SELECT 1 -- " + "x" * 5000})
        assert big.status_code == 413 and big.json()["error"]["field"] == "body"
        chunked = c.post("/v1/sql", content=(b"x" * 1024 for _ in range(8)),
                         headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"]["field"] == "body"
        batch = c.post("/v1/embeddings", json={"model": "mosaiks", "spatials": [POINT] * 3,
                                               "temporal": {"year": 2017}})
        assert batch.status_code == 413 and batch.json()["error"]["field"] == "spatials"
        plan = c.post("/v1/ingest", json={"model": "mosaiks", "region": region, "temporal": {"year": 2017},
                                          "tiles": "h3:9"})
        assert plan.status_code == 413 and plan.json()["error"]["field"] == "region"
        bad = c.post("/v1/ingest", json={"model": "mosaiks", "region": {"type": "Point", "coordinates": [1, 2]},
                                         "temporal": {"year": 2017}})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "region"


def test_sql_content_negotiation(db):
    toy_store(db)
    query = {"sql": "SELECT key, year, vector FROM toy ORDER BY key"}
    with client(db) as c:
        as_json = c.post("/v1/sql", json=query)
        assert as_json.headers["content-type"] == "application/json"
        assert as_json.json()["row_count"] == 19 and as_json.json()["rows"][0]["year"] == 2021
        arrow = c.post("/v1/sql", json=query, headers={"Accept": "application/vnd.apache.arrow.stream"})
        assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(arrow.content).read_all()
        assert table.num_rows == 19 and table.column_names == ["key", "year", "vector"]
        parquet = c.post("/v1/sql", json=query, headers={"Accept": "text/html;q=0.9, application/vnd.apache.parquet"})
        assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
        assert pq.read_table(io.BytesIO(parquet.content)).equals(table)
        assert c.post("/v1/sql", json=query, headers={"Accept": "*/*"}).json()["row_count"] == 19
        refused = c.post("/v1/sql", json=query, headers={"Accept": "text/csv"})
        assert refused.status_code == 406 and refused.json()["error"]["field"] == "Accept"
        limited = c.post("/v1/sql", json={**query, "max_rows": 5})
        assert limited.json()["truncated"] and limited.headers["X-Truncated"] == "true"
        forbidden = c.post("/v1/sql", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"})
        assert forbidden.status_code == 422 and forbidden.json()["error"]["field"] == "sql"
        assert c.post("/v1/sql", json={"sql": "DROP VIEW toy"}).status_code == 422


def test_ingest_job_over_http_completes_with_progress(db):
    body = {"model": "mosaiks", "region": json.loads(REGION.read_text()), "temporal": {"year": 2017},
            "tiles": "h3:8"}
    with client(db, imagery=(str(SCENE),)) as c:
        started = c.post("/v1/ingest", json=body)
        assert started.status_code == 202 and started.headers["Location"] == f"/v1/ingest/{started.json()['id']}"
        job, seen = _wait(c, started.json()["id"])
        assert job["state"] == "succeeded", job
        assert job["planned"] == job["to_compute"] == job["computed"] == job["done"] == 54
        assert job["failed"] == 0 and job["errors"] == [] and job["progress"] == 1.0
        assert seen == sorted(seen) and seen[-1] == 54
        assert EmbeddingStore(db).table("mosaiks").count_rows() == 54
        again, _ = _wait(c, c.post("/v1/ingest", json=body).json()["id"])
        assert again["state"] == "succeeded" and again["already_stored"] == 54 and again["computed"] == 0
        assert [j["id"] for j in c.get("/v1/ingest").json()["jobs"]] == [again["id"], job["id"]]  # newest first
        assert c.get("/v1/ingest/nope").status_code == 404


def _wait(c: TestClient, job_id: str, timeout: float = 300) -> tuple[dict, list[int]]:
    deadline, seen = time.time() + timeout, []
    while time.time() < deadline:
        job = c.get(f"/v1/ingest/{job_id}").json()
        seen.append(job["done"])
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_failing_compute_over_http_leaves_the_table_unchanged(db, monkeypatch):
    with client(db, imagery=(str(SCENE),)) as c:
        first = c.get("/v1/embeddings", params={"model": "mosaiks", **POINT, "year": 2017}).json()
        table = EmbeddingStore(db).table("mosaiks")
        version, rows = table.version, table.to_arrow()

        def crash(self, batch):
            raise RuntimeError("GPU fell off the bus")

        monkeypatch.setattr(OnTheFlyProducer, "finish", crash)
        failed = c.post("/v1/embeddings", json={"model": "mosaiks", "temporal": {"year": 2017},
                                                "spatials": [POINT, {**POINT, "buffer_m": 250}]})
        assert failed.status_code == 500 and "RuntimeError" in failed.json()["error"]["message"]
        table = EmbeddingStore(db).table("mosaiks")
        assert table.version == version and table.to_arrow().equals(rows)
        again = c.get("/v1/embeddings", params={"model": "mosaiks", **POINT, "year": 2017}).json()
        assert again["from_store"] and again["vector"] == first["vector"]


def test_cancelled_job_keeps_what_it_committed(db):
    # res 10: ~2,600 cells, long enough to be cancelled midway (progress is saved every 2 s)
    body = {"model": "mosaiks", "region": json.loads(REGION.read_text()), "temporal": {"year": 2017},
            "tiles": "h3:10"}
    with client(db, imagery=(str(SCENE),)) as c:
        job_id = c.post("/v1/ingest", json=body).json()["id"]
        while c.get(f"/v1/ingest/{job_id}").json()["done"] == 0:
            time.sleep(0.05)
        assert c.delete(f"/v1/ingest/{job_id}").status_code == 200
        job, _ = _wait(c, job_id)
        assert job["state"] == "cancelled" and 0 < job["computed"] < job["planned"]
        assert EmbeddingStore(db).table("mosaiks").count_rows() == job["computed"]


def test_search_over_http(db):
    toy_store(db, model="mosaiks", dim=256, model_config=get_embedder("mosaiks").config)
    key = EmbeddingStore(db).table("mosaiks").to_arrow()["key"][0].as_py()
    with client(db) as c:
        found = c.post("/v1/search", json={"model": "mosaiks", "key": key, "k": 3})
        assert found.status_code == 200, found.json()
        answer = found.json()
        assert answer["table"] == "mosaiks" and len(answer["results"]) == 3
        assert key not in [r["key"] for r in answer["results"]] and answer["query_keys"] == [key]
        distances = [r["distance"] for r in answer["results"]]
        assert distances == sorted(distances)
        geo = c.post("/v1/search", json={"table": "mosaiks", "near": [12.6, 52.49], "k": 2},
                     headers={"Accept": "application/geo+json"})
        assert geo.headers["content-type"] == "application/geo+json"
        assert [f["geometry"]["type"] for f in geo.json()["features"]] == ["Polygon"] * 2
        arrow = c.post("/v1/search", json={"model": "mosaiks", "key": key, "k": 4},
                       headers={"Accept": "application/vnd.apache.arrow.stream"})
        assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 4
        for body, field in [({"model": "mosaiks", "k": 0, "key": key}, "k"),
                            ({"model": "mosaiks", "key": key, "colour": 1}, "colour"),
                            ({"key": key}, "model"), ({"model": "nope", "key": key}, "model")]:
            bad = c.post("/v1/search", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field, bad.json()
        assert c.post("/v1/search", json={"table": "nope", "key": key}).status_code == 404
        # listings are reused for a second; a table stored meanwhile is found at once
        assert c.post("/v1/search", json={"table": "later", "key": key}).status_code == 404
        later = toy_store(db, model="later", dim=8)
        found = c.post("/v1/search", json={"table": "later", "vector": [1.0] * 8, "k": 2})
        assert found.status_code == 200 and len(found.json()["results"]) == 2, found.text
        assert later.table_names() == ["later", "mosaiks"]
        shutil.rmtree(f"{db}/later.lance")  # removed by another process, within the listing's second
        gone = c.post("/v1/search", json={"table": "later", "vector": [1.0] * 8, "k": 2})
        assert gone.status_code == 404 and gone.json()["error"]["field"] == "table", gone.text


def test_grid_output_over_http(db):
    with client(db, imagery=(str(SCENE),)) as c:
        answer = c.post("/v1/embeddings", json={"model": "mosaiks", "temporal": {"year": 2017}, "output": "grid",
                                                "spatials": [{"bbox": [12.55, 52.47, 12.553, 52.472]}]})
        assert answer.status_code == 200, answer.json()
        [item] = answer.json()["items"]
        d, h, w = item["shape"]
        grid = item["grid"]
        assert d == 256 and grid["dims"] == ["band", "y", "x"] and grid["crs"] == "EPSG:32633"
        assert len(grid["values"]) == d and len(grid["values"][0]) == h == len(grid["y"])
        assert len(grid["values"][0][0]) == w == len(grid["x"]) and len(grid["transform"]) == 6
        stored = c.post("/v1/embeddings", json={"model": "mosaiks", "temporal": {"year": 2017}, "output": "grid",
                                                "spatials": [{"bbox": [12.55, 52.47, 12.553, 52.472]}]}).json()
        assert stored["items"][0]["from_store"] and stored["items"][0]["grid"]["values"] == grid["values"]


def test_api_keys_from_env_and_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# team keys\nalpha:read\nbeta:write  # pipeline\n\n")
    keys = ApiKeys.from_env({"RSEMBED_API_KEYS": "gamma:read", "RSEMBED_API_KEYS_FILE": str(path)})
    assert [keys.scope_of(k) for k in ("alpha", "beta", "gamma", "delta")] == ["read", "write", "read", None]
    assert not ApiKeys.from_env({})
    with pytest.raises(SpecError) as info:
        ApiKeys.from_env({"RSEMBED_API_KEYS": "k1:read,k2:admin"})
    assert info.value.field == "RSEMBED_API_KEYS" and "k2" not in str(info.value)  # never echo a key


def test_documented_batch_example_and_a_failing_roi_named_by_index(db):
    """The POST /v1/embeddings example of docs/service.md works on the bundled scene, and a
    batch with one ROI outside the imagery names that ROI (``spatials[2]``)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text()
    example = json.loads(re.search(r"`POST /v1/embeddings` takes the same as JSON:\n\n```json\n(.*?)```", text,
                                   re.S).group(1))
    with client(db, imagery=(str(SCENE),)) as c:
        answer = c.post("/v1/embeddings", json=example)
        assert answer.status_code == 200, answer.json()
        assert [item["shape"] for item in answer.json()["items"]] == [[256]] * 3
        outside = {**example, "spatials": [*example["spatials"][:2], {"lon": 13.5, "lat": 52.5, "buffer_m": 200}]}
        refused = c.post("/v1/embeddings", json=outside)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "spatials[2]"
        assert "outside the footprint" in refused.json()["error"]["message"]
