"""Exit codes of expected failures: one table, looked up through each error's bases."""

from __future__ import annotations

from rsembed_db.errors import (
    MissingWeights,
    NotFound,
    ResourceLimit,
    RsembedError,
    SpecError,
    SqlTimeout,
    TileFailure,
    Unavailable,
    WriteConflict,
)

EXIT_CODES: dict[type[RsembedError], int] = {
    SpecError: 2,        # bad input (also typer's usage errors)
    NotFound: 3,         # no such table / key / job
    Unavailable: 4,      # upstream service or download unreachable
    MissingWeights: 5,   # a model's checkpoint is not installed
    SqlTimeout: 6,       # SQL ran past --timeout
    ResourceLimit: 7,    # over a memory / size / row limit
    TileFailure: 8,      # the one tile asked for cannot be computed
    WriteConflict: 9,    # lost to concurrent writers after retries
    RsembedError: 1,
}
INGEST_SOME_FAILED = 10  # ingest committed what it could, some tiles failed
INGEST_ALL_FAILED = 11   # ingest computed nothing: every tile failed


def exit_code(exc: RsembedError) -> int:
    """The code of the nearest class in ``exc``'s bases that the table lists."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
