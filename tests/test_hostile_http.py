"""Hostile and careless requests against a live server on 127.0.0.1: every one that used to
answer 500 (and drop the keep-alive connection) is a 4xx naming the field; over-cap regions
are refused at once; the OpenAPI schema lists the error statuses; 405 carries ``Allow``.

Each request goes over one keep-alive connection, which must stay usable after it.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from rsembed_db.service import ServiceSettings
from tests.conftest import SCENE
from tests.helpers.live_server import CELL, POINT, server_thread, small_store

WORLD = {"type": "Polygon", "coordinates": [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]]}
# A ring across the antimeridian written with longitudes -180..180 (its geodesic area is ~0).
ANTIMERIDIAN = {"type": "Polygon", "coordinates": [[[170, -10], [-170, -10], [-170, 10], [170, 10], [170, -10]]]}
SLIVER = {"type": "Polygon", "coordinates": [[[10, 50], [15, 50], [15, 50.0000001], [10, 50.0000001], [10, 50]]]}
REGION_BOX = {"type": "Polygon", "coordinates": [[[12.55, 52.47], [12.60, 52.47], [12.60, 52.50], [12.55, 52.50],
                                                  [12.55, 52.47]]]}
SEARCH = {"model": "mosaiks", "near": [12.6, 52.49], "k": 2}
SQL_DATES = "SELECT 'infinity'::DATE AS d, '290000-01-01'::TIMESTAMP AS t, '-5000-01-01'::DATE AS e"

# (method, path, query parameters, JSON body, expected status, expected field): item 5 of issue 10.
REFUSED = [
    ("POST", "/v1/search", None, {**SEARCH, "model": {"a": 1}}, 422, "model"),
    ("POST", "/v1/search", None, {**SEARCH, "model": ["mosaiks"]}, 422, "model"),
    ("POST", "/v1/search", None, {**SEARCH, "model_config": [1, 2]}, 422, "model_config"),
    ("POST", "/v1/search", None, {**SEARCH, "model_config": "x"}, 422, "model_config"),
    ("GET", "/v1/embeddings", {"model": "mosaiks", **POINT, "year": 2017, "sensor": json.dumps({"collection": "x"})},
     None, 422, "sensor"),
    ("POST", "/v1/embeddings", None, {"model": "mosaiks", "spatials": [POINT], "temporal": {"year": 2017},
                                      "sensor": {"collection": "x"}}, 422, "sensor"),
    ("GET", "/v1/embeddings", {"model": "mosaiks", "lon": 12.6, "lat": 52.49, "buffer_m": 1e7, "year": 2017},
     None, 422, "buffer_m"),
    ("GET", "/v1/embeddings", {"model": "mosaiks", "bbox": "-180,-90,180,90", "year": 2017}, None, 422, "bbox"),
    ("GET", "/v1/embeddings", {"model": "mosaiks", **POINT, "year": 2017, "scale_m": 0.001}, None, 422, "scale_m"),
    # Item 3: an ROI over the pixel cap is refused before anything is read (422 naming it).
    ("GET", "/v1/embeddings", {"model": "mosaiks", "lon": 12.6, "lat": 52.49, "buffer_m": 50000, "year": 2017},
     None, 422, "buffer_m"),
    ("POST", "/v1/embeddings", None, {"model": "mosaiks", "spatials": [POINT, {**POINT, "buffer_m": 6000}],
                                      "temporal": {"year": 2017}}, 422, "spatials[1]"),
    # Item 4: regions whose plan used to hang, overflow or run out of memory.
    ("POST", "/v1/ingest", None, {"model": "mosaiks", "region": ANTIMERIDIAN, "tiles": "grid:1",
                                  "temporal": {"year": 2017}}, 413, "region"),
    ("POST", "/v1/ingest", None, {"model": "mosaiks", "region": WORLD, "tiles": "grid:1",
                                  "temporal": {"year": 2017}}, 413, "region"),
    ("POST", "/v1/ingest", None, {"model": "mosaiks", "region": WORLD, "tiles": "h3:15",
                                  "temporal": {"year": 2017}}, 413, "region"),
    ("POST", "/v1/ingest", None, {"model": "mosaiks", "region": WORLD, "tiles": "h3:8",
                                  "temporal": {"year": 2017}}, 413, "region"),
    ("POST", "/v1/ingest", None, {"model": "mosaiks", "region": SLIVER, "tiles": "grid:10",
                                  "temporal": {"year": 2017}}, 413, "region"),
    ("POST", "/v1/ingest", None, {"model": "mosaiks", "region": ANTIMERIDIAN, "tiles": "grid:100000",
                                  "temporal": {"year": 2017}}, 422, "region"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    db = tmp_path_factory.mktemp("hostile") / "db"
    small_store(db)
    with server_thread(ServiceSettings(db=str(db), imagery=(str(SCENE),), max_region_tiles=1000)) as url:
        yield url


@pytest.fixture(scope="module")
def http(base):
    with httpx.Client(base_url=base, timeout=120) as client:
        yield client


@pytest.mark.parametrize("method,path,params,body,status,field", REFUSED,
                         ids=[f"{m} {p} {f} {i}" for i, (m, p, _, _, _, f) in enumerate(REFUSED)])
def test_hostile_requests_are_4xx_naming_the_field(http, method, path, params, body, status, field):
    started = time.perf_counter()
    answer = http.request(method, path, params=params, json=body)
    seconds = time.perf_counter() - started
    print(f"{method} {path} -> {answer.status_code} in {seconds:.3f} s: {answer.text[:200]}")
    assert answer.status_code == status, answer.text
    named = answer.json()["error"]["field"]
    assert named == field or named.startswith((f"{field}.", f"{field}[")), answer.text  # e.g. sensor.bands
    assert answer.headers.get("connection") != "close"
    assert http.get("/healthz").status_code == 200  # the same connection still serves
    if path == "/v1/ingest":
        assert seconds < 5, f"refusing the region took {seconds:.1f} s"  # was minutes, or forever


def test_out_of_range_dates_are_text_not_500(http):
    answer = http.post("/v1/sql", json={"sql": SQL_DATES})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [{"d": "infinity", "t": "290000-01-01T00:00:00.000000", "e": "-5000-01-01"}]


LONE_SURROGATE = '{"sql": "SELECT \'\ud800\'", "model": "\ud800", "spatials": [], "near": [0, 0]}'
SURROGATE_BODIES = {  # every way json.loads turns request bytes into a lone surrogate
    "escape": LONE_SURROGATE.replace("\ud800", "\\ud800").encode(),
    "raw bytes": LONE_SURROGATE.encode("utf-8", "surrogatepass"),
    "utf-16": LONE_SURROGATE.encode("utf-16-le", "surrogatepass"),
}


@pytest.mark.parametrize("encoding", SURROGATE_BODIES)
@pytest.mark.parametrize("path", ["/v1/sql", "/v1/search", "/v1/embeddings"])
def test_a_lone_surrogate_in_the_body_is_422(http, path, encoding):
    raw = SURROGATE_BODIES[encoding]
    answer = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert "\\ud800" in answer.text or "surrogate" in answer.text or "Unicode" in answer.text, answer.text
    assert http.get("/healthz").status_code == 200


def test_an_ingest_inside_the_limits_is_accepted(http):
    """The guards refuse by size, not by shape: the documented region is planned and queued."""
    answer = http.post("/v1/ingest", json={"model": "mosaiks", "region": REGION_BOX, "tiles": "h3:8",
                                           "temporal": {"year": 2017}})
    assert answer.status_code == 202, answer.text
    job = http.get(answer.headers["location"]).json()
    assert job["planned"] > 0


def test_405_carries_allow(http):
    answer = http.get("/v1/sql")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST", answer.headers
    answer = http.delete("/v1/embeddings", params={"model": "mosaiks", "h3": CELL})  # two routes, one path
    assert answer.status_code == 405 and set(answer.headers["allow"].split(", ")) == {"GET", "POST"}
    assert http.get("/healthz").status_code == 200


def test_openapi_lists_every_error_status(http):
    schema = http.get("/openapi.json").json()
    operations = {(method.upper(), path): op for path, item in schema["paths"].items() for method, op in item.items()}
    expected = {
        ("POST", "/v1/embeddings"): {"401", "403", "404", "413", "422"},
        ("GET", "/v1/embeddings"): {"401", "403", "404", "422"},
        ("POST", "/v1/search"): {"401", "404", "413", "422"},
        ("POST", "/v1/sql"): {"401", "413", "422"},
        ("POST", "/v1/ingest"): {"401", "403", "413", "422"},
        ("GET", "/v1/models/{name}"): {"401", "404"},
        ("GET", "/v1/ingest/{job_id}"): {"401", "404"},
    }
    for operation, statuses in expected.items():
        listed = set(operations[operation]["responses"])
        assert statuses <= listed, (operation, sorted(listed))
    for (method, path), op in operations.items():  # every /v1 operation documents its errors
        if path.startswith("/v1/"):
            assert "401" in op["responses"], (method, path)
            if op.get("parameters") or op.get("requestBody"):
                assert "422" in op["responses"], (method, path)
