"""HTTP(S) downloads for precomputed products: atomic, retried, SHA-256 verified.

Standard library only (``urllib``). Errors say which kind of problem occurred, so a
product can turn "no network" into one configuration error and "bad file" into a
per-tile failure.
"""

from __future__ import annotations

import hashlib
import os
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
    """The downloaded bytes do not have the expected SHA-256; nothing was kept."""


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
             backoff_s: float = 0.5, timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically (temp file + rename); returns ``dest``.

    With ``sha256`` the bytes are verified before the rename, so a corrupt or tampered
    file never lands at ``dest``. HTTP 429/5xx and connection errors are retried with
    exponential backoff; 404 raises NotFoundError at once.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        try:
            return _download_once(url, dest, sha256, timeout_s)
        except (OfflineError, _Retryable) as exc:
            if attempt >= retries:
                raise exc if isinstance(exc, OfflineError) else DownloadError(str(exc)) from None
            time.sleep(backoff_s * 2 ** attempt)
            attempt += 1


def _download_once(url: str, dest: Path, sha256: str | None, timeout_s: float) -> Path:
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
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with response, os.fdopen(fd, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise HashMismatchError(f"SHA-256 mismatch for {url}: expected {sha256.lower()}, "
                                    f"got {digest.hexdigest()}; the file was not kept")
        os.replace(tmp, dest)
    except (socket.timeout, ConnectionError) as exc:
        raise _Retryable(f"transfer of {url} interrupted: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
