"""Conflict-checked commits: every write of the store goes through this module.

Writers commit optimistically, whether they are threads, processes, service replicas or
a Ray driver: each Lance commit names the version it read, and Lance refuses (or rebases
and retries) a commit that conflicts with one made since. Two concurrent ``merge_insert``
calls that insert the same *new* key touch disjoint fragments, though, so Lance sees the
conflict only when the merge records the keys it inserted (a Bloom filter in its
transaction). In pylance 14 it does that when the join column is declared the table's
(unenforced) primary key and the merge runs as a hash join: the scalar-index path leaves
the filter out (measured: 4 writers, 60 keys, 64-74 rows with the key index used, 61 = 60 + 1
without). So ``upsert`` declares the primary key and joins without the index; on a table of
1M rows the join costs the same ~0.12 s as the indexed one.

Index builds, folds, compaction and deletes retry on ``CommitConflictError`` with jittered
backoff. Exhausted retries raise ``WriteConflict`` (nothing of that commit was written:
run again, stored keys are skipped); storage that refuses writes (read-only, permission
denied, disk or quota full) raises ``StorageError``. Neither leaves a partial commit.
"""

from __future__ import annotations

import datetime as dt
import errno
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import pyarrow as pa

from rsembed_db.errors import StorageError, WriteConflict

T = TypeVar("T")
PRIMARY_KEY = "lance-schema:unenforced-primary-key"
PRIMARY_KEY_POSITION = "lance-schema:unenforced-primary-key:position"
MERGE_RETRIES = 40  # Lance's own conflict retries of one merge
MERGE_TIMEOUT = dt.timedelta(seconds=300)  # ... within this time
CONFLICT_ATTEMPTS = 12  # attempts of an index build, fold, compaction or delete
BACKOFF_S = 0.05  # first wait between attempts; doubled each time, with jitter, capped at 2 s
RETRY_HINT = "run the command again: committed rows are kept and stored keys are skipped"
_CONFLICT = re.compile(r"commit conflict|too many concurrent writers|preempted by concurrent|retryable", re.I)
_OS_ERROR = re.compile(r"os error (\d+)")
_STORAGE_ERRNOS = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied", errno.ENOSPC: "no space left on the device",
                   errno.EDQUOT: "the disk quota is exhausted", errno.EFBIG: "a file would exceed the size limit"}


def primary_key_fields(columns: Sequence[str], schema: pa.Schema) -> list[pa.Field]:
    """``schema``'s fields with ``columns`` declared the primary key (in that order)."""
    fields = []
    for field in schema:
        if field.name in columns:
            meta = {**(field.metadata or {}), PRIMARY_KEY.encode(): b"true"}
            if len(columns) > 1:
                meta[PRIMARY_KEY_POSITION.encode()] = str(list(columns).index(field.name) + 1).encode()
            field = field.with_metadata(meta)
        fields.append(field)
    return fields


def with_primary_key(schema: pa.Schema, columns: Sequence[str]) -> pa.Schema:
    """``schema`` with ``columns`` declared the (unenforced) primary key."""
    return pa.schema(primary_key_fields(columns, schema), metadata=schema.metadata)


def has_primary_key(schema: pa.Schema, columns: Sequence[str]) -> bool:
    return all((schema.field(c).metadata or {}).get(PRIMARY_KEY.encode()) == b"true" for c in columns)


def declare_primary_key(dataset, columns: Sequence[str]):
    """Declare ``columns`` the primary key of a table created without it (a metadata-only
    commit, retried on conflict); returns the dataset at its latest version."""
    if has_primary_key(dataset.schema, columns):
        return dataset
    updates = {f.name: {k.decode(): v.decode() for k, v in f.metadata.items()}
               for f in primary_key_fields(columns, dataset.schema) if f.name in columns}

    def declare():
        latest = dataset.checkout_version(dataset.latest_version)
        if not has_primary_key(latest.schema, columns):
            latest.update_field_metadata(updates)
        return latest.checkout_version(latest.latest_version)

    return retry_on_conflict(declare, f"declaring the primary key of {dataset.uri}")


def upsert(dataset, data: pa.Table, on: Sequence[str]) -> dict:
    """Insert new keys and replace stored ones in one atomic commit, checked against
    concurrent writers (see the module docstring); returns Lance's merge statistics."""
    dataset = declare_primary_key(dataset, on)
    builder = (dataset.merge_insert(list(on)).when_matched_update_all().when_not_matched_insert_all()
               .use_index(False).conflict_retries(MERGE_RETRIES).retry_timeout(MERGE_TIMEOUT))
    try:
        with storage_errors(dataset.uri):
            return builder.execute(data.cast(dataset.schema))
    except (OSError, RuntimeError) as exc:
        if is_conflict(exc):
            raise WriteConflict(f"a commit of {data.num_rows} rows to {dataset.uri} lost to concurrent writers "
                                f"{MERGE_RETRIES} times within {MERGE_TIMEOUT.seconds} s; nothing of it was "
                                f"written; {RETRY_HINT}") from None
        raise


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is Lance refusing a commit because another one came first."""
    return type(exc).__name__ == "CommitConflictError" or bool(_CONFLICT.search(str(exc)))


def retry_on_conflict(action: Callable[[], T], what: str, attempts: int = CONFLICT_ATTEMPTS) -> T:
    """``action()``, run again (after a jittered, doubling wait) while it loses commit
    conflicts; WriteConflict naming ``what`` after ``attempts`` tries. ``action`` must
    re-read the latest version itself (and skip work another writer has done)."""
    for attempt in range(attempts):
        try:
            with storage_errors(what):
                return action()
        except (OSError, RuntimeError) as exc:
            if not is_conflict(exc) or isinstance(exc, StorageError):
                raise
            if attempt == attempts - 1:
                raise WriteConflict(f"{what} lost to concurrent writers {attempts} times; {RETRY_HINT}") from None
            time.sleep(min(2.0, BACKOFF_S * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


@contextmanager
def storage_errors(where: str) -> Iterator[None]:
    """Turn a write refused by the storage (read-only, permissions, no space) into StorageError."""
    try:
        yield
    except StorageError:
        raise
    except (OSError, RuntimeError) as exc:
        reason = storage_reason(exc)
        if reason is None:
            raise
        raise StorageError(f"cannot write {where}: {reason}; what was stored before is intact") from None


def storage_reason(exc: BaseException) -> str | None:
    """Why the storage refused a write, if ``exc`` says so (an errno, or Lance's ``os error N``)."""
    codes = [exc.errno] if isinstance(exc, OSError) and exc.errno else []
    codes += [int(code) for code in _OS_ERROR.findall(str(exc))]
    return next((_STORAGE_ERRNOS[code] for code in codes if code in _STORAGE_ERRNOS), None)
