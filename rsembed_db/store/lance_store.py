"""EmbeddingStore: LanceDB tables of embeddings plus the failure log.

Every write is a conflict-checked ``merge_insert`` on ``key`` (``store.commit``): a Lance
commit is atomic, so a run killed at any point leaves whole commits only, a replay updates
rather than duplicates, and concurrent writers end with every key stored once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import BTree

from rsembed_db.errors import NotFound, SpecError
from rsembed_db.store.commit import retry_on_conflict, upsert
from rsembed_db.store.options import storage_options_from_env
from rsembed_db.store.schema import (
    FAILURE_SCHEMA,
    FAILURES_TABLE,
    INTERNAL_TABLES,
    as_float32_vectors,
    check_float16_range,
    check_vector_dtype,
    embedding_schema,
    vector_dim,
    vector_dtype,
)

if TYPE_CHECKING:  # the write path imports them when it runs (store/records_arrow.py)
    from rsembed_db.producers.records import EmbeddingRecord, FailureRecord

KEY_CHUNK = 512  # keys per IN (...) lookup
SCAN_RATIO = 8  # scan the key column when keys x SCAN_RATIO >= rows


def default_db_path() -> str:
    """``$RSEMBED_DB`` or ``./rsembed.lance``."""
    return os.environ.get("RSEMBED_DB", "rsembed.lance")


def vector_dtype_of(table) -> str:
    """The stored vector dtype of a LanceDB table (``float32`` / ``float16``)."""
    return vector_dtype(table.schema)


def sql_quote(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int
    dim: int
    models: tuple[str, ...]
    tilings: dict[str, int]  # rows per tiling: "h3:8", "point_buffer", "bbox", "grid"
    vector_dtype: str = "float32"  # how the vectors are stored (users always get float32)


class EmbeddingStore:
    """A directory (or object-store URI) of LanceDB tables.

    ``storage_options``: LanceDB object-store options (``store.options``), on top of
    ``$RSEMBED_STORAGE_OPTIONS`` and the ``AWS_*`` / ``GOOGLE_*`` / ``AZURE_*`` variables.
    """

    def __init__(self, uri: str | Path | None = None, storage_options: dict[str, str] | None = None) -> None:
        self.uri = str(uri or default_db_path())
        self.storage_options = {**storage_options_from_env(), **(storage_options or {})}
        self.db = lancedb.connect(self.uri, storage_options=self.storage_options or None)
        self._lock = threading.Lock()
        # Commits from this process's threads (ingest jobs, compute-on-miss) go one at a
        # time: fewer conflicts to retry. Other processes are handled by ``store.commit``.
        self._write_lock = threading.RLock()
        self._tables: dict[str, Any] = {}
        self._datasets: dict[str, Any] = {}

    # tables ---------------------------------------------------------------
    def _all_tables(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = self.db.list_tables(page_token=token)
            names += page.tables
            token = page.page_token
            if not token:
                return names

    def table_names(self) -> list[str]:
        """The model tables (internal ones such as ``_failures``, ``_labels``, ``_jobs`` and
        staging tables, whose names start with ``_``, left out)."""
        return sorted(n for n in self._all_tables() if n not in INTERNAL_TABLES and not n.startswith("_"))

    def internal_names(self) -> list[str]:
        """Every table that is not a model table (``_failures``, ``_labels``, ``_jobs``, staging)."""
        return sorted(set(self._all_tables()) - set(self.table_names()))

    def has_table(self, name: str) -> bool:
        return name in self._all_tables()

    def table(self, name: str):
        """An existing table; NotFound naming ``table`` (and the tables there are) when absent."""
        with self._lock:
            if name not in self._tables:
                if not self.has_table(name):
                    names = ", ".join(self.table_names()) or "none yet"
                    raise NotFound("table", f"no table {name!r} in {self.uri} (tables: {names})")
                self._tables[name] = self.db.open_table(name)
            table = self._tables[name]
        table.checkout_latest()
        return table

    def ensure_table(self, name: str, dim: int, vector_dtype: str | None = None, *,
                     create_dtype: str = "float32"):
        """Open or create the table for vectors of width ``dim``; refuses a width mismatch.

        ``vector_dtype``: the dtype the caller requires (SpecError when an existing table
        stores another); a new table is created with it, or with ``create_dtype`` when None.
        """
        dtype = check_vector_dtype(vector_dtype or create_dtype)
        with self._lock:
            if name not in self._tables:
                # create_table(exist_ok=True) refuses an existing table of another schema
                # (another vector dtype): open those as they are, the checks below speak
                self._tables[name] = self.db.open_table(name) if self.has_table(name) else \
                    self._create_table(name, embedding_schema(dim, dtype))
            table = self._tables[name]
        existing = vector_dim(table.schema)
        if existing != dim:
            raise SpecError("model", f"table {name!r} holds {existing}-d vectors, got {dim}-d; "
                            "use another model variant name")
        stored = vector_dtype_of(table)
        if vector_dtype is not None and stored != vector_dtype:
            raise SpecError("vector_dtype", f"table {name!r} stores {stored} vectors, not {vector_dtype}; "
                            "a table's vector dtype is fixed when it is created", (stored,))
        return table

    def _create_table(self, name: str, schema: pa.Schema):
        """Open or create table ``name``; a concurrent creation by another process is retried."""
        def create():
            try:
                return self.db.create_table(name, schema=schema, exist_ok=True)
            except (OSError, RuntimeError, ValueError) as exc:
                if "already exists" in str(exc) or name in self._all_tables():
                    try:
                        return self.db.open_table(name)
                    except (OSError, RuntimeError, ValueError):
                        # A directory without a version: the creation itself failed (e.g. the disk
                        # filled after its mkdir); report why, not that the table is missing.
                        raise exc from None
                raise
        return retry_on_conflict(create, f"creating table {name!r} in {self.uri}")

    def info(self) -> list[TableInfo]:
        out = []
        for name in self.table_names():
            table = self.table(name)
            rows = table.to_lance().to_table(columns=["model", "spatial_kind", "h3_res"])
            tilings: dict[str, int] = {}
            for row in rows.group_by(["spatial_kind", "h3_res"]).aggregate([([], "count_all")]).to_pylist():
                label = f"h3:{row['h3_res']}" if row["spatial_kind"] == "h3" else row["spatial_kind"]
                tilings[label] = tilings.get(label, 0) + row["count_all"]
            out.append(TableInfo(name, rows.num_rows, vector_dim(table.schema),
                                 tuple(sorted(set(rows["model"].to_pylist()))), dict(sorted(tilings.items())),
                                 vector_dtype_of(table)))
        return out

    # writes ---------------------------------------------------------------
    def write(self, table_name: str, records: list[EmbeddingRecord], dim: int, create_dtype: str = "float32") -> int:
        """Upsert records by key in one atomic commit (vectors in the table's dtype; a new
        table stores ``create_dtype``); returns the number written."""
        if not records:
            return 0
        from rsembed_db.store.records_arrow import records_to_arrow  # the write path's imports

        table = self.ensure_table(table_name, dim, create_dtype=create_dtype)
        try:
            data = records_to_arrow(records, dim, vector_dtype_of(table))
        except ValueError as exc:
            raise SpecError("vector_dtype", str(exc)) from None
        return self.write_arrow(table_name, data, dim, create_dtype)

    def write_arrow(self, table_name: str, data: pa.Table, dim: int, create_dtype: str = "float32") -> int:
        """Upsert rows already in ``embedding_schema(dim)`` by key in one atomic commit
        (conflict-checked, ``store.commit``) and clear their failures; returns the rows
        written. Vectors are cast to the table's dtype (SpecError beyond float16's range)."""
        if not data.num_rows:
            return 0
        table = self.ensure_table(table_name, dim, create_dtype=create_dtype)
        if not data.schema.equals(table.schema, check_metadata=True):
            if vector_dtype_of(table) == "float16":
                check_float16_range(data["vector"], table_name)
            data = data.cast(table.schema)  # the table's vector dtype; a table made before the geometry tag
        with self._write_lock:
            upsert(table.to_lance(), data, ["key"])
            table.checkout_latest()
            self._ensure_key_index(table)
            self.clear_failures(data["key"].to_pylist())
        return data.num_rows

    def _ensure_key_index(self, table) -> None:
        def build() -> None:
            table.checkout_latest()  # another writer may have built it meanwhile
            if not any(idx.columns == ["key"] for idx in table.list_indices()):
                table.create_index("key", config=BTree())
        retry_on_conflict(build, f"the key index of {table.name!r} in {self.uri}")

    # reads ----------------------------------------------------------------
    def existing_keys(self, table_name: str, keys: list[str], need_grid: bool = False) -> set[str]:
        """The subset of ``keys`` already stored (with a grid, when ``need_grid``)."""
        if not keys or not self.has_table(table_name):
            return set()
        table = self.table(table_name)
        if len(keys) > KEY_CHUNK and len(keys) * SCAN_RATIO >= table.count_rows():
            # Many keys against a table not much larger: one scan of the key column beats
            # hundreds of IN (...) queries.
            column = table.to_lance().to_table(
                columns=["key"], filter="grid IS NOT NULL" if need_grid else None)["key"]
            return set(column.filter(pc.is_in(column, value_set=pa.array(keys))).to_pylist())
        found: set[str] = set()
        extra = " AND grid IS NOT NULL" if need_grid else ""
        for i in range(0, len(keys), KEY_CHUNK):
            chunk = keys[i:i + KEY_CHUNK]
            rows = (table.search().where(f"key IN ({sql_quote(chunk)}){extra}")
                    .select(["key"]).limit(len(chunk)).to_arrow())
            found.update(rows["key"].to_pylist())
        return found

    def get(self, table_name: str, key: str, columns: list[str] | None = None) -> dict[str, Any] | None:
        """One row as a dict, or None."""
        if not self.has_table(table_name):
            return None
        rows = self.dataset(table_name).to_table(columns=columns or None, filter=f"key = {sql_quote([key])}", limit=1)
        return as_float32_vectors(rows).to_pylist()[0] if rows.num_rows else None

    def dataset(self, name: str):
        """Table ``name`` at its latest version as a Lance dataset. One handle per table is
        kept and moved forward with ``checkout_version``, which keeps its caches: a fresh
        handle reloads the indexes (3-6 ms per query)."""
        with self._lock:
            dataset = self._datasets.get(name)
        if dataset is None:
            dataset = self.table(name).to_lance()  # NotFound when absent
        else:
            try:
                if dataset.latest_version != dataset.version:
                    dataset = dataset.checkout_version(dataset.latest_version)
            except OSError:
                if self.has_table(name):
                    raise
                with self._lock:  # removed since it was opened (by another process)
                    self._datasets.pop(name, None)
                    self._tables.pop(name, None)
                return self.dataset(name)  # NotFound naming the table
        with self._lock:
            self._datasets[name] = dataset
        return dataset

    def vectors(self, table_name: str, where: str | None = None,
                columns: tuple[str, ...] = ("key", "tile_id", "lon", "lat", "h3")) -> tuple[pa.Table, np.ndarray]:
        """Metadata columns and an (N, D) float32 matrix of the rows matching ``where``."""
        dataset = self.table(table_name).to_lance()
        data = dataset.to_table(columns=[*columns, "vector"], filter=where)
        flat = pc.list_flatten(data["vector"]).to_numpy(zero_copy_only=False)
        matrix = flat.astype(np.float32, copy=False).reshape(len(data), vector_dim(self.table(table_name).schema))
        return data.drop_columns(["vector"]), matrix

    def internal_table(self, name: str, schema: pa.Schema):
        """Open or create the internal table ``name`` (``INTERNAL_TABLES``) at its latest version."""
        with self._lock:
            if name not in self._tables:
                self._tables[name] = self._create_table(name, schema)
            table = self._tables[name]
        table.checkout_latest()
        return table

    def drop_internal(self, name: str) -> None:
        """Drop an internal table (a staging table of a finished or abandoned run); never a model table."""
        if not name.startswith("_"):
            raise SpecError("table", f"{name!r} is a model table; only internal tables are dropped here")
        with self._lock:
            self._tables.pop(name, None)
            self._datasets.pop(name, None)
        if name in self._all_tables():
            self.db.drop_table(name)

    @property
    def write_lock(self) -> threading.RLock:
        """Held around every commit of this process (see ``__init__``)."""
        return self._write_lock

    # failures -------------------------------------------------------------
    def _failures(self):
        return self.internal_table(FAILURES_TABLE, FAILURE_SCHEMA)

    def record_failures(self, table_name: str, failures: list[FailureRecord]) -> None:
        if failures:
            from rsembed_db.store.records_arrow import failures_to_arrow  # the write path's imports

            with self._write_lock:
                upsert(self._failures().to_lance(), failures_to_arrow(failures, table_name), ["key"])

    def clear_failures(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if not keys or not self.has_table(FAILURES_TABLE):
            return
        table = self._failures()
        with self._write_lock:
            for i in range(0, len(keys), KEY_CHUNK):
                where = f"key IN ({sql_quote(keys[i:i + KEY_CHUNK])})"
                self.delete_where(table, where, "clearing failures")

    def delete_where(self, table, where: str, what: str) -> int:
        """Delete the rows of ``table`` matching ``where`` in one commit (none when nothing
        matches: a delete of nothing would still commit a version), retried on conflict."""
        def delete() -> int:
            table.checkout_latest()
            count = table.count_rows(where)
            if count:
                table.delete(where)
            return count
        return retry_on_conflict(delete, f"{what} in {table.name!r} of {self.uri}")

    def failures(self, table_name: str | None = None) -> list[dict[str, Any]]:
        if not self.has_table(FAILURES_TABLE):
            return []
        table = self._failures()
        table.checkout_latest()
        where = f"table_name = {sql_quote([table_name])}" if table_name else None
        rows = table.to_lance().to_table(filter=where).to_pylist()
        for row in rows:
            row["request"] = json.loads(row["request"])
        return sorted(rows, key=lambda r: r["tile_id"])
