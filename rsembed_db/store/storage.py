"""Where a table's bytes go: vectors, other columns, indexes, and files the latest version
no longer uses (older versions kept for ``optimize``'s retention, superseded indexes).

Column bytes come from Lance's per-field statistics of the latest version, index bytes
from its index descriptions; ``total_bytes`` lists every file under the dataset's URI
(local or object store, through pyarrow's filesystems).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow.fs as pafs

from rsembed_db.store.options import arrow_filesystem
from rsembed_db.store.schema import vector_dim

INDEX_DIR = "_indices"


@dataclass(frozen=True)
class StorageReport:
    """Bytes of one table; ``per_row`` divides by ``rows``. ``raw_vector_bytes`` is the
    float32 size of the vectors (rows x dim x 4), the yardstick of the issue's targets."""

    rows: int
    vector_bytes: int
    scalar_bytes: int
    index_bytes: int
    total_bytes: int
    raw_vector_bytes: int
    stale_index_dirs: tuple[str, ...]  # index directories the latest version does not reference
    stale_index_bytes: int
    columns: dict[str, int]

    @property
    def other_bytes(self) -> int:
        """Files outside the latest version's columns and indexes: manifests, transactions,
        data and indexes of older versions still within the retention."""
        return max(self.total_bytes - self.vector_bytes - self.scalar_bytes - self.index_bytes, 0)

    def per_row(self, value: int) -> float:
        return value / self.rows if self.rows else 0.0

    @property
    def ratio_to_raw(self) -> float:
        """Bytes on disk over the raw float32 vector bytes."""
        return self.total_bytes / self.raw_vector_bytes if self.raw_vector_bytes else 0.0


def _column_of_field_ids(dataset) -> dict[int, str]:
    out: dict[int, str] = {}

    def walk(field, top: str) -> None:
        out[field.id()] = top
        for child in field.children():
            walk(child, top)

    for field in dataset.lance_schema.fields():
        walk(field, field.name())
    return out


Options = Mapping[str, str] | None  # the store's object-store options (``store.options``)


def _files(uri: str, folder: str = "", storage_options: Options = None) -> list[pafs.FileInfo]:
    fs, root = arrow_filesystem(uri, storage_options)
    path = f"{root.rstrip('/')}/{folder}" if folder else root
    try:
        return [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File]
    except FileNotFoundError:
        return []


def referenced_index_dirs(dataset) -> set[str]:
    """The index directories (uuids) the dataset's checked-out version uses."""
    return {str(idx["uuid"]) for idx in dataset.list_indices()}


def index_dirs_on_disk(dataset, storage_options: Options = None) -> set[str]:
    """Every directory under ``_indices``: referenced or not."""
    prefix = f"{INDEX_DIR}/"
    root = _files_root(dataset.uri, storage_options)
    dirs = set()
    for info in _files(dataset.uri, INDEX_DIR, storage_options):
        relative = info.path[len(root):].lstrip("/")
        if relative.startswith(prefix):
            dirs.add(relative[len(prefix):].split("/", 1)[0])
    return dirs


def _files_root(uri: str, storage_options: Options = None) -> str:
    return arrow_filesystem(uri, storage_options)[1].rstrip("/")


def storage_report(dataset, storage_options: Options = None) -> StorageReport:
    """The byte accounting of ``dataset`` (a Lance dataset at its latest version)."""
    rows = dataset.count_rows()
    names = _column_of_field_ids(dataset)
    columns: dict[str, int] = {}
    for stat in dataset.stats.data_stats().fields:
        name = names.get(stat.id, "?")
        columns[name] = columns.get(name, 0) + int(stat.bytes_on_disk)
    index_bytes = sum(int(d.total_size_bytes or 0) for d in dataset.describe_indices())
    root = _files_root(dataset.uri, storage_options)
    files = _files(dataset.uri, storage_options=storage_options)
    referenced = referenced_index_dirs(dataset)
    stale: dict[str, int] = {}
    for info in files:
        parts = info.path[len(root):].lstrip("/").split("/")
        if len(parts) > 2 and parts[0] == INDEX_DIR and parts[1] not in referenced:
            stale[parts[1]] = stale.get(parts[1], 0) + int(info.size)
    vector_bytes = columns.get("vector", 0)
    return StorageReport(
        rows=rows, vector_bytes=vector_bytes, scalar_bytes=sum(columns.values()) - vector_bytes,
        index_bytes=index_bytes, total_bytes=sum(int(i.size) for i in files),
        raw_vector_bytes=rows * vector_dim(dataset.schema) * 4,
        stale_index_dirs=tuple(sorted(stale)), stale_index_bytes=sum(stale.values()), columns=columns)
