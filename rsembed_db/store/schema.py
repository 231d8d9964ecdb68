"""Arrow schemas of the embedding and failure tables, and record -> Arrow conversion.

Embedding row (DESIGN.md section 3): ``key`` (sha256 of the canonical request),
``model`` + ``model_config``, spatial columns (``spatial_kind``, ``spatial`` JSON,
``tile_id``, ``h3`` uint64 + ``h3_res``, bbox, centre, WKB ``geometry``), temporal
columns (``t_start``/``t_end`` of the half-open window, ``year`` of its midpoint),
``pooling``, ``vector`` fixed_size_list<float32 or float16>[D], an optional grid
(flattened float32 values + ``grid_shape`` (D, H, W), ``grid_crs``, ``grid_transform``),
``meta`` JSON and ``created_at``.

A table's vector dtype is chosen when it is created (``VECTOR_DTYPES``) and recorded twice:
in the ``vector`` field's type and in the schema metadata ``rsembed.vector_dtype``.
float16 halves the vector bytes (2 B per dimension); readers always hand out float32.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rsembed_db.errors import SpecError
from rsembed_db.store.commit import with_primary_key

FAILURES_TABLE = "_failures"
LABELS_TABLE = "_labels"
JOBS_TABLE = "_jobs"
JOB_CANCELS_TABLE = "_job_cancels"
INTERNAL_TABLES = (FAILURES_TABLE, LABELS_TABLE, JOBS_TABLE, JOB_CANCELS_TABLE)  # hidden from table_names()
STAGING_PREFIX = "_staging_"  # staging tables of distributed ingest runs (``store.staging``)


VECTOR_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
VECTOR_DTYPE_KEY = b"rsembed.vector_dtype"
FLOAT16_MAX = float(np.finfo(np.float16).max)
# The footprint column's GeoArrow tag, which lets Lance build an R-tree on it and answer
# ``st_intersects``. Lance 14 refuses an R-tree on a field whose tag carries a CRS, so
# EPSG:4326 is implied here (readers get it in ``query.geoarrow``).
GEOARROW_WKB = {b"ARROW:extension:name": b"geoarrow.wkb", b"ARROW:extension:metadata": b"{}"}
# Lance compresses a field's pages with the codec its metadata names. WKB footprints are
# doubles whose leading bytes repeat between neighbouring cells: zstd halves them
# (H3 res-9 hexagons: 130.2 -> 68.5 B/row, docs/storage.md); strings are compressed already.
ZSTD = {b"lance-encoding:compression": b"zstd"}


def check_vector_dtype(value: object, field: str = "vector_dtype") -> str:
    """``value`` when it is a known vector dtype; SpecError naming ``field`` otherwise."""
    if value not in VECTOR_DTYPES:
        raise SpecError(field, f"unknown vector dtype {value!r}", tuple(VECTOR_DTYPES))
    return str(value)


def check_float16_range(vectors: pa.ChunkedArray | pa.Array, table_name: str) -> None:
    """SpecError when a finite value of these fixed-size-list ``vectors`` is beyond float16's range."""
    values = np.asarray(pa.chunked_array([vectors]).combine_chunks().flatten() if isinstance(vectors, pa.Array)
                        else vectors.combine_chunks().flatten(), dtype=np.float64)
    if (np.isfinite(values) & (np.abs(values) > FLOAT16_MAX)).any():
        raise SpecError("vector_dtype", f"vectors with values beyond float16's range (|x| > {FLOAT16_MAX:g}) "
                        f"cannot go into the float16 table {table_name!r}")


def embedding_schema(dim: int, vector_dtype: str = "float32") -> pa.Schema:
    """The row schema of a model table of ``dim``-wide vectors stored as ``vector_dtype``;
    ``key`` is its primary key."""
    value_type = VECTOR_DTYPES[check_vector_dtype(vector_dtype)]
    return with_primary_key(pa.schema([
        pa.field("key", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("model_config", pa.string()),
        pa.field("tile_id", pa.string()),
        pa.field("spatial_kind", pa.string()),
        pa.field("spatial", pa.string()),
        pa.field("h3", pa.uint64()),
        pa.field("h3_res", pa.int8()),
        pa.field("minlon", pa.float64()),
        pa.field("minlat", pa.float64()),
        pa.field("maxlon", pa.float64()),
        pa.field("maxlat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("lat", pa.float64()),
        pa.field("geometry", pa.binary(), metadata={**GEOARROW_WKB, **ZSTD}),
        pa.field("t_start", pa.date32()),
        pa.field("t_end", pa.date32()),
        pa.field("year", pa.int16()),
        pa.field("pooling", pa.string()),
        pa.field("vector", pa.list_(value_type, dim)),
        pa.field("grid", pa.list_(pa.float32())),
        pa.field("grid_shape", pa.list_(pa.int32(), 3)),
        pa.field("grid_crs", pa.string()),
        pa.field("grid_transform", pa.list_(pa.float64(), 6)),
        pa.field("meta", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ], metadata={VECTOR_DTYPE_KEY: vector_dtype.encode()}), ["key"])


FAILURE_SCHEMA = with_primary_key(pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("table_name", pa.string()),
    pa.field("model", pa.string()),
    pa.field("tile_id", pa.string()),
    pa.field("request", pa.string()),
    pa.field("error", pa.string()),
    pa.field("updated_at", pa.timestamp("us", tz="UTC")),
]), ["key"])


# A label set: named positive / negative marks on stored rows of one table (the explorer's
# examples). One row per (set_name, key); ``who`` and ``at`` record the last change.
LABEL_SCHEMA = with_primary_key(pa.schema([
    pa.field("set_name", pa.string(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
    pa.field("table_name", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("who", pa.string()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
]), ["set_name", "key"])


def vector_dim(schema: pa.Schema) -> int:
    return schema.field("vector").type.list_size


def has_geoarrow_footprint(schema: pa.Schema) -> bool:
    """Whether ``geometry`` is tagged ``geoarrow.wkb`` (tables made before the tag: no)."""
    index = schema.get_field_index("geometry")
    metadata = schema.field(index).metadata or {} if index >= 0 else {}
    return metadata.get(b"ARROW:extension:name") == b"geoarrow.wkb"


def vector_dtype(schema: pa.Schema) -> str:
    """``float32`` or ``float16``: the stored type of the ``vector`` values (tables made
    before the metadata existed are read from the field type alone)."""
    value_type = schema.field("vector").type.value_type
    return next(name for name, t in VECTOR_DTYPES.items() if t == value_type)


def as_float32_vectors(table: pa.Table) -> pa.Table:
    """``table`` with a float16 ``vector`` column cast to float32 (what users get)."""
    if "vector" not in table.column_names:
        return table
    field = table.schema.field("vector")
    if not pa.types.is_fixed_size_list(field.type) or field.type.value_type != pa.float16():
        return table
    index = table.schema.get_field_index("vector")
    return table.set_column(index, pa.field("vector", pa.list_(pa.float32(), field.type.list_size), field.nullable),
                            table["vector"].cast(pa.list_(pa.float32(), field.type.list_size)))


def h3_hex(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """H3 cell ids (uint64, nulls allowed) as their hex strings (``881f1c6481fffff``): the
    spelling h3 and GIS tools use, and one that survives readers that turn nullable
    uint64 into float64 (pandas, geopandas)."""
    ids = values.to_pylist()
    return pa.array([None if v is None else format(v, "x") for v in ids], pa.string())
