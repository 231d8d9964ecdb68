"""A local S3 server for the object-storage tests: moto's server in a process of its own.

moto (and boto3) cannot share the lean environment (botocore pins python-dateutil < 3,
the lean constraints hold 4.0), so ``scripts/setup.sh`` installs ``moto[server]`` into
``.venv-s3`` and the tests start this file with that interpreter (``$RSEMBED_S3_PYTHON``
overrides it). Run as a script, it starts ``ThreadedMotoServer`` on 127.0.0.1 (a free
port), creates the bucket(s) named on the command line, prints ``PORT <n>`` and serves
until its standard input closes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_PYTHON = "RSEMBED_S3_PYTHON"
REQUIRED = "RSEMBED_REQUIRE_S3"  # set by scripts/test.sh: a missing server fails instead of skipping
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_ALLOW_HTTP": "true"}


def s3_python() -> Path | None:
    """The interpreter that has moto: ``$RSEMBED_S3_PYTHON``, else ``.venv-s3`` of this checkout."""
    given = os.environ.get(ENV_PYTHON)
    path = Path(given) if given else ROOT / ".venv-s3" / "bin" / "python"
    return path if path.exists() else None


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables LanceDB reads, pointing at this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT": self.endpoint}

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(python: Path, buckets: list[str]) -> S3Server:
    process = subprocess.Popen([str(python), __file__, *buckets], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("PORT "):
            return S3Server(process, f"http://127.0.0.1:{int(line.split()[1])}")
    raise RuntimeError(f"the S3 server exited with {process.wait()} before it listened")


def _serve(buckets: list[str]) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name=CREDENTIALS["AWS_REGION"],
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    _serve(sys.argv[1:])
