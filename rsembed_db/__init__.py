"""rsembed-db: an embedding database for Earth observation."""

from rsembed_db.specs import (
    BBox,
    Embedding,
    ExportConfig,
    ExportModelRequest,
    ExportTarget,
    FetchSpec,
    GridCell,
    H3Cell,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    SpecError,
    TemporalSpec,
)

__all__ = [
    "BBox",
    "Embedding",
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
    "SpecError",
    "TemporalSpec",
]
__version__ = "0.1.0"
