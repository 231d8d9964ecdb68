"""Property-based fuzz of the HTTP API over its own OpenAPI schema (schemathesis on
hypothesis): valid and invalid requests for every operation, sent to a live server on
127.0.0.1; no answer may be a server error (>= 500). Examples are bounded and derandomized.

The server reads the demo scene (so compute-on-miss answers rather than 503 "no imagery")
and plans at most a few tiles per ingest (so a fuzzed region never starts a long job).
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from rsembed_db.service import ServiceSettings, create_app
from tests.conftest import SCENE
from tests.helpers.live_server import server_thread, small_store

EXAMPLES = 8  # per operation (each also gets the schema's examples and edge cases)
SETTINGS = ServiceSettings(db="unused", imagery=(str(SCENE),), max_region_tiles=4, max_batch=4)
schema = schemathesis.openapi.from_dict(create_app(SETTINGS).openapi())
seen: dict[int, int] = {}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "db"
    small_store(db)
    settings_ = ServiceSettings(**{**SETTINGS.__dict__, "db": str(db)})
    with server_thread(settings_) as url:
        yield url
    print(f"statuses answered: {dict(sorted(seen.items()))}")


@pytest.fixture(scope="module")
def session():
    with requests.Session() as keep_alive:  # one connection for the whole fuzz, as a client would
        yield keep_alive


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case, base, session):
    answer = case.call(base_url=base, session=session, timeout=120)
    seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
    assert answer.status_code < 500, f"{case.method} {case.formatted_path} {case.body!r} {case.query!r}: " \
                                     f"{answer.status_code} {answer.text[:500]}"
    assert session.get(f"{base}/healthz", timeout=60).status_code == 200
