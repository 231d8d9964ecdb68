"""The request vocabulary shared by every layer (DESIGN.md section 2)."""

from rsembed_db.errors import SpecError
from rsembed_db.specs.embedding import Embedding
from rsembed_db.specs.export import ExportConfig, ExportModelRequest, ExportTarget
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.sensor import FetchSpec, SensorSpec, resolve_sensor
from rsembed_db.specs.spatial import (
    BBox,
    GridCell,
    H3Cell,
    PointBuffer,
    SpatialSpec,
    spatial_from_dict,
)
from rsembed_db.specs.temporal import TemporalSpec

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
