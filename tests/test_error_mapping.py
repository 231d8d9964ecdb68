"""One error hierarchy, mapped once: CLI exit codes and HTTP statuses per kind of failure."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rsembed_db.cli.errors import EXIT_CODES, exit_code
from rsembed_db.errors import (
    MissingWeights,
    NotFound,
    ResourceLimit,
    RsembedError,
    SpecError,
    SqlTimeout,
    TileFailure,
    Unavailable,
    WriteConflict,
)
from rsembed_db.service import ServiceSettings, create_app
from rsembed_db.service.errors import STATUS_CODES, status_code
from tests.conftest import SCENE, run_cli
from tests.store_rows import toy_store

CLOSED_PORT_STAC = "stac:http://127.0.0.1:9/stac#s2"  # nothing listens on port 9 (discard)


def test_every_kind_has_a_builtin_base_and_one_code_each():
    kinds = [SpecError, NotFound, Unavailable, MissingWeights, SqlTimeout, ResourceLimit, TileFailure,
             WriteConflict]
    builtins = [ValueError, LookupError, ConnectionError, FileNotFoundError, TimeoutError, MemoryError,
                RuntimeError, RuntimeError]
    for kind, builtin in zip(kinds, builtins, strict=True):
        assert issubclass(kind, RsembedError) and issubclass(kind, builtin)
        assert kind in EXIT_CODES and kind in STATUS_CODES
    assert len({EXIT_CODES[k] for k in kinds}) == len(kinds)
    assert (status_code(NotFound("table", "x")), status_code(Unavailable("x")), status_code(SqlTimeout("x"))) \
        == (404, 503, 504)

    class Narrower(NotFound):
        pass

    assert exit_code(Narrower("key", "x")) == EXIT_CODES[NotFound] == 3   # resolved through the bases


def test_cli_exit_codes_name_the_kind(tmp_path):
    db = tmp_path / "db"
    toy_store(db)
    missing = run_cli("search", "--table", "nope", "--key", "k", db=db, check=False)
    assert missing.returncode == 3 and missing.stderr.startswith("error: table: no table 'nope'")
    assert "Traceback" not in missing.stderr
    unreachable = run_cli("get", "--model", "mosaiks", "--lon", "12.6", "--lat", "52.49", "--buffer-m", "200",
                          "--year", "2017", "--source", CLOSED_PORT_STAC, db=db, check=False)
    assert unreachable.returncode == 4 and "cannot reach the STAC API" in unreachable.stderr
    bad = run_cli("get", "--model", "mosaiks", "--lon", "12.6", "--lat", "52.49", "--buffer-m", "-1",
                  "--year", "2017", "--imagery", str(SCENE), db=db, check=False)
    assert bad.returncode == 2 and "buffer_m" in bad.stderr


def test_http_statuses_name_the_kind(tmp_path):
    db = tmp_path / "db"
    toy_store(db)
    app = create_app(ServiceSettings(db=str(db), source=CLOSED_PORT_STAC))
    with TestClient(app, raise_server_exceptions=False) as c:
        missing = c.post("/v1/search", json={"table": "nope", "key": "k"})
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "table"
        unreachable = c.get("/v1/embeddings", params={"model": "mosaiks", "lon": 12.6, "lat": 52.49,
                                                      "buffer_m": 200, "year": 2017})
        assert unreachable.status_code == 503 and "cannot reach the STAC API" in unreachable.json()["error"]["message"]


def test_service_keeps_a_bounded_set_of_models_and_refuses_huge_configs(tmp_path):
    db = tmp_path / "db"
    toy_store(db)
    app = create_app(ServiceSettings(db=str(db), imagery=(str(SCENE),), max_producers=2))
    with TestClient(app, raise_server_exceptions=False) as c:
        for seed in range(5):  # a read request naming a model configuration builds its producer
            answer = c.get("/v1/embeddings", params={"model": "mosaiks", "model_config": f'{{"seed": {seed}}}',
                                                     "lon": 12.6, "lat": 52.49, "buffer_m": 200, "year": 2017,
                                                     "compute": "never"})
            assert answer.status_code == 404, answer.json()
        assert app.state.ctx.loaded_producers() == 2
        huge = c.post("/v1/search", json={"model": "mosaiks", "model_config": {"num_filters": 500_000},
                                          "vector": [0.0] * 256})
        assert huge.status_code == 422 and huge.json()["error"]["field"] == "num_filters"


@pytest.mark.parametrize("config", [{"num_filters": 0}, {"kernel_size": 99}, {"seed": -1}])
def test_mosaiks_config_bounds(config):
    from rsembed_db.producers.catalog import get_embedder

    with pytest.raises(SpecError) as err:
        get_embedder("mosaiks", **config)
    assert err.value.field == next(iter(config))
