"""A loopback HTTP server for tests: files with Range requests, and a tiny STAC API.

``SimpleHTTPRequestHandler`` ignores ``Range``; GDAL's ``/vsicurl/`` reads COGs with
range requests, so the files under ``root`` (at their relative paths) are served with
byte ranges (206 + Content-Range), and each file request is logged. ``/`` is a STAC
landing page and ``/search`` (POST and GET: collections, bbox, closed datetime interval,
``query`` with eo:cloud_cover) searches ``server.items``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CONFORMS = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/item-search#query"]


class Request(NamedTuple):
    """A logged file request."""

    method: str
    path: str
    range: str | None  # the Range header


class LoopbackServer(ThreadingHTTPServer):
    """What ``serve`` yields: its base ``url``, the STAC ``items`` it searches, the file
    requests in ``log`` and the POSTed search bodies in ``searches``."""

    daemon_threads = True

    def __init__(self, root: Path, items: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.items = items
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.log: list[Request] = []
        self.searches: list[dict[str, Any]] = []


class Handler(SimpleHTTPRequestHandler):
    """The STAC API routes, else files honouring ``Range: bytes=a-b``, ``a-`` or ``-n``."""

    server: LoopbackServer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._file(body=False)

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        if url.path == "/":
            self._json(self._landing())
        elif url.path == "/search":
            params: dict[str, Any] = {k: v[0] for k, v in parse_qs(url.query).items()}
            if "bbox" in params:
                params["bbox"] = [float(v) for v in params["bbox"].split(",")]
            if "collections" in params:
                params["collections"] = params["collections"].split(",")
            self._json(self._search(params))
        else:
            self._file(body=True)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        params = json.loads(self.rfile.read(length) or b"{}")
        self.server.searches.append(params)
        self._json(self._search(params))

    def _file(self, body: bool) -> None:
        self.server.log.append(Request(self.command, self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        match = _RANGE.fullmatch(self.headers.get("Range", "").strip())
        if match and (match[1] or match[2]):
            if match[1]:
                start, end = int(match[1]), min(int(match[2] or end), end)
            else:
                start = max(size - int(match[2]), 0)
            if start >= size:
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if body:
            with path.open("rb") as fh:
                fh.seek(start)
                self.wfile.write(fh.read(end - start + 1))

    def _landing(self) -> dict[str, Any]:
        base = self.server.url
        return {"type": "Catalog", "stac_version": "1.0.0", "id": "test", "description": "test API",
                "conformsTo": CONFORMS,
                "links": [{"rel": "self", "href": f"{base}/"}, {"rel": "root", "href": f"{base}/"},
                          {"rel": "search", "href": f"{base}/search", "method": "POST",
                           "type": "application/geo+json"}]}

    def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        items = self.server.items
        if params.get("collections"):
            items = [i for i in items if i["collection"] in params["collections"]]
        if params.get("bbox"):
            w, s, e, n = params["bbox"]
            items = [i for i in items if i["bbox"][0] < e and w < i["bbox"][2]
                     and i["bbox"][1] < n and s < i["bbox"][3]]
        if params.get("datetime"):
            start, _, end = params["datetime"].partition("/")
            items = [i for i in items if start <= i["properties"]["datetime"] <= end]  # closed, as STAC
        for prop, ops in (params.get("query") or {}).items():
            for op, value in ops.items():
                assert op == "lte", op
                items = [i for i in items if prop in i["properties"] and i["properties"][prop] <= value]
        return {"type": "FeatureCollection", "features": items, "links": []}

    def _json(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serve(root: str | Path, items: list[dict[str, Any]] | None = None) -> Iterator[LoopbackServer]:
    """A server on 127.0.0.1 for the files under ``root`` (and STAC ``items``) in a ``with`` block."""
    server = LoopbackServer(Path(root).resolve(), items or [])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
