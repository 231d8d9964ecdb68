"""HTTP(S) downloads for precomputed products: atomic, retried, verified.

A download is checked against what the publisher says about the file: a SHA-256 (the
geotessera 0.7 registries), a size in bytes (its 0.8+ manifests), the ``Content-Length``
of the answer, and the MD5 of a plain (32 hex digit) ``ETag``, as S3 sets it for
single-part objects.

Standard library only (``urllib``). Errors say which kind of problem occurred, so a
product can turn "no network" into one configuration error and "bad file" into a
per-tile failure.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from rsembed_db.errors import Unavailable

CHUNK = 1 << 20
USER_AGENT = "rsembed-db"


class DownloadError(Unavailable):
    """A file could not be downloaded."""


class OfflineError(DownloadError):
    """The server could not be reached (no network, DNS failure, refused, timed out)."""


class NotFoundError(DownloadError):
    """The server answered 404: the file is not published there."""


class HashMismatchError(DownloadError):
    """The downloaded bytes do not have the expected SHA-256, size or MD5; nothing was kept."""


_PLAIN_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


class _Retryable(Exception):
    """A transient failure (HTTP 429/5xx, interrupted transfer): worth another try."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: str | Path, sha256: str | None = None, retries: int = 3,
             backoff_s: float = 0.5, timeout_s: float = 60.0, size: int | None = None) -> Path:
    """Fetch ``url`` to ``dest`` atomically (temp file + rename); returns ``dest``.

    The bytes are verified before the rename (``sha256``, ``size``, Content-Length, a plain
    ETag's MD5), so a corrupt, truncated or tampered file never lands at ``dest``. HTTP
    429/5xx and connection errors are retried with exponential backoff; 404 raises
    NotFoundError at once.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        try:
            return _download_once(url, dest, sha256, size, timeout_s)
        except (OfflineError, _Retryable) as exc:
            if attempt >= retries:
                raise exc if isinstance(exc, OfflineError) else DownloadError(str(exc)) from None
            time.sleep(backoff_s * 2 ** attempt)
            attempt += 1


def _download_once(url: str, dest: Path, sha256: str | None, size: int | None, timeout_s: float) -> Path:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - URLs are configured
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotFoundError(f"HTTP 404 for {url}") from None
        if exc.code == 429 or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code} for {url}") from None
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OfflineError(f"cannot reach {url}: {reason}") from None
    digest, md5, received = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    declared = response.headers.get("Content-Length")
    etag = _PLAIN_ETAG.match(response.headers.get("ETag", "").strip())
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with response, os.fdopen(fd, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                md5.update(chunk)
                received += len(chunk)
                out.write(chunk)
        if declared is not None and received != int(declared):
            raise _Retryable(f"transfer of {url} cut short: {received} of {declared} bytes")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise HashMismatchError(f"SHA-256 mismatch for {url}: expected {sha256.lower()}, "
                                    f"got {digest.hexdigest()}; the file was not kept")
        if size is not None and received != size:
            raise HashMismatchError(f"size mismatch for {url}: the manifest says {size} bytes, "
                                    f"got {received}; the file was not kept")
        if etag and md5.hexdigest() != etag[1]:
            raise HashMismatchError(f"MD5 mismatch for {url}: the ETag says {etag[1]}, got "
                                    f"{md5.hexdigest()}; the file was not kept")
        os.replace(tmp, dest)
    except (socket.timeout, ConnectionError) as exc:
        raise _Retryable(f"transfer of {url} interrupted: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
