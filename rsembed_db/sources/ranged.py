"""Files under a root, local or HTTP(S), read whole or by byte ranges, with byte counts.

``open_files(location)`` gives a ``LocalFiles`` (a directory) or ``HttpFiles`` (a base URL:
persistent keep-alive connections per thread, ``Range`` requests, HTTP 429/5xx and
dropped connections retried). Nearby ranges of one file are merged into one request
(``read_ranges``), so reading many small chunks costs a few round trips. Every byte and
request is counted (``bytes_read``, ``requests``), which is how benchmarks report I/O.
Standard library only.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from pathlib import Path

from rsembed_db.sources.download import USER_AGENT, DownloadError, OfflineError

MERGE_GAP = 64 * 1024  # bytes between two ranges below which one request reads both
RETRIES = 3
TIMEOUT_S = 60.0


class Files(ABC):
    """Files under a root; paths are relative, with ``/``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.bytes_read = 0
        self.requests = 0
        self._lock = threading.Lock()

    def _count(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self.requests += 1

    def location(self, path: str) -> str:
        return f"{self.root.rstrip('/')}/{path}"

    @abstractmethod
    def read(self, path: str) -> bytes | None:
        """The whole file; None when it does not exist."""

    @abstractmethod
    def read_range(self, path: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer at the end of the file)."""

    @abstractmethod
    def read_suffix(self, path: str, length: int) -> bytes | None:
        """The last ``length`` bytes; None when the file does not exist."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Whether the file exists (an unreachable server raises OfflineError)."""

    def read_ranges(self, path: str, ranges: list[tuple[int, int]]) -> list[bytes | memoryview]:
        """Bytes of each (start, length), nearby ranges fetched together."""
        order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
        out: list[bytes | memoryview] = [b""] * len(ranges)
        k = 0
        while k < len(order):
            first = ranges[order[k]][0]
            end = first + ranges[order[k]][1]
            j = k + 1
            while j < len(order) and ranges[order[j]][0] - end <= MERGE_GAP:
                end = max(end, ranges[order[j]][0] + ranges[order[j]][1])
                j += 1
            block = memoryview(self.read_range(path, first, end - first))  # slices without copies
            for i in order[k:j]:
                start, length = ranges[i]
                out[i] = block[start - first:start - first + length]
            k = j
        return out


class LocalFiles(Files):
    def __init__(self, root: str | Path) -> None:
        super().__init__(str(root))
        self.base = Path(root)

    def read(self, path: str) -> bytes | None:
        try:
            data = (self.base / path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        self._count(len(data))
        return data

    def read_range(self, path: str, start: int, length: int) -> bytes:
        with open(self.base / path, "rb") as fh:
            fh.seek(start)
            data = fh.read(length)
        self._count(len(data))
        return data

    def read_suffix(self, path: str, length: int) -> bytes | None:
        try:
            with open(self.base / path, "rb") as fh:
                size = fh.seek(0, 2)
                fh.seek(max(size - length, 0))
                data = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        self._count(len(data))
        return data

    def exists(self, path: str) -> bool:
        return (self.base / path).is_file()


class HttpFiles(Files):
    """Files under an http(s) base URL."""

    def __init__(self, url: str) -> None:
        super().__init__(url.rstrip("/"))
        parsed = urllib.parse.urlsplit(self.root)
        self.scheme, self.netloc, self.prefix = parsed.scheme, parsed.netloc, parsed.path.rstrip("/")
        self._local = threading.local()

    def read(self, path: str) -> bytes | None:
        return self._get(path, None, missing_ok=True)

    def read_range(self, path: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        data = self._get(path, f"bytes={start}-{start + length - 1}", missing_ok=False, skip=start)
        assert data is not None
        return data[:length]

    def read_suffix(self, path: str, length: int) -> bytes | None:
        return self._get(path, f"bytes=-{length}", missing_ok=True, suffix=length)

    def exists(self, path: str) -> bool:
        status, _, _ = self._request("HEAD", path, None)
        return status < 400

    def _get(self, path: str, byte_range: str | None, missing_ok: bool, skip: int = 0,
             suffix: int | None = None) -> bytes | None:
        status, headers, body = self._request("GET", path, byte_range)
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            raise DownloadError(f"HTTP {status} for {self.location(path)}")
        if status == 200 and byte_range is not None:  # the server ignored Range: cut it ourselves
            body = body[-suffix:] if suffix is not None else body[skip:]
        self._count(len(body))
        return body

    def _request(self, method: str, path: str, byte_range: str | None) -> tuple[int, dict, bytes]:
        url = f"{self.prefix}/{urllib.parse.quote(path)}"
        headers = {"User-Agent": USER_AGENT, "Connection": "keep-alive"}
        if byte_range:
            headers["Range"] = byte_range
        for attempt in range(RETRIES + 1):
            conn = self._connection()
            try:
                conn.request(method, url, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (http.client.HTTPException, ConnectionError, socket.timeout, OSError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == RETRIES:
                    raise OfflineError(f"cannot reach {self.location(path)}: {exc}") from None
                time.sleep(0.2 * 2 ** attempt)
                continue
            if response.status == 429 or response.status >= 500:
                if attempt == RETRIES:
                    raise DownloadError(f"HTTP {response.status} for {self.location(path)}")
                time.sleep(0.5 * 2 ** attempt)
                continue
            return response.status, dict(response.getheaders()), body
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.netloc, timeout=TIMEOUT_S)
            self._local.conn = conn
        return conn


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def open_files(location: str | Path) -> Files:
    """``HttpFiles`` for an http(s) URL, else ``LocalFiles`` for a directory."""
    text = str(location)
    return HttpFiles(text) if is_url(text) else LocalFiles(Path(text).expanduser())
