"""Table health (``rsembed-db check`` / ``fsck``): duplicate keys, orphaned files and
dangling versions, and the repair of duplicates.

- duplicate keys: rows sharing a primary key (``key``; ``(set_name, key)`` for labels),
  which concurrent writers before the conflict-checked commit (``store.commit``) could leave;
- orphaned files: index directories, data files and deletion files that no version
  references (an index build or a commit attempt that lost, or was killed, before its
  commit); harmless, and ``optimize`` removes them once they are 7 days old;
- dangling versions: versions that cannot be read or reference files that are gone.

``deduplicate`` keeps the newest row of each key (by ``created_at``; ``updated_at`` / ``at`` in the
internal tables; a tie keeps the row written last) and deletes the others by row id in
one atomic commit, retried on a conflict with a concurrent writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from rsembed_db.store.commit import PRIMARY_KEY, retry_on_conflict
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.options import arrow_filesystem

TIME_COLUMNS = ("created_at", "updated_at", "at")  # the newest row of a key wins
ROW_ID_CHUNK = 4096  # row ids per delete predicate


@dataclass
class TableCheck:
    """What ``check_table`` found (and removed, with ``repair``)."""

    table: str
    rows: int = 0
    key_columns: tuple[str, ...] = ("key",)
    duplicate_keys: int = 0  # keys stored more than once
    extra_rows: int = 0  # rows beyond one per key
    removed_rows: int = 0  # by the repair
    versions: int = 0
    dangling_versions: list[dict[str, Any]] = field(default_factory=list)  # {"version", "problem"}
    orphaned_index_files: list[str] = field(default_factory=list)
    orphaned_data_files: list[str] = field(default_factory=list)
    unversioned: bool = False  # a directory without any version: a creation that failed (garbage, no rows)

    @property
    def healthy(self) -> bool:
        """No duplicates left and every version readable (orphaned files are only garbage)."""
        return self.extra_rows == self.removed_rows and not self.dangling_versions

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "key_columns": list(self.key_columns),
                "duplicate_keys": self.duplicate_keys, "extra_rows": self.extra_rows,
                "removed_rows": self.removed_rows, "versions": self.versions,
                "dangling_versions": self.dangling_versions, "orphaned_index_files": self.orphaned_index_files,
                "orphaned_data_files": self.orphaned_data_files, "unversioned": self.unversioned,
                "healthy": self.healthy}


def key_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The declared primary-key columns in order (``key`` for tables written before they were declared)."""
    declared = [f for f in schema if (f.metadata or {}).get(PRIMARY_KEY.encode()) == b"true"]
    declared.sort(key=lambda f: int((f.metadata or {}).get(f"{PRIMARY_KEY}:position".encode(), b"0")))
    return tuple(f.name for f in declared) or ("key",)


def check_table(store: EmbeddingStore, name: str, repair: bool = False) -> TableCheck:
    """Check table ``name`` (any table of the store, internal ones included); with
    ``repair``, delete the duplicate rows (the newest of each key is kept)."""
    try:
        dataset = store.table(name).to_lance()
    except ValueError as exc:  # listed (its directory exists) but no version to open
        if "not found" not in str(exc):
            raise
        return TableCheck(name, unversioned=True)
    report = TableCheck(name, key_columns=key_columns(dataset.schema))
    doomed = _older_duplicates(dataset, report)
    if repair and doomed:
        report.removed_rows = deduplicate(store, name)
    report.rows = store.table(name).count_rows()
    _check_files(store.table(name).to_lance(), report, store.storage_options)
    return report


def deduplicate(store: EmbeddingStore, name: str) -> int:
    """Delete every row but the newest of each key, in one commit; the rows deleted."""
    table = store.table(name)

    def attempt() -> int:
        table.checkout_latest()
        dataset = table.to_lance()
        doomed = _older_duplicates(dataset, TableCheck(name))
        if doomed:
            chunks = [doomed[i:i + ROW_ID_CHUNK] for i in range(0, len(doomed), ROW_ID_CHUNK)]
            dataset.delete(" OR ".join(f"_rowid IN ({', '.join(map(str, chunk))})" for chunk in chunks))
        return len(doomed)

    with store.write_lock:
        removed = retry_on_conflict(attempt, f"removing duplicate rows of {name!r} in {store.uri}")
    table.checkout_latest()
    return removed


def _older_duplicates(dataset, report: TableCheck) -> list[int]:
    """Row ids of every row but the newest of each key stored more than once (filling ``report``)."""
    columns = list(key_columns(dataset.schema))
    when = next((c for c in TIME_COLUMNS if c in dataset.schema.names), None)
    rows = dataset.to_table(columns=columns + ([when] if when else []), with_row_id=True)
    report.rows = rows.num_rows
    counts = rows.group_by(columns).aggregate([("_rowid", "count")])
    repeated = counts.filter(pc.greater(counts["_rowid_count"], 1))
    report.duplicate_keys = repeated.num_rows
    report.extra_rows = int(pc.sum(repeated["_rowid_count"]).as_py() or 0) - repeated.num_rows
    if not repeated.num_rows:
        return []
    dup = rows.join(repeated.select(columns), keys=columns, join_type="inner")
    order = [(c, "ascending") for c in columns] + ([(when, "descending")] if when else []) + [("_rowid", "descending")]
    dup = dup.sort_by(order)
    doomed, previous = [], None
    for row in dup.select(columns + ["_rowid"]).to_pylist():
        ident = tuple(row[c] for c in columns)
        if ident == previous:
            doomed.append(row["_rowid"])
        previous = ident
    return doomed


def _listing(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def _check_files(dataset, report: TableCheck, storage_options: dict[str, str] | None = None) -> None:
    """Orphaned index / data / deletion files, and versions referencing missing files."""
    fs, root = arrow_filesystem(dataset.uri, storage_options)
    data_files = {f.base_name for f in _listing(fs, f"{root}/data")}
    deletion_files = {f.base_name for f in _listing(fs, f"{root}/_deletions")}
    index_dirs = {f.base_name for f in _listing(fs, f"{root}/_indices")}
    used_data, used_deletions, used_indices = set(), set(), set()
    versions = [v["version"] for v in dataset.versions()]
    report.versions = len(versions)
    for version in versions:
        try:
            snapshot = dataset.checkout_version(version)
            fragments = [f.metadata for f in snapshot.get_fragments()]
            indices = {idx["uuid"] for idx in snapshot.list_indices()}
        except (OSError, RuntimeError, ValueError) as exc:
            report.dangling_versions.append({"version": version, "problem": f"cannot be read: {exc}"})
            continue
        files = {d.path for f in fragments for d in f.files}
        deletions = {f.deletion_file.path(f.id).rsplit("/", 1)[-1] for f in fragments if f.deletion_file is not None}
        missing = sorted(files - data_files) + sorted(deletions - deletion_files) + sorted(indices - index_dirs)
        if missing:
            report.dangling_versions.append({"version": version, "problem": f"{len(missing)} file(s) missing: "
                                                                            + ", ".join(missing[:3])})
        used_data |= files
        used_deletions |= deletions
        used_indices |= indices
    report.orphaned_index_files = sorted(f"_indices/{d}" for d in index_dirs - used_indices)
    report.orphaned_data_files = sorted([f"data/{f}" for f in data_files - used_data]
                                        + [f"_deletions/{f}" for f in deletion_files - used_deletions])
