"""A no-op service for ``bench/search_bench.py``: ``POST /v1/search`` takes the same JSON
body and answers a stored answer of the same size, without searching. Its round trip is
what uvicorn, FastAPI, the client and loopback cost on this machine: the floor under the
service's own overhead.

    RSEMBED_BENCH_ANSWER=answer.json python -m uvicorn --factory bench.http_floor:create_app
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse


def create_app() -> FastAPI:
    answer = json.loads(Path(os.environ["RSEMBED_BENCH_ANSWER"]).read_text())
    app = FastAPI()

    @app.post("/v1/search")
    def search(body: Annotated[dict[str, Any], Body()]) -> JSONResponse:  # a thread-pool hop, as the service's
        return JSONResponse(answer)

    return app
