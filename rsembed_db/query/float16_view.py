"""DuckDB's view of a float16 table: its Lance dataset with ``vector`` scanned as float32.

DuckDB has no float16 type, so a float16 table (``store.schema.VECTOR_DTYPES``) is
registered through ``Float32Vectors``; the cast runs per scanned batch, after Lance's
projection and filter pushdown. Imports Lance and Arrow only (the SQL query process
loads it).
"""

from __future__ import annotations

from typing import Any

import lance
import pyarrow as pa


def has_float16_vectors(schema: pa.Schema) -> bool:
    """Whether ``schema`` has a fixed-size-list ``vector`` column of float16."""
    if "vector" not in schema.names:
        return False
    kind = schema.field("vector").type
    return pa.types.is_fixed_size_list(kind) and kind.value_type == pa.float16()


def sql_view(dataset: lance.LanceDataset) -> lance.LanceDataset:
    """``dataset`` as DuckDB should see it: float16 vectors read as float32."""
    return Float32Vectors(dataset) if has_float16_vectors(dataset.schema) else dataset


class Float32Vectors(lance.LanceDataset):
    """A Lance dataset whose float16 ``vector`` column scans as float32. DuckDB recognises
    Arrow datasets by class, hence the subclass; it only calls ``schema`` and
    ``scanner(...).to_reader()``."""

    def __init__(self, dataset: lance.LanceDataset) -> None:
        self.__dict__.update(dataset.__dict__)

    @property
    def schema(self) -> pa.Schema:
        stored = super().schema
        vector = stored.field("vector")
        return stored.set(stored.get_field_index("vector"),
                          vector.with_type(pa.list_(pa.float32(), vector.type.list_size)))

    def scanner(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return _CastScanner(super().scanner(*args, **kwargs), self.schema)


class _CastScanner:
    def __init__(self, scanner: Any, schema: pa.Schema) -> None:
        self.scanner, self.schema = scanner, schema

    def to_reader(self) -> pa.RecordBatchReader:
        reader = self.scanner.to_reader()
        out = pa.schema([self.schema.field(n) if n in self.schema.names else f for n, f in
                         zip(reader.schema.names, reader.schema)])
        batches = (pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(b.columns, out)], schema=out)
                   for b in reader)
        return pa.RecordBatchReader.from_batches(out, batches)
