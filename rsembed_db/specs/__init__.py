"""The request vocabulary shared by every layer (DESIGN.md section 2).

Names are imported on first use, so importing one spec module stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Embedding": "rsembed_db.specs.embedding", "SpecError": "rsembed_db.errors",
    "ExportConfig": "rsembed_db.specs.export", "ExportModelRequest": "rsembed_db.specs.export",
    "ExportTarget": "rsembed_db.specs.export", "InputPrepSpec": "rsembed_db.specs.output",
    "OutputSpec": "rsembed_db.specs.output", "EmbeddingRequest": "rsembed_db.specs.request",
    "FetchSpec": "rsembed_db.specs.sensor", "SensorSpec": "rsembed_db.specs.sensor",
    "resolve_sensor": "rsembed_db.specs.sensor", "BBox": "rsembed_db.specs.spatial",
    "GridCell": "rsembed_db.specs.spatial", "H3Cell": "rsembed_db.specs.spatial",
    "PointBuffer": "rsembed_db.specs.spatial", "SpatialSpec": "rsembed_db.specs.spatial",
    "spatial_from_dict": "rsembed_db.specs.spatial", "TemporalSpec": "rsembed_db.specs.temporal",
}
__all__ = [
    "BBox",
    "Embedding",
    "EmbeddingRequest",
    "ExportConfig",
    "ExportModelRequest",
    "ExportTarget",
    "FetchSpec",
    "GridCell",
    "H3Cell",
    "InputPrepSpec",
    "OutputSpec",
    "PointBuffer",
    "SensorSpec",
    "SpatialSpec",
    "SpecError",
    "TemporalSpec",
    "resolve_sensor",
    "spatial_from_dict",
]

if TYPE_CHECKING:
    from rsembed_db.errors import SpecError
    from rsembed_db.specs.embedding import Embedding
    from rsembed_db.specs.export import ExportConfig, ExportModelRequest, ExportTarget
    from rsembed_db.specs.output import InputPrepSpec, OutputSpec
    from rsembed_db.specs.request import EmbeddingRequest
    from rsembed_db.specs.sensor import FetchSpec, SensorSpec, resolve_sensor
    from rsembed_db.specs.spatial import BBox, GridCell, H3Cell, PointBuffer, SpatialSpec, spatial_from_dict
    from rsembed_db.specs.temporal import TemporalSpec


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rsembed_db.specs' has no attribute {name!r}")
