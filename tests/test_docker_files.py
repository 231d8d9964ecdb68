"""``docker/``: the image's Dockerfile and the replicas' compose file, checked without Docker.

No Docker daemon runs where the tests run, so the image is not built here. What can be
checked is: every path the Dockerfile copies and the compose file mounts exists; the image
exposes the service's port, runs as a non-root user, serves by default and has a health
check; the compose file defines N > 1 API replicas over one ``s3://`` store behind a proxy
that routes to them. Then the compose topology runs without containers: a local S3 server
(moto, as the compose file's ``s3`` service), the ``seed`` service's command and two
``api`` replicas with the compose file's own environment and commands, each probed with the
Dockerfile's own HEALTHCHECK command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import yaml

from rsembed_db.store import EmbeddingStore
from rsembed_db.tiling.plan import tile_region
from rsembed_db.tiling.region import load_region
from tests.conftest import REGION, ROOT
from tests.helpers import s3_server
from tests.helpers.serve import ServeProcess

DOCKER = ROOT / "docker"
DOCKERFILE = (DOCKER / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
IN_IMAGE = "/app/"  # the Dockerfile's WORKDIR, holding the copied repository files


def instructions(name: str) -> list[str]:
    """Arguments of every ``name`` instruction of the Dockerfile (continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_dockerfile_serves_as_a_non_root_user_with_a_health_check():
    for copy in instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert instructions("WORKDIR") == [IN_IMAGE.rstrip("/")]
    assert instructions("EXPOSE") == ["8000"]
    assert instructions("USER") and instructions("USER")[-1] not in ("root", "0")
    assert json.loads(instructions("ENTRYPOINT")[0]) == ["rsembed-db"]
    assert json.loads(instructions("CMD")[0]) == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "/healthz" in instructions("HEALTHCHECK")[0] and "8000" in instructions("HEALTHCHECK")[0]
    assert '"torch==2.13.0"' in DOCKERFILE and "-c constraints/lean.txt" in DOCKERFILE


def test_compose_runs_several_api_replicas_over_one_s3_store_behind_a_proxy():
    services = COMPOSE["services"]
    assert {"s3", "bucket", "seed", "api", "proxy"} <= set(services)
    assert services["api"]["deploy"]["replicas"] >= 2
    assert services["api"]["environment"]["RSEMBED_DB"].startswith("s3://")
    assert services["seed"]["environment"]["RSEMBED_DB"] == services["api"]["environment"]["RSEMBED_DB"]
    build = services["seed"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    assert services["api"]["image"] == services["seed"]["image"]
    for service in services.values():
        for volume in service.get("volumes", []):
            assert (DOCKER / volume.split(":")[0]).exists(), volume
    nginx = (DOCKER / "nginx.conf").read_text()
    port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    assert f"http://api:{port}" in nginx and port in services["api"]["expose"]
    # the seed's and the API's paths inside the image are files of the repository
    for value in [*services["seed"]["command"], services["api"]["environment"]["RSEMBED_IMAGERY"]]:
        if value.startswith(IN_IMAGE):
            assert (ROOT / value.removeprefix(IN_IMAGE)).exists(), value


@pytest.fixture(scope="module")
def s3() -> Iterator[s3_server.S3Server]:
    python = s3_server.s3_python()
    if python is None:
        if os.environ.get(s3_server.REQUIRED):
            pytest.fail("no moto interpreter (.venv-s3 or $RSEMBED_S3_PYTHON); run scripts/setup.sh")
        pytest.skip("no moto interpreter: scripts/setup.sh installs moto[server] into .venv-s3")
    bucket = COMPOSE["services"]["api"]["environment"]["RSEMBED_DB"].removeprefix("s3://").split("/")[0]
    server = s3_server.start(python, [bucket])
    try:
        yield server
    finally:
        server.stop()


def compose_env(service: str, s3: s3_server.S3Server) -> dict[str, str]:
    """The service's environment, its S3 endpoint pointed at the local server, paths in the image at the checkout."""
    env = {k: str(v) for k, v in COMPOSE["services"][service]["environment"].items()}
    env["AWS_ENDPOINT"] = s3.endpoint
    return {k: v.replace(IN_IMAGE, f"{ROOT}/") for k, v in env.items()}


def test_the_compose_topology_seeds_then_serves_from_two_replicas(s3, tmp_path):
    seed = [arg.replace(IN_IMAGE, f"{ROOT}/") for arg in COMPOSE["services"]["seed"]["command"]]
    seeded = subprocess.run([sys.executable, "-m", "rsembed_db", *seed], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **compose_env("seed", s3)})
    assert seeded.returncode == 0, seeded.stderr
    env = compose_env("api", s3)
    db = env["RSEMBED_DB"]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert EmbeddingStore(db).table("mosaiks").count_rows() == len(tile_region(load_region(REGION), "h3:8"))
    reader = env["RSEMBED_API_KEYS"].split(",")[0].split(":")[0]
    health = shlex.split(instructions("HEALTHCHECK")[0].split(" CMD ", 1)[1])
    replicas = [ServeProcess(db, env=env, log=tmp_path / f"api{i}.log") for i in (0, 1)]
    try:
        for replica in replicas:
            replica.wait_healthy()
            probe = [sys.executable if arg == "python" else arg.replace(":8000/", f":{replica.port}/") for arg in health]
            assert subprocess.run(probe, timeout=30).returncode == 0
            assert httpx.post(f"{replica.url}/v1/search", json={"model": "mosaiks", "near": [12.58, 52.49], "k": 3},
                              timeout=60).status_code == 401
            found = httpx.post(f"{replica.url}/v1/search", json={"model": "mosaiks", "near": [12.58, 52.49], "k": 3},
                               headers={"X-API-Key": reader}, timeout=60)
            assert found.status_code == 200 and len(found.json()["results"]) == 3
    finally:
        for replica in replicas:
            replica.stop()
