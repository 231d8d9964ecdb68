"""Every error rsembed-db raises on purpose, under one root.

Each class also derives from the builtin a caller would catch without knowing this
module (``SpecError`` is a ``ValueError``, ``NotFound`` a ``LookupError``...). The
command line maps them to exit codes once (``cli.errors.EXIT_CODES``), the HTTP
service to statuses once (``service.errors.STATUS_CODES``); both resolve a class
through its bases, so a new subclass inherits its parent's code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class RsembedError(Exception):
    """The root of every expected failure; ``field`` names the input concerned, if any."""

    field: str | None = None


class SpecError(RsembedError, ValueError):
    """Invalid input: names the offending field and, where finite, the allowed values."""

    def __init__(self, field: str, message: str, allowed: Iterable[object] | None = None):
        self.field = field
        self.message = message
        self.allowed = tuple(allowed) if allowed is not None else None
        text = f"{field}: {message}"
        if self.allowed is not None:
            text += f" (allowed: {', '.join(map(str, self.allowed))})"
        super().__init__(text)


class NotFound(RsembedError, LookupError):
    """Something asked for by name is not there: a table, a stored key, a job, a tile."""

    def __init__(self, field: str, message: str, keys: Sequence[str] = ()):
        self.field = field
        self.message = message
        self.keys = list(keys)
        super().__init__(f"{field}: {message}")


class Unavailable(RsembedError, ConnectionError):
    """An upstream service or remote file could not be reached or answered with an error."""


class MissingWeights(RsembedError, FileNotFoundError):
    """A model's published checkpoint is not available locally and cannot be downloaded."""

    field = "weights"


class SqlTimeout(RsembedError, TimeoutError):
    """A SQL query ran past its time limit and was interrupted."""

    field = "sql"


class ResourceLimit(RsembedError, MemoryError):
    """A request would need more memory, time or rows than its configured limit."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class TileFailure(RsembedError, RuntimeError):
    """A tile that cannot be computed (no imagery, no valid pixel...): recorded, not fatal.

    ``key``: the storage key of the request that failed, when known."""

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(message)


class BadInput(TileFailure):
    """A fetched input failed its quality check (``SensorSpec.check_input``)."""


class _StoreFailure(RsembedError):
    """A failure of the store as a whole (``field`` is ``db``)."""

    def __init__(self, message: str, field: str = "db"):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class WriteConflict(_StoreFailure, RuntimeError):
    """A commit lost to concurrent writers more often than its retries allow (nothing of it was written)."""


class StorageError(_StoreFailure, OSError):
    """The database cannot be written: read-only, permission denied, or no space left.

    Lance commits are atomic, so what was stored before stays intact."""
