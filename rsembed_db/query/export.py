"""Export a model table to Parquet, GeoParquet or an Arrow IPC file, streaming.

GeoParquet follows the 1.1.0 metadata spec: the ``geometry`` column (WKB, lon/lat) is
the primary column; ``geometry_types`` and ``bbox`` come from a first pass over that
column (one dataset version, so both passes see the same rows) and the
``crs`` is the PROJJSON of EPSG:4326 (WKB coordinates are lon/lat whatever the CRS axis
order says, as the spec requires), so geopandas reads the file back as EPSG:4326.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import lance
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import shapely

from rsembed_db.errors import SpecError
from rsembed_db.query.geoarrow import geoarrow_schema
from rsembed_db.specs.validate import require_choice
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.schema import h3_hex

FORMATS = ("parquet", "geoparquet", "arrow")
GEOPARQUET_VERSION = "1.1.0"
GEOMETRY = "geometry"
_TYPE_NAMES = ("Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
               "MultiPolygon", "GeometryCollection")  # by shapely type id


@dataclass
class ExportSummary:
    path: Path
    format: str
    rows: int


class _GeoStats:
    """Geometry types and bounds of the WKB values seen so far."""

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.bounds = [float("inf"), float("inf"), float("-inf"), float("-inf")]

    def add(self, column: pa.Array) -> None:
        geoms = shapely.from_wkb(column.to_numpy(zero_copy_only=False))
        geoms = geoms[~shapely.is_missing(geoms)]
        if len(geoms) == 0:
            return
        kinds = zip(shapely.get_type_id(geoms).tolist(), shapely.has_z(geoms).tolist())
        self.types.update(_TYPE_NAMES[i] + (" Z" if z else "") for i, z in set(kinds))
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        b = self.bounds
        self.bounds = [min(b[0], minx), min(b[1], miny), max(b[2], maxx), max(b[3], maxy)]

    def metadata(self) -> dict[str, object]:
        column: dict[str, object] = {
            "encoding": "WKB",
            "geometry_types": sorted(self.types),
            "crs": pyproj.CRS("EPSG:4326").to_json_dict(),
        }
        if self.types:
            column["bbox"] = [float(v) for v in self.bounds]
        return {"version": GEOPARQUET_VERSION, "primary_column": GEOMETRY, "columns": {GEOMETRY: column}}


def with_geo_metadata(table: pa.Table) -> pa.Table:
    """``table`` (with a WKB ``geometry`` column) carrying GeoParquet ``geo`` metadata."""
    stats = _GeoStats()
    stats.add(table[GEOMETRY].combine_chunks())
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(stats.metadata())})


def export_table(store: EmbeddingStore, table: str, out: str | Path, format: str = "parquet",
                 where: str | None = None) -> ExportSummary:
    """Write the rows of ``table`` matching ``where`` (a Lance SQL filter) to ``out``.

    The file appears complete or not at all (written aside, then renamed).
    """
    require_choice("format", format, FORMATS)
    out = Path(out)
    if not out.parent.is_dir():
        raise SpecError("out", f"directory does not exist: {out.parent}")
    dataset = store.table(table).to_lance()
    schema = _with_h3_id_field(dataset.schema)
    if format == "arrow":
        schema = geoarrow_schema(schema)
    if format == "geoparquet":
        stats = _GeoStats()
        for batch in _scan(dataset, where, [GEOMETRY]):
            stats.add(batch.column(GEOMETRY))
        schema = schema.with_metadata({**(schema.metadata or {}), b"geo": json.dumps(stats.metadata())})
    scanned = _scan(dataset, where)
    reader = pa.RecordBatchReader.from_batches(schema, (_with_h3_id(batch, schema) for batch in scanned))
    partial = out.with_name(out.name + ".partial")
    try:
        rows = _write(partial, format, schema, reader)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    return ExportSummary(out, format, rows)


def _with_h3_id_field(schema: pa.Schema) -> pa.Schema:
    """The stored schema plus ``h3_id`` (hex string) right after ``h3``."""
    return schema.insert(schema.get_field_index("h3") + 1, pa.field("h3_id", pa.string()))


def _with_h3_id(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = {name: batch.column(name) for name in batch.schema.names}
    columns["h3_id"] = h3_hex(batch.column("h3"))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def _write(path: Path, format: str, schema: pa.Schema, reader: pa.RecordBatchReader) -> int:
    rows = 0
    if format == "arrow":
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    with pq.ParquetWriter(path, schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _scan(dataset: lance.LanceDataset, where: str | None,
          columns: list[str] | None = None) -> pa.RecordBatchReader:
    try:
        return dataset.scanner(columns=columns, filter=where).to_reader()
    except (ValueError, OSError) as exc:  # Lance reports a bad filter as ValueError / OSError
        message = re.sub(r",\s*\S+\.rs:\d+:\d+$", "", str(exc))  # drop Lance's source location
        raise SpecError("where", f"invalid filter {where!r}: {message}") from None
