"""How the local S3 stand-in serves ranged reads: the median time of a 4 KiB ranged GET
from objects of 1, 32 and 256 MiB on moto's ``ThreadedMotoServer`` (the server the S3
tests and ``bench/scale_10m.py --s3`` use). Real object stores answer a ranged GET in
about the same time whatever the object's size; if moto does not, S3 figures measured on
it grow with the size of a table's files, not only with the number of requests.

    .venv-s3/bin/python bench/moto_range.py      # needs moto: scripts/setup.sh creates .venv-s3
"""

from __future__ import annotations

import os
import statistics
import time

import boto3
from moto.server import ThreadedMotoServer

SIZES_MIB = (1, 32, 256)
REPEATS = 5


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id="bench",
                          aws_secret_access_key="bench", region_name="us-east-1")
        s3.create_bucket(Bucket="rangebench")
        print(f"load average {os.getloadavg()[0]:.2f}")
        for mib in SIZES_MIB:
            s3.put_object(Bucket="rangebench", Key=f"o{mib}", Body=os.urandom(mib << 20))
            times = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                s3.get_object(Bucket="rangebench", Key=f"o{mib}", Range="bytes=4096-8191")["Body"].read()
                times.append(time.perf_counter() - started)
            print(f"{mib} MiB object: 4 KiB ranged GET, median {statistics.median(times) * 1000:.1f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
