"""Loopback HTTP servers for tests: static files with Range requests, and a tiny STAC API.

``SimpleHTTPRequestHandler`` ignores ``Range``; GDAL's ``/vsicurl/`` reads COGs with
range requests, so ``RangeHandler`` answers them (206 + Content-Range) and logs each
request. ``StacApi`` serves a landing page, ``/search`` (POST and GET: collections,
bbox, closed datetime interval, ``query`` with eo:cloud_cover) over given items, and
``/files/...`` from a folder.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
CONFORMS = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/item-search#query"]


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files under ``server.root`` at ``/files/``, honouring ``Range: bytes=a-b``."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        path = urlparse(self.path).path
        if not path.startswith("/files/"):
            return None
        target = (self.server.root / path[len("/files/"):]).resolve()
        return target if target.is_file() and self.server.root in target.parents else None

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        target = self._file()
        if target is None:
            self.send_error(404)
            return
        data = target.read_bytes()
        match = _RANGE.fullmatch(self.headers.get("Range", "").strip())
        self.server.log.append((self.command, self.path, self.headers.get("Range")))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            data = data[start:end + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class StacHandler(RangeHandler):
    """A minimal STAC API over ``server.items`` (plus the static files)."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path in ("/", ""):
            self._json(self._landing())
        elif url.path == "/search":
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            if "bbox" in params:
                params["bbox"] = [float(v) for v in params["bbox"].split(",")]
            if "collections" in params:
                params["collections"] = params["collections"].split(",")
            self._json(self._search(params))
        else:
            super().do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        params = json.loads(self.rfile.read(length) or b"{}")
        self.server.searches.append(params)
        self._json(self._search(params))

    def _landing(self) -> dict:
        base = self.server.url
        return {"type": "Catalog", "stac_version": "1.0.0", "id": "test", "description": "test API",
                "conformsTo": CONFORMS,
                "links": [{"rel": "self", "href": f"{base}/"}, {"rel": "root", "href": f"{base}/"},
                          {"rel": "search", "href": f"{base}/search", "method": "POST",
                           "type": "application/geo+json"}]}

    def _search(self, params: dict) -> dict:
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

    def _json(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serve(root: Path, items: list[dict] | None = None) -> Iterator[ThreadingHTTPServer]:
    """A loopback server (STAC API + range-capable files under ``root``) for a ``with`` block.

    ``server.url`` is its base URL; ``server.log`` the file requests (method, path, Range);
    ``server.searches`` the POSTed search bodies.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), StacHandler)
    server.daemon_threads = True
    server.root = Path(root).resolve()
    server.items = items or []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.log, server.searches = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
