"""Serve the app on a free loopback port: ``python serve_app.py '<json ServiceSettings fields>'``.

Prints ``port <n>`` once listening; uvicorn stops on SIGTERM / SIGINT as ``rsembed-db serve`` does.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import uvicorn

from rsembed_db.query.sql import SqlLimits
from rsembed_db.service import ServiceSettings, create_app
from rsembed_db.service.auth import ApiKeys


def main() -> None:
    config = json.loads(sys.argv[1])
    if "sql" in config:
        config["sql"] = SqlLimits(**config["sql"])
    if "api_keys" in config:
        config["api_keys"] = ApiKeys.parse(config["api_keys"], "test")
    for name in ("imagery",):
        if name in config:
            config[name] = tuple(config[name])
    srv = uvicorn.Server(uvicorn.Config(create_app(ServiceSettings(**config)), host="127.0.0.1", port=0,
                                        log_level="warning", lifespan="on"))

    def announce() -> None:
        while not srv.started:
            time.sleep(0.02)
        print(f"port {srv.servers[0].sockets[0].getsockname()[1]}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    srv.run()


if __name__ == "__main__":
    main()
