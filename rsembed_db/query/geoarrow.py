"""GeoArrow: the ``geometry`` column tagged as WKB in EPSG:4326, so Arrow readers that know
geometry (GeoPandas, GDAL, DuckDB spatial, lonboard) read it as such without guessing."""

from __future__ import annotations

import json
from functools import lru_cache

import pyarrow as pa

GEOMETRY = "geometry"


@lru_cache(maxsize=1)
def _crs_json() -> str:
    import pyproj

    return json.dumps(pyproj.CRS("EPSG:4326").to_json_dict())


def geoarrow_field(field: pa.Field) -> pa.Field:
    """``field`` (binary WKB) as a ``geoarrow.wkb`` extension field with its CRS (PROJJSON);
    the store's encoding hints (``lance-encoding:*``) stay behind."""
    kept = {k: v for k, v in (field.metadata or {}).items() if not k.startswith(b"lance-encoding:")}
    return field.with_metadata({**kept, b"ARROW:extension:name": b"geoarrow.wkb",
                                b"ARROW:extension:metadata": json.dumps({"crs": json.loads(_crs_json())}).encode()})


def geoarrow_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its ``geometry`` column (if any) tagged."""
    index = schema.get_field_index(GEOMETRY)
    return schema if index < 0 else schema.set(index, geoarrow_field(schema.field(index)))


def with_geoarrow(table: pa.Table) -> pa.Table:
    """``table`` with its ``geometry`` column (if any) tagged."""
    return table.cast(geoarrow_schema(table.schema)) if GEOMETRY in table.column_names else table
