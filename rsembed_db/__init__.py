"""rsembed-db: an embedding database for Earth observation.

The top level offers the reference library's public names (rs-embed), so that a script
switches by changing its import: ``from rsembed_db import get_embedding, PointBuffer, ...``.
They are imported on first use, so ``import rsembed_db`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # the vocabulary
    "BBox": "rsembed_db.specs.spatial", "PointBuffer": "rsembed_db.specs.spatial",
    "H3Cell": "rsembed_db.specs.spatial", "GridCell": "rsembed_db.specs.spatial",
    "TemporalSpec": "rsembed_db.specs.temporal", "SensorSpec": "rsembed_db.specs.sensor",
    "FetchSpec": "rsembed_db.specs.sensor", "OutputSpec": "rsembed_db.specs.output",
    "InputPrepSpec": "rsembed_db.specs.output", "ExportTarget": "rsembed_db.specs.export",
    "ExportConfig": "rsembed_db.specs.export", "ExportModelRequest": "rsembed_db.specs.export",
    "ExportLayout": "rsembed_db.specs.export", "ModelConfig": "rsembed_db.specs.export",
    "Embedding": "rsembed_db.specs.embedding", "SpecError": "rsembed_db.errors",
    "RsembedError": "rsembed_db.errors",
    # the functions and classes
    "get_embedding": "rsembed_db.api", "get_embeddings_batch": "rsembed_db.api", "Model": "rsembed_db.api",
    "list_models": "rsembed_db.api", "describe_model": "rsembed_db.api", "reset_runtime": "rsembed_db.api",
    "enable_pretty_warnings": "rsembed_db.display", "disable_pretty_warnings": "rsembed_db.display",
    "export_batch": "rsembed_db.export.batch", "BatchExporter": "rsembed_db.export.batch",
    "load_export": "rsembed_db.export.load", "ExportResult": "rsembed_db.export.load",
    "ModelResult": "rsembed_db.export.load",
    "inspect_gee_patch": "rsembed_db.inspect", "inspect_provider_patch": "rsembed_db.inspect",
    "inspect_model_input": "rsembed_db.inspect",
}
__all__ = [
    "BBox",
    "BatchExporter",
    "Embedding",
    "ExportConfig",
    "ExportLayout",
    "ExportModelRequest",
    "ExportResult",
    "ExportTarget",
    "FetchSpec",
    "GridCell",
    "H3Cell",
    "InputPrepSpec",
    "Model",
    "ModelConfig",
    "ModelResult",
    "OutputSpec",
    "PointBuffer",
    "RsembedError",
    "SensorSpec",
    "SpecError",
    "TemporalSpec",
    "describe_model",
    "disable_pretty_warnings",
    "enable_pretty_warnings",
    "export_batch",
    "get_embedding",
    "get_embeddings_batch",
    "inspect_gee_patch",
    "inspect_model_input",
    "inspect_provider_patch",
    "list_models",
    "load_export",
    "reset_runtime",
    "__version__",
]

if TYPE_CHECKING:
    from rsembed_db.api import (
        Model,
        describe_model,
        get_embedding,
        get_embeddings_batch,
        list_models,
        reset_runtime,
    )
    from rsembed_db.display import disable_pretty_warnings, enable_pretty_warnings
    from rsembed_db.errors import RsembedError, SpecError
    from rsembed_db.export.batch import BatchExporter, export_batch
    from rsembed_db.export.load import ExportResult, ModelResult, load_export
    from rsembed_db.inspect import inspect_gee_patch, inspect_model_input, inspect_provider_patch
    from rsembed_db.specs.embedding import Embedding
    from rsembed_db.specs.export import ExportConfig, ExportLayout, ExportModelRequest, ExportTarget, ModelConfig
    from rsembed_db.specs.output import InputPrepSpec, OutputSpec
    from rsembed_db.specs.sensor import FetchSpec, SensorSpec
    from rsembed_db.specs.spatial import BBox, GridCell, H3Cell, PointBuffer
    from rsembed_db.specs.temporal import TemporalSpec


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rsembed_db' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
