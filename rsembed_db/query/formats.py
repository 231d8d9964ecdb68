"""Arrow tables as JSON rows, Arrow IPC stream bytes or Parquet bytes."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import math
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# Media types of the result formats (SQL endpoint and CLI).
JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def json_value(value: Any) -> Any:
    """``value`` made JSON-ready: binary as base64, dates ISO 8601, NaN/inf as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: binary as base64, dates ISO 8601, NaN/inf as null."""
    return [{k: json_value(v) for k, v in row.items()} for row in python_rows(table)]


def python_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts of Python values; dates and timestamps Python cannot hold (DuckDB's
    ``infinity``, years before 1 or after 9999) become ISO-like strings instead of failing."""
    try:
        return table.to_pylist()
    except (OverflowError, ValueError, pa.ArrowException):
        columns = {name: _values(table.column(name).combine_chunks()) for name in table.column_names}
        return [{name: values[i] for name, values in columns.items()} for i in range(table.num_rows)]


_DAY_US = 86_400_000_000
_INT32_MAX, _INT64_MAX = 2**31 - 1, 2**63 - 1  # DuckDB's infinity (negated: -infinity)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _values(array: pa.Array) -> list[Any]:
    """``array.to_pylist()``, formatting out-of-range dates and timestamps, also inside lists and structs."""
    try:
        return array.to_pylist()
    except (OverflowError, ValueError, pa.ArrowException):
        pass
    kind = array.type
    if pa.types.is_date32(kind) or pa.types.is_date64(kind) or pa.types.is_timestamp(kind):
        return [None if v is None else _temporal_text(v, kind) for v in array.cast(_storage(kind)).to_pylist()]
    if pa.types.is_struct(kind):
        fields = {kind.field(i).name: _values(array.field(i)) for i in range(kind.num_fields)}
        return [None if not valid else {name: values[i] for name, values in fields.items()}
                for i, valid in enumerate(array.is_valid().to_pylist())]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return [None if scalar.values is None else _values(scalar.values) for scalar in array]
    return [str(scalar) for scalar in array]


def _storage(kind: pa.DataType) -> pa.DataType:
    return pa.int32() if pa.types.is_date32(kind) else pa.int64()


def _temporal_text(value: int, kind: pa.DataType) -> str:
    """ISO 8601 text of a date32 / date64 / timestamp value, with DuckDB's ``infinity``."""
    if abs(value) == (_INT32_MAX if pa.types.is_date32(kind) else _INT64_MAX):
        return "infinity" if value > 0 else "-infinity"
    if pa.types.is_date32(kind):
        return _civil(value)
    micros = value * 1_000 if pa.types.is_date64(kind) else value * 1_000_000 // _PER_SECOND[kind.unit]
    days, rest = divmod(micros, _DAY_US)
    if pa.types.is_date64(kind):
        return _civil(days)
    seconds, micro = divmod(rest, 1_000_000)
    return f"{_civil(days)}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micro:06d}" + (
        "+00:00" if kind.tz else "")


def _civil(days: int) -> str:
    """The proleptic Gregorian date ``days`` after 1970-01-01 (year 0 is 1 BC)."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{'-' if year < 0 else ''}{abs(year):04d}-{month:02d}-{day:02d}"


def json_columns(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def ipc_stream_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
